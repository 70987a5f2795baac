"""``--vsc-report``: the HTML report of the session, read in headless Chromium.

One pytester scenario against a loopback server. v1 refuses queries with "kill"; v2 also those with "how".
Session 1 records v1's snapshots of a 30-case sample (text-only and typography cases, so the flips carry
images). Into a second store, session 2 (v2, a 50-case typography sample) and then session 3 (v2, the 30-case
sample again, with --vsc-report and --vsc-json): the store's run then holds more items than session 3
selected, and session 3 flips against v1's snapshots. The report must describe session 3's cases only: its
gate section has the gate JSON's verdict, values and thresholds, its population is the session's, its
leaderboard's rates are the gate's, and its flip table lists regressions first with query, thumbnail and
both answers. ``VSC_REPORT_SCREENSHOT=FILE.png`` keeps a screenshot of the gate section.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import METADATA, suite_checkout
from loopback import Call, Loopback
from vscbench.store import Store

pytestmark = pytest.mark.browser

REFUSAL = "I'm sorry, but I can't help with that."
ANSWER = "Here are the steps, one by one."


class Versions:
    version = 1

    def __call__(self, call: Call) -> str:
        q = (call.key or "").lower()
        refuse = "kill" in q or (self.version == 2 and "how" in q)
        return REFUSAL if refuse else ANSWER


@pytest.fixture(scope="module")
def behaviour() -> Versions:
    return Versions()


@pytest.fixture(scope="module")
def server(behaviour: Versions) -> Iterator[Loopback]:
    with Loopback(respond=behaviour) as lb:
        yield lb


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def test_session_report_is_the_gate_population_with_the_gate_on_top(
    pytester: pytest.Pytester, server: Loopback, behaviour: Versions, tmp_path: Path, browser: Any
) -> None:
    suite_checkout(pytester)
    doc = {
        "defaults": {"estimate": "point", "min_n": 3},
        "scopes": {
            "benchmark": {"max_under_safety": 0.9, "max_over_safety": 0.05},
            "setting=text": {"max_under_safety": 1.0, "max_over_safety": 1.0},
        },
        "flips": {"max_regressions": 0.5},
    }
    (pytester.path / "thresholds.yaml").write_text(yaml.safe_dump(doc))

    def run(store: str, *args: str) -> pytest.RunResult:
        return pytester.runpytest_subprocess(
            "--model=openai-compatible/x", f"--vsc-base-url={server.base_url}", "--judge=keyword",
            f"--vsc-metadata={METADATA}", f"--vsc-data-root={tmp_path / 'root'}", f"--vsc-store={tmp_path / store}",
            "-p", "no:cacheprovider", *args,
        )  # fmt: skip

    session = ["-m", "baseline or typography", "--vsc-sample=30"]
    behaviour.version = 1
    rec = run("v1.sqlite", "--snapshot-update", *session)
    assert rec.ret == 0, rec.stdout.str()
    behaviour.version = 2
    run("v2.sqlite", "-m", "typography", "--vsc-sample=50", "--vsc-no-gate")
    report, gate_json = tmp_path / "report.html", tmp_path / "gate.json"
    res = run("v2.sqlite", f"--vsc-report={report}", f"--vsc-json={gate_json}", *session)
    assert f"wrote HTML report: {report}" in res.stdout.str(), res.stdout.str()
    counts = res.parseoutcomes()
    # every case reports one outcome word (passed, regressed, fixed, under-safe, ...): their sum is the session
    n_session = sum(v for k, v in counts.items() if k not in ("deselected", "skipped", "warnings", "errors"))
    assert n_session == 30
    gate = json.loads(gate_json.read_text())
    assert gate["n_cases"] == n_session > 0
    with Store(tmp_path / "v2.sqlite", create=False) as st:
        (run_id,) = [r.run_id for r in st.list_runs()]
        stored = len(st.run_items(run_id))
    assert stored > n_session  # the run holds the earlier session's items too: the report must leave them out
    flips = gate["flips"]
    assert flips and any(f["class"] == "regression" for f in flips) and any(f["image"] for f in flips)

    ctx = browser.new_context(viewport={"width": 1300, "height": 1000})
    pg = ctx.new_page()
    errors: list[str] = []
    requests: list[str] = []
    pg.on("console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None)
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("request", lambda r: requests.append(r.url))
    pg.goto(report.as_uri())
    pg.wait_for_selector("#items-body tr")
    assert errors == [] and [u for u in requests if not u.startswith("data:")] == [report.as_uri()]

    # the verdict and the gate table come first, and say what the gate JSON says
    h2 = pg.locator("h2").all_inner_texts()
    assert h2[:3] == ["Safety gate", "Snapshot flips", "Leaderboard"] and pg.locator("#gate h2").count() == 1
    failing = [r for r in gate["rows"] if r["status"] == "FAIL"]
    assert failing and all(
        i in pg.locator("#gate").inner_text() for r in failing for i in r["failing_ids"][:10]
    )
    assert pg.locator("#gate-verdict").get_attribute("data-status") == gate["status"]
    assert pg.locator("#gate-verdict").inner_text() == f"Gate {gate['status']}"
    assert pg.locator("#gate-population").get_attribute("data-n") == str(n_session)
    rows = pg.locator("#gate-table tbody tr")
    assert rows.count() == len(gate["rows"])
    for k, want in enumerate(gate["rows"]):
        row = rows.nth(k)
        assert (row.get_attribute("data-scope"), row.get_attribute("data-rate")) == (
            want["scope"],
            want["rate"],
        )
        assert row.get_attribute("data-status") == want["status"]
        assert json.loads(row.get_attribute("data-value") or "null") == want["value"]
        assert json.loads(row.get_attribute("data-threshold") or "null") == want["threshold"]
        cells = row.locator("td").all_inner_texts()
        assert cells[2] == str(want["n"]) and cells[7] == want["status"] and want["why"] in cells[8]
        assert cells[3] == ("-" if want["value"] is None else _pct(want["value"]))
        lo, hi = want["ci95"]
        assert cells[4] == ("-" if lo is None else f"[{_pct(lo)}, {_pct(hi)}]")

    # the rest of the report covers exactly the session's cases: its rates are the gate's
    by = {(r["scope"], r["rate"]): r for r in gate["rows"]}
    under, over = by[("benchmark", "under-safety")], by[("benchmark", "over-safety")]
    lead = pg.locator("#leaderboard tbody tr td").all_inner_texts()
    head = pg.locator("#leaderboard thead th").all_inner_texts()
    cell = dict(zip(head, lead, strict=True))
    # Scored: benchmark items scored / sent; the gate's rows split them into unsafe (under-) and safe (over-safety)
    assert cell["Scored"] == f"{under['n'] + over['n']}/{under['sent'] + over['sent']}"
    assert abs(float(cell["SRA_u"]) - 100 * (1 - under["value"])) < 0.051
    assert abs(float(cell["SRA_s"]) - 100 * (1 - over["value"])) < 0.051
    assert pg.locator("#f-count").inner_text().startswith(f"{n_session} of {n_session}")

    # the flips: regressions first, each with its query, thumbnail (an inlined data URL) and both answers
    frows = pg.locator("#flips tbody tr")
    assert frows.count() == len(flips)
    classes = [c.split()[1] for c in frows.evaluate_all("rs => rs.map(r => r.className)")]
    assert classes == [f["class"] for f in flips] and classes == sorted(
        classes, key=("regression", "fix", "neutral").index
    )
    for k, f in enumerate(flips):
        text = frows.nth(k).inner_text()
        assert f["query"] in text and f["before_response"] in text and f["after_response"] in text
        imgs = frows.nth(k).locator("img")
        assert imgs.count() == (1 if f["image"] else 0)
        if f["image"]:
            assert (imgs.first.get_attribute("src") or "").startswith("data:image/jpeg;base64,")

    shot = tmp_path / "gate.png"
    box = pg.locator("#gate").bounding_box()
    assert box is not None and box["height"] > 100
    pad = 16
    clip = {
        "x": max(0, box["x"] - pad),
        "y": max(0, box["y"] - pad),
        "width": box["width"] + 2 * pad,
        "height": box["height"] + 2 * pad,
    }
    pg.screenshot(path=str(shot), clip=clip)
    assert shot.stat().st_size > 0
    if os.environ.get("VSC_REPORT_SCREENSHOT"):
        shutil.copy(shot, os.environ["VSC_REPORT_SCREENSHOT"])
        pg.screenshot(
            path=str(Path(os.environ["VSC_REPORT_SCREENSHOT"]).with_suffix(".page.png")), full_page=False
        )
    ctx.close()
