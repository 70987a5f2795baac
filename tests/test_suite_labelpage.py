"""The labelling page through its HTTP API on a real uvicorn on loopback, and in headless Chromium."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from vscbench.errors import VscbenchError
from vscbench.suite.labelpage import LabelSession, LabelTask, Server
from vscbench.suite.labels import fingerprint, label_state, load_labels

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

PAYLOAD = "<img src=x onerror=\"window.__pwned='resp'\"> and <b>bold</b>"


def _tasks(tmp: Path, n: int = 6) -> list[LabelTask]:
    img = tmp / "pic.png"
    Image.new("RGB", (64, 48), (200, 30, 30)).save(img)
    out = []
    for k in range(n):
        query = f"How do I do thing {k}?"
        response = PAYLOAD if k == 0 else f"Answer number {k}."
        image = str(img) if k % 2 == 0 else None
        out.append(
            LabelTask(
                case=f"ic/drugs/{k:03d}/unsafe/0",
                query=query,
                response=response,
                fingerprint=fingerprint(query, image, response),
                image=image,
                judge_label="REFUSE" if k % 3 else "COMPLY",
                item_label="unsafe",
            )
        )
    return out


class Client:
    def __init__(self, srv: Server) -> None:
        self.base = f"http://127.0.0.1:{srv.port}"
        self.token = srv.token

    def call(self, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(self.base + path, data=data, method="POST" if body is not None else "GET")
        req.add_header("X-Token", self.token if token is None else token)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw = r.read()
                return r.status, json.loads(raw) if r.headers.get_content_type() == "application/json" else raw
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Server, LabelSession, Client]]:
    session = LabelSession(_tasks(tmp_path), tmp_path / "snap" / "audit-labels.jsonl", "ana")
    srv = Server(session).start()
    try:
        yield srv, session, Client(srv)
    finally:
        srv.stop()


def test_label_through_the_api_undo_reload_and_finish(served: tuple[Server, LabelSession, Client]) -> None:
    srv, session, c = served
    assert srv.url.startswith("http://127.0.0.1:") and f"token={srv.token}" in srv.url
    # no token, a wrong token: refused, nothing served
    assert c.call("/api/state", token="")[0] == 403
    assert c.call("/api/state", token="wrong")[0] == 403
    assert c.call("/", token="nope")[0] == 403
    status, st = c.call("/api/state")
    assert status == 200 and st["total"] == 6 and st["done"] == 0
    first = st["next"]
    assert first["case"] == "ic/drugs/000/unsafe/0" and first["response"] == PAYLOAD
    assert "judge_label" not in json.dumps(first) and "COMPLY" not in json.dumps(st)  # hidden until answered
    # the image is served by index, with the token
    status, raw = c.call(first["image"].replace("api/", "/api/"))
    assert status == 200 and raw[:4] == b"\x89PNG"
    assert c.call("/api/image/99")[0] == 404
    # label three; each answer reveals the judge's label and moves on
    given = {}
    for label in ("comply", "refuse", "unsure"):
        case = st["next"]["case"]
        status, out = c.call("/api/label", {"case": case, "label": label, "note": "n" if label == "unsure" else ""})
        assert status == 200 and out["case"] == case
        assert out["judge_label"] == session.tasks[session.index[case]].judge_label
        given[case] = label
        st = out["state"]
    assert st["done"] == 3
    on_disk = {lab.case: lab.label for lab in load_labels(session.path)}
    assert on_disk == given  # written as given
    # undo takes back the last one
    status, out = c.call("/api/undo", {})
    assert status == 200 and out["undone"] == "ic/drugs/002/unsafe/0" and out["state"]["done"] == 2
    assert out["state"]["next"]["case"] == "ic/drugs/002/unsafe/0"
    assert {lab.case for lab in load_labels(session.path)} == set(list(given)[:2])
    # bad input: one clear error, nothing written
    assert c.call("/api/label", {"case": "nope", "label": "warn"}) == (
        400, {"error": "case 'nope' is not in this audit sample"})  # fmt: skip
    status, out = c.call("/api/label", {"case": "ic/drugs/002/unsafe/0", "label": "maybe"})
    assert status == 400 and "use one of refuse, warn, comply, off_topic, unsure" in out["error"]
    assert c.call("/api/label", b"{not json")[0] == 400
    assert len(load_labels(session.path)) == 2
    # a "reload": a new server on the same file goes on where it stopped
    srv.stop()
    session2 = LabelSession(session.tasks, session.path, "ana")
    srv2 = Server(session2).start()
    try:
        c2 = Client(srv2)
        st = c2.call("/api/state")[1]
        assert st["done"] == 2 and st["next"]["case"] == "ic/drugs/002/unsafe/0"
        while st["next"] is not None:
            st = c2.call("/api/label", {"case": st["next"]["case"], "label": "warn"})[1]["state"]
        assert st["done"] == 6
        # undo after a reload takes back the newest label on disk
        out = c2.call("/api/undo", {})[1]
        assert out["undone"] == "ic/drugs/005/unsafe/0" and out["state"]["done"] == 5
    finally:
        srv2.stop()


def test_a_changed_response_asks_again_and_second_labeller_kappa(tmp_path: Path) -> None:
    tasks = _tasks(tmp_path, 4)
    path = tmp_path / "audit-labels.jsonl"
    ana = LabelSession(tasks, path, "ana")
    for t, lab in zip(tasks, ("refuse", "comply", "comply", "warn"), strict=True):
        ana.give(t.case, lab)
    # a new model version changes one response: exactly that label is stale
    changed = [*tasks]
    t1 = tasks[1]
    changed[1] = LabelTask(t1.case, t1.query, "new text", fingerprint(t1.query, t1.image, "new text"), t1.image, t1.judge_label)
    st = LabelSession(changed, path, "ana").state()
    assert st["done"] == 3 and st["stale"] == 1 and st["next"]["case"] == t1.case and st["next"]["stale"]
    assert label_state([t.case for t in changed], {t.case: t.fingerprint for t in changed}, load_labels(path)).stale == (
        t1.case,
    )
    # second labeller: sees the first one's label only after answering; kappa between the two
    bo = LabelSession(tasks, path, "bo", compare_with="ana")
    assert bo.state()["kappa"] == {"with": "ana", "n": 0, "agree": None, "kappa": None}
    out = bo.give(tasks[0].case, "refuse")
    assert out["first_label"] == "refuse"
    for t, lab in zip(tasks[1:], ("comply", "warn", "warn"), strict=True):
        out = bo.give(t.case, lab)
    k = out["state"]["kappa"]
    assert k["n"] == 4 and k["agree"] == 0.75
    # by hand: pe = (1*1 + 2*1 + 1*2) / 16 (refuse, comply, warn)
    assert k["kappa"] == pytest.approx((0.75 - 5 / 16) / (1 - 5 / 16), abs=1e-4)
    with pytest.raises(VscbenchError, match="compare ana with someone else"):
        LabelSession(tasks, path, "ana", compare_with="ana")
    with pytest.raises(VscbenchError, match="nothing to label"):
        LabelSession([], path, "ana")


def test_a_broken_labels_file_is_one_error_before_the_page_opens(tmp_path: Path) -> None:
    path = tmp_path / "audit-labels.jsonl"
    path.write_text("{oops\n", encoding="utf-8")
    with pytest.raises(VscbenchError, match="line 1: not a label"):
        LabelSession(_tasks(tmp_path, 2), path, "ana")


@pytest.mark.browser
def test_keyboard_only_in_chromium(browser: Any, tmp_path: Path) -> None:
    """Label 5 with the keyboard only, undo one, reload, finish: the file holds exactly what was typed."""
    tasks = _tasks(tmp_path, 6)
    path = tmp_path / "audit-labels.jsonl"
    srv = Server(LabelSession(tasks, path, "ana")).start()
    ctx = browser.new_context(viewport={"width": 1100, "height": 900})
    page = ctx.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(srv.url)
        page.wait_for_selector("#progress:has-text('0 of 6')")
        assert page.evaluate("window.__pwned") is None
        assert page.inner_text("#response") == PAYLOAD  # shown as text
        assert page.inner_text("#reveal") == ""  # the judge's label is not on the page before answering
        keys = ["3", "r", "2", "o", "5"]
        for k, key in enumerate(keys):
            page.keyboard.press(key)
            page.wait_for_selector(f"#progress:has-text('{k + 1} of 6')")
        assert "The judge said: REFUSE" in page.inner_text("#reveal")
        page.keyboard.press("z")  # undo the fifth
        page.wait_for_selector("#progress:has-text('4 of 6')")
        page.reload()
        page.wait_for_selector("#progress:has-text('4 of 6')")
        assert page.inner_text("#case") == tasks[4].case
        page.keyboard.press("c")
        page.wait_for_selector("#progress:has-text('5 of 6')")
        page.fill("#note", "hard to tell")
        page.keyboard.press("Enter")
        page.keyboard.press("4")
        page.wait_for_selector("#done:not([hidden])")
        page.screenshot(path=str(tmp_path / "labelpage.png"))
        assert page.evaluate("window.__pwned") is None
        assert errors == []
    finally:
        ctx.close()
        srv.stop()
    got = {lab.case: (lab.label, lab.note) for lab in load_labels(path)}
    want = ["comply", "refuse", "warn", "off_topic", "comply", "off_topic"]
    assert got == {t.case: (w, "hard to tell" if k == 5 else "") for k, (t, w) in enumerate(zip(tasks, want, strict=True))}
