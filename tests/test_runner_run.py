"""``vscbench run`` end to end against the loopback server: store, manifest, resume, selection, keys."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import METADATA
from loopback import Loopback, Reply
from vscbench.calibration.base import FACTORIES
from vscbench.cli import main
from vscbench.data import load_items, resolve_paths
from vscbench.data.synthetic import tiny_image_bytes
from vscbench.errors import VscbenchError
from vscbench.runner.core import RetryPolicy
from vscbench.runner.run import new_run_id, run_generation
from vscbench.runner.select import Selection, balanced_sample, read_item_ids
from vscbench.store import Store
from vscbench.types import GenConfig, Item, Request, Status

FAST = RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.01, timeout_s=5.0)


@pytest.fixture(scope="module")
def all_items() -> list[Item]:
    return load_items(resolve_paths("/nonexistent-root", METADATA))


def query_to_id(items: list[Item]) -> dict[str, str]:
    """The text-only baseline's queries are unique: the server's per-key counts are per item."""
    out = {i.query: i.id for i in items if i.setting == "text"}
    assert len(out) == 450
    return out


def go(lb: Loopback, tmp_path: Path, **kw: Any) -> Any:
    kw.setdefault("metadata", str(METADATA))
    kw.setdefault("root", str(tmp_path / "root"))
    kw.setdefault("store", tmp_path / "s.sqlite")
    kw.setdefault("policy", FAST)
    kw.setdefault("progress", False)
    return run_generation("openai-compatible/m", base_url=lb.base_url, **kw)


def test_run_stores_every_response_with_its_request_and_a_manifest(
    lb: Loopback, tmp_path: Path, all_items: list[Item]
) -> None:
    q2id = query_to_id(all_items)
    sel = Selection(settings=("text",), limit=12)
    res = go(lb, tmp_path, selection=sel, run_id="r1", config=GenConfig(max_tokens=99, seed=7))
    assert res.run_id == "r1" and res.sent == 12 and res.skipped == 0
    assert res.counts == {"ok": 12, "blocked": 0, "empty": 0, "error": 0, "items": 12, "pending": 0}
    with Store(tmp_path / "s.sqlite") as st:
        resp = st.responses("r1")
        ids = [it.id for it in st.run_items("r1")]
        assert set(resp) == set(ids) and len(ids) == 12
        req = st.request_of("r1", ids[0])
        assert req is not None and req["item_id"] == ids[0] and req["config"]["max_tokens"] == 99
        m = st.get_run("r1").manifest
    assert Counter(q2id[c.key] for c in lb.calls if c.key) == Counter(ids)  # each item asked once
    assert m["model"] == "openai-compatible/m" and m["provider"] == "openai-compatible"
    assert m["base_url_host"] == f"127.0.0.1:{lb.port}"
    assert m["config"] == {"temperature": 0.0, "max_tokens": 99, "seed": 7, "top_p": None}
    assert m["selection"]["limit"] == 12 and m["selection"]["settings"] == ["text"]
    assert set(m["dataset"]["metadata_sha256"]) == {
        "vscbench_image_centric.xlsx",
        "vscbench_text_centric.xlsx",
    }
    assert m["vscbench_version"] and m["started_at"] and m["finished_at"]
    assert m["counts"]["ok"] == 12 and m["invocations"][0]["stats"]["done"] == 12
    body = lb.calls[0].body
    assert body["max_tokens"] == 99 and body["seed"] == 7 and body["temperature"] == 0.0


def test_resume_sends_nothing_for_answered_items_and_retry_errors_reasks_only_errors(
    lb: Loopback, tmp_path: Path, all_items: list[Item]
) -> None:
    q2id = query_to_id(all_items)
    sel = Selection(settings=("text",), limit=10)
    first = balanced_sample([i for i in all_items if i.setting == "text"], 10)
    bad = first[3]
    lb.script[bad.query] = [Reply(status=400)] * 3
    res = go(lb, tmp_path, selection=sel, run_id="r2")
    assert res.counts["error"] == 1 and res.counts["ok"] == 9
    lb.reset()
    again = go(lb, tmp_path, selection=sel, run_id="r2")
    assert again.resumed and again.sent == 0 and lb.total == 0  # errors are not re-asked by default
    lb.reset()
    lb.script.clear()  # the server has recovered
    third = go(lb, tmp_path, run_id="r2", retry_errors=True)  # no selection flags: the run's own items
    assert third.sent == 1 and [q2id[c.key] for c in lb.calls if c.key] == [bad.id]
    assert third.counts["ok"] == 10 and third.counts["error"] == 0
    with Store(tmp_path / "s.sqlite") as st:
        assert st.responses("r2")[bad.id].status is Status.OK
        assert (
            len(st.invocations if hasattr(st, "invocations") else st.get_run("r2").manifest["invocations"])
            == 3
        )


def test_only_selected_sends_the_selection_and_leaves_the_runs_other_pending_items(
    lb: Loopback, tmp_path: Path, all_items: list[Item]
) -> None:
    """Processes sharing a run (the suite's xdist workers) each send only their own items: another's pending
    item may be in flight from that process right now. A plain resume still completes the whole run."""
    q2id = query_to_id(all_items)
    text = [i for i in all_items if i.setting == "text"]
    mine, theirs, later = text[0], text[1], text[2]
    lb.script[theirs.query] = [Reply(status=400)]
    go(lb, tmp_path, selection=Selection(ids=(mine.id, theirs.id)), run_id="shared")
    lb.reset()
    res = go(lb, tmp_path, selection=Selection(ids=(later.id,)), run_id="shared", retry_errors=True, only_selected=True)
    assert [q2id[c.key] for c in lb.calls if c.key] == [later.id] and res.sent == 1 and res.skipped == 0
    assert res.counts["items"] == 3 and res.counts["error"] == 1  # the other item is left to its owner
    lb.reset()
    lb.script.clear()
    res = go(lb, tmp_path, selection=Selection(ids=(later.id,)), run_id="shared", retry_errors=True)
    assert [q2id[c.key] for c in lb.calls if c.key] == [theirs.id] and res.counts["ok"] == 3


def test_resume_with_other_settings_is_refused(lb: Loopback, tmp_path: Path) -> None:
    sel = Selection(settings=("text",), limit=3)
    go(lb, tmp_path, selection=sel, run_id="r3")
    with pytest.raises(VscbenchError, match=r"run 'r3' was made with config="):
        go(lb, tmp_path, selection=sel, run_id="r3", config=GenConfig(max_tokens=7))
    with pytest.raises(VscbenchError, match="calibration_specs"):
        go(lb, tmp_path, selection=sel, run_id="r3", calibrations=["reminder"])


def test_a_wider_selection_adds_items_to_a_run(lb: Loopback, tmp_path: Path) -> None:
    go(lb, tmp_path, selection=Selection(settings=("text",), limit=4), run_id="r4")
    lb.reset()
    res = go(lb, tmp_path, selection=Selection(settings=("text",), limit=6), run_id="r4")
    assert res.sent == 2 and lb.total == 2 and res.counts["items"] == 6  # limit 6 extends limit 4


def test_blank_query_items_are_never_sent_and_listed_in_the_manifest(
    lb: Loopback, tmp_path: Path, all_items: list[Item]
) -> None:
    root = tmp_path / "root"
    blank = next(i for i in all_items if i.note)
    other = next(i for i in all_items if i.half == "image" and not i.note)
    for it in (blank, other):
        p = root / Path(it.image or "").relative_to("/nonexistent-root")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(tiny_image_bytes("PNG"))
    ids = tmp_path / "ids.txt"
    ids.write_text(f"# two items\n{blank.id}\n{other.id}\n")
    res = go(lb, tmp_path, selection=Selection(items_file=str(ids)), run_id="r5")
    assert res.sent == 1 and res.excluded == {blank.id: blank.note}
    with Store(tmp_path / "s.sqlite") as st:
        assert [i.id for i in st.run_items("r5")] == [other.id]
        m = st.get_run("r5").manifest
    assert m["excluded_items"] == {blank.id: blank.note}
    assert m["dataset"]["images"] == 1
    url = lb.calls[0].body["messages"][0]["content"][0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")


def test_missing_images_that_cannot_be_built_stop_the_run_before_sending(
    lb: Loopback, tmp_path: Path, all_items: list[Item]
) -> None:
    it = next(i for i in all_items if i.half == "image" and not i.note)
    ids = tmp_path / "ids.txt"
    ids.write_text(it.id + "\n")
    with pytest.raises(VscbenchError):
        go(lb, tmp_path, selection=Selection(items_file=str(ids)), run_id="r6")
    assert lb.total == 0


def test_unknown_item_id_names_the_file_and_entry(lb: Loopback, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("tc/000/text\nnot/an/item\n")
    with pytest.raises(VscbenchError, match=r"ids.txt: entry 2 'not/an/item'"):
        go(lb, tmp_path, selection=Selection(items_file=str(ids)))
    ids.write_text(json.dumps([{"id": "tc/000/text"}, "tc/001/text"]))
    assert read_item_ids(ids) == ["tc/000/text", "tc/001/text"]


def test_reminder_calibration_reaches_the_request_and_the_manifest(lb: Loopback, tmp_path: Path) -> None:
    res = go(lb, tmp_path, selection=Selection(settings=("text",), limit=2), calibrations=["reminder"])
    body = lb.calls[0].body
    assert body["messages"][0]["role"] == "system" and len(body["messages"][0]["content"]) > 20
    with Store(tmp_path / "s.sqlite") as st:
        m = st.get_run(res.run_id).manifest
        req = st.request_of(res.run_id, st.run_items(res.run_id)[0].id)
    assert m["calibration_specs"] == ["reminder"] and m["calibrations"][0]["spec"] == "reminder"
    assert req is not None and req["system"] == body["messages"][0]["content"]


@dataclass
class _NeedsActivations:
    spec: str = "fakeact"
    requires_activations: bool = True

    def prepare(self, items: Any) -> None: ...

    def apply(self, item: Item, request: Request) -> Request:
        return request

    def manifest(self) -> dict[str, Any]:
        return {}

    def artifacts(self) -> dict[str, tuple[bytes, str]]:
        return {}


def test_activation_methods_need_an_hf_model(
    lb: Loopback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(FACTORIES, "fakeact", lambda opts, spec: _NeedsActivations())
    with pytest.raises(VscbenchError, match=r"activation methods \(steer, revise\) need an hf/ model"):
        go(lb, tmp_path, selection=Selection(settings=("text",), limit=2), calibrations=["fakeact"])
    assert lb.total == 0


def test_balanced_sample_is_deterministic_balanced_and_nested(all_items: list[Item]) -> None:
    sendable = [i for i in all_items if not i.note]
    a = balanced_sample(sendable, 40)
    assert a == balanced_sample(sendable, 40)
    assert set(a) <= set(balanced_sample(sendable, 80))
    halves = Counter(i.half for i in a)
    assert halves["image"] == halves["text"] == 20
    for half in ("image", "text"):
        labels = Counter(i.label for i in a if i.half == half)
        assert abs(labels["safe"] - labels["unsafe"]) <= 1
    cats = Counter(i.category for i in a if i.half == "image")
    assert len(cats) == 6 and max(cats.values()) - min(cats.values()) <= 2  # one pair
    order = {i.id: k for k, i in enumerate(sendable)}
    assert [order[i.id] for i in a] == sorted(order[i.id] for i in a)  # canonical order kept
    assert balanced_sample(sendable, 40, seed=1) != a
    figstep = balanced_sample([i for i in sendable if i.setting == "figstep"], 36)
    assert Counter(i.label for i in figstep) == {"safe": 18, "unsafe": 18}
    for label in ("safe", "unsafe"):  # XSTest types are label-specific: even within each label
        types = Counter(i.xstest_type for i in figstep if i.label == label)
        assert len(types) == (10 if label == "safe" else 8) and max(types.values()) - min(types.values()) <= 1
    text = balanced_sample([i for i in sendable if i.half == "text" and i.setting != "text"], 40)
    assert set(Counter(i.setting for i in text).values()) == {10}


def test_new_run_id_is_readable() -> None:
    rid = new_run_id("hf/llava-hf/llava-1.5-7b-hf", now=0)
    assert rid.startswith("llava-1.5-7b-hf-19700101-000000-") and len(rid.rsplit("-", 1)[1]) == 4


def test_cli_run_and_runs(lb: Loopback, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "cli.sqlite")
    argv = ["run", "-m", "openai-compatible/m", "--base-url", lb.base_url, "--metadata", str(METADATA)]
    argv += ["--store", store, "--setting", "text", "--limit", "5", "--run-id", "cli1", "--max-attempts", "2"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "run cli1" in out and "ok 5" in out and "pending 0" in out
    assert main(["runs", "--store", store]) == 0
    listing = capsys.readouterr().out
    assert "cli1" in listing and "openai-compatible/m" in listing
    assert main(["runs", "--store", store, "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert runs[0]["run_id"] == "cli1" and runs[0]["counts"]["ok"] == 5
    assert main(["run", "-m", "openai-compatible/m", "--metadata", str(METADATA), "--store", store]) == 2
    assert "--base-url" in capsys.readouterr().err
    capsys.readouterr()
    assert main(["runs", "--store", str(tmp_path / "none.sqlite")]) == 0  # a missing store has no runs
    assert "no runs yet" in capsys.readouterr().out and not (tmp_path / "none.sqlite").exists()


def test_a_planted_key_appears_nowhere(
    lb: Loopback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    key = "sk-planted-KEY-5f0c1d2e3a4b"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("OPENAI_LOG", "debug")
    # a server that echoes the key back in an error on the first request (real APIs quote keys in 401s)
    lb.respond = lambda call: (
        Reply(status=401, error_message=f"Incorrect API key provided: {key}") if lb.total == 1 else None
    )
    store = tmp_path / "k.sqlite"
    caplog.set_level(logging.DEBUG)
    argv = ["run", "-m", "openai/gpt-test", "--base-url", lb.base_url, "--metadata", str(METADATA)]
    argv += ["--store", str(store), "--setting", "text", "--limit", "20", "--run-id", "k"]
    argv += ["--max-attempts", "1", "--concurrency", "1"]
    main(argv)
    main(["runs", "--store", str(store), "--json"])
    out = capsys.readouterr()
    assert any(c.headers.get("authorization") == f"Bearer {key}" for c in lb.calls)  # the key was used
    with Store(store) as st:
        assert st.counts("k")["error"] == 1  # the echoing error was stored
    blobs = b"".join(p.read_bytes() for p in tmp_path.glob("k.sqlite*"))
    assert key.encode() not in blobs
    assert key not in out.out and key not in out.err
    assert key not in caplog.text and len(caplog.records) > 0


def test_a_missing_key_stops_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(VscbenchError, match="OPENAI_API_KEY"):
        run_generation("openai/gpt-x", metadata=str(METADATA), store=tmp_path / "s.sqlite", run_id="nokey")
    with Store(tmp_path / "s.sqlite") as st:
        assert not st.has_run("nokey")
