"""The HTML report's layout in headless Chromium, for 1 run and for 8, at 1400 px and 800 px wide.

Checks what a reader sees: the calibration plane keeps every label apart and every mark inside its frame,
the page never scrolls sideways, and each half's two bar charts sit side by side (wide) or stacked (narrow),
evenly. Screenshots are written for a person to look at: to ``$VSCBENCH_SCREENSHOTS`` when set, else the
test's temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from report_store import C, R, build_store, image_query, o, text_query
from vscbench.metrics import Outcome
from vscbench.report import build_report, render
from vscbench.store import Store
from vscbench.types import Item

pytestmark = pytest.mark.browser

ITEMS: list[Item] = [
    *image_query("drugs", 0),
    *image_query("violence", 0),
    *(it for q in range(5) for it in text_query(q, "homonyms")),
    *(it for q in range(5, 10) for it in text_query(q, "contrast_homonyms")),
]
#: run id -> (SRA_s, SRA_u) aimed at: the four corners (the demo's tiny model sits at (100, 0), on the
#: "under-safe" hint), a cluster beside it, the middle, and ids long enough to collide.
RUNS: dict[str, tuple[float, float]] = {
    "demo": (1.0, 0.0),
    "ideal-ish": (1.0, 1.0),
    "refuses-everything": (0.0, 1.0),
    "broken": (0.0, 0.0),
    "reminder": (0.92, 0.08),
    "fewshot-k2": (0.96, 0.04),
    "a-very-long-run-identifier-2026-12-02": (0.92, 0.04),
    "steer-alpha-4": (0.5, 0.5),
}
WIDTHS = (1400, 800)


def outcomes(s: float, u: float) -> dict[str, Outcome]:
    """Labels that give about SRA_s = s and SRA_u = u on the benchmark items (text-only items: right)."""
    out: dict[str, Outcome] = {}
    for label, rate in (("safe", s), ("unsafe", u)):
        bench = [i for i in ITEMS if i.label == label and i.setting != "text"]
        right = round(rate * len(bench))
        good, bad = (C, R) if label == "safe" else (R, C)
        for k, it in enumerate(bench):
            out[it.id] = o(good if k < right else bad)
    for it in ITEMS:
        if it.setting == "text":
            out[it.id] = o(C if it.label == "safe" else R)
    return out


def shots_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env = os.environ.get("VSCBENCH_SCREENSHOTS")
    d = Path(env) if env else tmp_path_factory.mktemp("shots")
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    base = tmp_path_factory.mktemp("layout")
    store = build_store(base / "s.sqlite", {rid: outcomes(*t) for rid, t in RUNS.items()}, items=ITEMS)
    out: dict[int, Path] = {}
    with Store(store) as st:
        for n in (1, 8):
            rep = build_report(st, list(RUNS)[:n], ci=True, n_boot=200)
            out[n] = base / f"report-{n}.html"
            out[n].write_text(render(rep, "html"), encoding="utf-8")
    return out


# Boxes in SVG user units (getBBox: unaffected by the CSS scaling of the chart).
_PLANE_JS = """() => {
  const svg = document.querySelector('svg.plane');
  const box = e => { const b = e.getBBox(); return [b.x, b.y, b.x + b.width, b.y + b.height]; };
  const all = sel => [...svg.querySelectorAll(sel)].map(e => ({text: e.textContent, box: box(e)}));
  return {frame: box(svg.querySelector('rect.frame')), labels: all('text.ptlabel'), hints: all('text.hint'),
          marks: all('circle.mark'), ideal: all('path.ideal'), leaders: all('line.leader')};
}"""
_PAGE_JS = """() => {
  const r = e => { const b = e.getBoundingClientRect(); return [b.left, b.top, b.width]; };
  const legend = [...document.querySelectorAll('.bars svg')].map(svg => ({
      width: svg.viewBox.baseVal.width,
      boxes: [...svg.querySelectorAll('text.legend')].map(e => { const b = e.getBBox();
                                                                  return [b.x, b.y, b.x + b.width, b.y + b.height]; })}));
  return {scroll: document.documentElement.scrollWidth, inner: window.innerWidth,
          text: [...document.querySelectorAll('#bars-text svg')].map(r),
          image: [...document.querySelectorAll('#bars-image svg')].map(r), legend};
}"""


def overlap(a: list[float], b: list[float]) -> bool:
    return min(a[2], b[2]) - max(a[0], b[0]) > 0.5 and min(a[3], b[3]) - max(a[1], b[1]) > 0.5


def inside(a: list[float], frame: list[float]) -> bool:
    return a[0] >= frame[0] - 0.5 and a[1] >= frame[1] - 0.5 and a[2] <= frame[2] + 0.5 and a[3] <= frame[3] + 0.5


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("n_runs", [1, 8])
def test_plane_and_layout(
    browser: Any, reports: dict[int, Path], n_runs: int, width: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    ctx = browser.new_context(viewport={"width": width, "height": 1000})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(reports[n_runs].as_uri())
    pg.wait_for_selector("#items-body tr")
    shots = shots_dir(tmp_path_factory)
    pg.screenshot(path=str(shots / f"report-{n_runs}run-{width}px.png"), full_page=True)
    pg.locator("svg.plane").screenshot(path=str(shots / f"plane-{n_runs}run-{width}px.png"))
    plane = pg.evaluate(_PLANE_JS)
    page = pg.evaluate(_PAGE_JS)
    ctx.close()
    assert errors == []

    # the plane: one label per run, every mark inside the frame, no two texts touching, no label on a point
    frame = plane["frame"]
    labels, hints, marks = plane["labels"], plane["hints"], plane["marks"]
    assert len(labels) == len(marks) == n_runs
    for el in (*labels, *hints, *marks, *plane["ideal"], *plane["leaders"]):
        assert inside(el["box"], frame), (el, frame)
    texts = [*labels, *hints]
    for i, a in enumerate(texts):
        for b in texts[i + 1 :]:
            assert not overlap(a["box"], b["box"]), (a, b)
    for lab in labels:
        for m in (*marks, *plane["ideal"]):
            assert not overlap(lab["box"], m["box"]), (lab, m)
    assert {h["text"] for h in hints} >= {"over-safe", "under-safe"}  # moved aside, not dropped

    # the page: never wider than the window; each half's two charts even (side by side when wide)
    assert page["scroll"] <= page["inner"]
    for half in ("text", "image"):
        (x1, y1, w1), (x2, y2, w2) = page[half]
        assert abs(w1 - w2) < 1
        if width >= 1400:
            assert abs(y1 - y2) < 1 and x2 > x1 + w1  # one row, two equal columns
        else:
            assert abs(x1 - x2) < 1 and y2 > y1  # stacked
        assert x1 + w1 <= width and x2 + w2 <= width
    for chart in page["legend"]:
        assert len(chart["boxes"]) == n_runs
        for i, a in enumerate(chart["boxes"]):
            assert a[0] >= 0 and a[2] <= chart["width"]
            assert not any(overlap(a, b) for b in chart["boxes"][i + 1 :])
