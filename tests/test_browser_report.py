"""The HTML report in headless Chromium: no console errors, no network, hostile output stays text, filters work."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from report_store import ITEMS, OUTCOMES, C, R, W, build_store, o
from vscbench.report import build_report, render
from vscbench.store import Store
from vscbench.types import Label

pytestmark = pytest.mark.browser

PAYLOAD = (
    "<script>window.__pwned = 'script'</script>"
    '<img src=x onerror="window.__pwned = \'img\'">'
    '<a href="javascript:window.__pwned=\'link\'">click me</a> & done'
)


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("browser")
    img = base / "pic.png"
    Image.new("RGB", (300, 200), (20, 120, 200)).save(img)
    items = [type(i)(**{**i.__dict__, "image": str(img)}) if i.half == "image" else i for i in ITEMS]
    # run "b": the second run, with a second judge that disagrees on three items
    b = {i.id: o(R if i.label == "unsafe" else C) for i in ITEMS}
    b["ic/drugs/000/safe/0"] = o(W)
    keyword = {iid: (oc.label or Label.UNJUDGED) for iid, oc in b.items()}
    for iid in ("ic/drugs/000/safe/1", "tc/000/search", "tc/002/concat"):
        keyword[iid] = Label.REFUSE
    path = build_store(
        base / "s.sqlite",
        {"a": OUTCOMES, "b": b},
        items=items,
        texts={"ic/drugs/000/unsafe/2": PAYLOAD},
        extra_labels={"b": {"keyword": keyword}},
        manifests={"a": {"banner": "random tiny model: numbers are meaningless, this demonstrates the pipeline"}},
        models={"a": "<img src=x onerror=\"window.__pwned='model'\">"},
    )
    with Store(path) as st:
        rep = build_report(st, ["a", "b"], ci=True, n_boot=200)
    out = base / "report.html"
    out.write_text(render(rep, "html"), encoding="utf-8")
    return out


@pytest.fixture
def page(browser: Any, report_file: Path) -> Iterator[tuple[Any, list[str], list[str]]]:
    ctx = browser.new_context(viewport={"width": 1300, "height": 1000})
    pg = ctx.new_page()
    errors: list[str] = []
    requests: list[str] = []
    pg.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
    pg.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    pg.on("request", lambda r: requests.append(r.url))
    pg.goto(report_file.as_uri())
    pg.wait_for_selector("#items-body tr")
    yield pg, errors, requests
    ctx.close()


def visible_rows(pg: Any) -> int:
    return int(pg.locator("#items-body tr.item").count())


def test_opens_without_errors_or_network(page: tuple[Any, list[str], list[str]], report_file: Path) -> None:
    pg, errors, requests = page
    assert errors == []
    assert [u for u in requests if not u.startswith("data:")] == [report_file.as_uri()]
    assert pg.locator("#leaderboard tbody tr").count() == 2
    assert pg.locator("svg.plane circle").count() == 2
    assert pg.get_by_text("numbers are meaningless").first.is_visible()
    # every thumbnail is an inlined data URL
    srcs = pg.eval_on_selector_all("img", "els => els.map(e => e.getAttribute('src'))")
    assert srcs and all(s.startswith("data:image/jpeg;base64,") for s in srcs)


def test_hostile_output_is_shown_as_text_and_runs_nothing(page: tuple[Any, list[str], list[str]]) -> None:
    pg, errors, _ = page
    pg.fill("#f-text", "click me")
    assert visible_rows(pg) == 2  # the same text in both runs
    pg.select_option("#f-run", label="a")
    assert visible_rows(pg) == 1
    resp = pg.locator("#items-body .resp").first
    assert resp.inner_text() == PAYLOAD
    assert pg.evaluate("typeof window.__pwned") == "undefined"
    assert pg.locator("#items-body a, #items-body script").count() == 0
    assert pg.locator("#items-body img").count() == 1  # the item's thumbnail only
    # the model name with an onerror handler is text in the leaderboard
    assert "onerror" in pg.locator("#leaderboard").inner_text()
    assert pg.evaluate("typeof window.__pwned") == "undefined"
    assert errors == []


def test_filters(page: tuple[Any, list[str], list[str]], tmp_path: Path) -> None:
    pg, errors, _ = page
    total = 2 * len(ITEMS)
    assert pg.locator("#f-count").inner_text().startswith(f"{total} of {total}")
    assert visible_rows(pg) == total
    pg.select_option("#f-run", label="a")
    assert visible_rows(pg) == len(ITEMS)
    # run a, wrong answers: drugs safe/2 and unsafe/2, violence safe/2 (blocked, scored REFUSE), tc/000/typography
    pg.select_option("#f-verdict", "wrong")
    assert visible_rows(pg) == 4
    pg.select_option("#f-verdict", "excluded")
    assert visible_rows(pg) == 4  # error, unjudged, empty (tc/001/figstep), missing (tc/002/search)
    pg.select_option("#f-verdict", "")
    pg.select_option("#f-run", label="b")
    pg.check("#f-dis")
    assert visible_rows(pg) == 3
    pg.uncheck("#f-dis")
    pg.select_option("#f-setting", "figstep")
    assert visible_rows(pg) == 3
    pg.select_option("#f-setting", "")
    pg.select_option("#f-group", "violence")
    pg.select_option("#f-label", "unsafe")
    assert visible_rows(pg) == 3
    pg.select_option("#f-run", "")
    pg.select_option("#f-group", "")
    pg.select_option("#f-label", "")
    pg.select_option("#f-verdict", "wrong")
    assert visible_rows(pg) == 5  # 4 in run a + drugs safe/0 in run b
    pg.select_option("#f-verdict", "")
    shot = tmp_path / "report.png"
    pg.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    assert errors == []
