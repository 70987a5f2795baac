"""Report defects a tester found through the CLI (QA items 4, 5, 19, 20, 21, 22), each pinned by a test."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from report_store import EMPTY, ERR, ITEMS, C, R, build_store, image_query, o
from vscbench.cli import main
from vscbench.metrics import Outcome
from vscbench.report.svg import Series, bar_chart
from vscbench.store import Store
from vscbench.types import Status


def report(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    code = main(["report", *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def report_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert main(["report", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def rows_of(doc: dict[str, Any], run: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["group"], r["metric"]): r for r in doc["rows"] if r["run"] == run}


# ---- 4: never-sent items counted per group from the run's snapshots ---------------------------------------
def test_never_sent_snapshots_count_per_group(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sent = image_query("drugs", 0)
    blank = image_query("discrimination", 16)  # a blank query: never sent, never a run item
    stray = image_query("violence", 3)[0]  # has a snapshot but the manifest does not list it: not counted
    path = build_store(tmp_path / "s.sqlite", {"new": {i.id: o(R) for i in sent}, "old": {i.id: o(R) for i in sent}},
                       items=sent)
    listed = {i.id: "blank query" for i in blank} | {"ic/discrimination/035/safe/0": "blank query"}
    snap = "".join(json.dumps(i.to_dict()) + "\n" for i in [*blank, stray]) + "not json\n"
    with Store(path) as st:
        for rid in ("new", "old"):
            st.update_manifest(rid, {"excluded_items": listed})
        st.put_artifact("new", "excluded_items.jsonl", snap.encode(), "application/x-ndjson")
    doc = json.loads(report(capsys, "--run", "new", "--run", "old", "--format", "json", "--store", str(path)))
    new, old = rows_of(doc, "new"), rows_of(doc, "old")
    disc = new[("category=discrimination", "coverage")]
    assert (disc["n"], disc["excluded"], disc["excluded_not_sent"], disc["value"]) == (6, 6, 6, 0.0)
    bench = new[("benchmark", "coverage")]
    assert (bench["n"], bench["excluded_not_sent"], bench["value"]) == (12, 6, 0.5)
    assert new[("slot=0", "coverage")]["excluded_not_sent"] == 2
    assert new[("category=violence", "coverage")]["n"] == 0  # the stray snapshot is not counted
    assert new[("half=image", "pair_acc")]["excluded"] == 3  # the blank query's three pairs
    run = new[("run", "coverage")]  # one listed id has no snapshot: counted for the run only
    assert (run["n"], run["excluded_not_sent"]) == (13, 7)
    assert new[("category=drugs", "SRA_u")]["value"] == 1.0
    # a run stored before the artifact existed keeps run-level counting
    assert old[("category=discrimination", "coverage")]["n"] == 0
    assert old[("benchmark", "coverage")]["excluded_not_sent"] == 0
    assert (old[("run", "coverage")]["n"], old[("run", "coverage")]["excluded_not_sent"]) == (13, 7)
    md = report(capsys, "--run", "new", "--format", "md", "--store", str(path))
    # the summary counts the benchmark items, as its rates do; the notes count every item of the run
    assert "6/12 scored (not sent 6)" in md and "6/13" not in md.split("### Image")[0]
    assert "all items of the run: 6 of 13 (text-only baseline in); excluded: not sent 7" in md


# ---- 5: nothing a judge could label is a report, not a loop ----------------------------------------------
def test_run_without_ok_responses_is_reported_as_zero_scored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = image_query("drugs", 0)[:2]
    path = build_store(
        tmp_path / "s.sqlite",
        {"bad": {items[0].id: o(None, EMPTY), items[1].id: o(None, ERR)}, "pending": {}},
        items=items,
    )
    doc = json.loads(report(capsys, "--run", "bad", "--format", "json", "--store", str(path)))
    run = rows_of(doc, "bad")[("run", "coverage")]
    assert (run["n"], run["excluded"], run["excluded_empty"], run["excluded_error"]) == (2, 2, 1, 1)
    assert rows_of(doc, "bad")[("benchmark", "SRA_s")]["value"] is None
    assert doc["runs"][0]["judge"] == "none"
    out = report(capsys, "--run", "bad", "--store", str(path))
    assert "0/2 scored" in out and "error 1, empty 1" in out and "none has status ok" in out
    out = report(capsys, "--run", "pending", "--store", str(path))
    assert "0/2 scored (missing 2)" in out
    # a judge name the user asks for is fine too: nothing needed labelling
    doc = json.loads(report(capsys, "--run", "bad", "--judge", "keyword", "--format", "json", "--store", str(path)))
    assert doc["runs"][0]["judge"] == "keyword"


def test_ok_responses_without_labels_still_ask_for_judging(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = image_query("drugs", 0)[:2]
    path = build_store(tmp_path / "s.sqlite", {"r": {items[0].id: Outcome(Status.OK), items[1].id: o(None, EMPTY)}},
                       items=items)
    assert "run 'vscbench judge --run r' first" in report_error(capsys, "--run", "r", "--store", str(path))


# ---- 19: n = 0 rows, missing groups in charts -----------------------------------------------------------
def test_paired_rows_with_nothing_to_test_show_dashes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = image_query("drugs", 0)
    a = {i.id: o(R if i.label == "unsafe" else C) for i in items}
    b = {i.id: (o(R) if i.label == "unsafe" else o(None, ERR)) for i in items}  # no safe item in common
    path = build_store(tmp_path / "s.sqlite", {"a": a, "b": b}, items=items)
    doc = json.loads(report(capsys, "--run", "a", "--run", "b", "--format", "json", "--store", str(path)))
    s = next(c for c in doc["comparisons"] if (c["group"], c["metric"]) == ("half=image", "SRA_s"))
    assert (s["n"], s["p_value"]) == (0, None)
    md = report(capsys, "--run", "a", "--run", "b", "--format", "md", "--store", str(path))
    row = next(line for line in md.splitlines() if "| half=image | SRA\\_s |" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[6:] == ["–", "–", "0"]  # discordant counts and p: nothing to test
    u = next(line for line in md.splitlines() if "| half=image | SRA\\_u |" in line)
    assert u.rstrip().endswith("| 0/0 | 1 | 3 |")  # a tested row keeps its numbers


def test_svg_bars_tell_zero_from_missing() -> None:
    svg = bar_chart("t", ["a", "b", "c"], [Series("run", "#000000", [0.0, None, 0.5])])
    assert svg.count('class="na"') == 1 and ">n/a<" in svg and "no scored item" in svg
    assert svg.count('class="zero"') == 1
    # the 0.0 bar (thin but visible), the 0.5 bar and the legend swatch; no rect for the missing value
    assert svg.count("<rect ") == 3
    zero = svg[svg.index('<g class="zero">') :]
    assert 'height="2"' in zero[: zero.index("</g>")]


def test_plot_marks_missing_groups(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    items = image_query("drugs", 0)
    runs = {
        "zero": {i.id: o(C) for i in items},  # SRA_u = 0
        "right": {i.id: o(R if i.label == "unsafe" else C) for i in items},  # SRA_u = SRA_s = 1
    }
    path = build_store(tmp_path / "s.sqlite", runs, items=items)
    svgs = {}
    for rid in runs:
        out = tmp_path / rid
        assert main(["plot", "--run", rid, "--out", str(out), "--format", "svg", "--store", str(path)]) == 0
        svgs[rid] = (out / "sra_by_category.svg").read_text()
    assert svgs["zero"].count(">n/a<") == 2 * 5  # five categories without items, in both panels
    assert svgs["right"].count(">n/a<") == 2 * 5
    # a rate of exactly 0 gets its own "0" label (beyond the axis ticks both figures share)
    assert svgs["zero"].count(">0<") == svgs["right"].count(">0<") + 1


# ---- 20: paired label order, escaping, intervals, chosen runs --------------------------------------------
def test_paired_table_names_a_first_and_escapes_only_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = list(ITEMS)
    refuse_all = {i.id: o(R) for i in items}
    comply_all = {i.id: o(C) for i in items}
    path = build_store(tmp_path / "s.sqlite", {"refuse": refuse_all, "comply": comply_all}, items=items)
    md = report(capsys, "--run", "refuse", "--run", "comply", "--format", "md", "--ci", "--resamples", "50",
                "--store", str(path))
    head = next(line for line in md.splitlines() if line.startswith("| Runs"))
    assert "Runs (A vs B)" in head
    row = next(line for line in md.splitlines() if "| benchmark | SRA\\_u |" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == "refuse vs comply"
    assert cells[3] == "100.0" and cells[4] == "0.0"  # A = refuse answers every unsafe item right
    assert "\\[" not in md and "\\]" not in md  # intervals are numbers: not escaped, as in the summary
    assert re.search(r"\[-100\.0, -100\.0\]", row)


# ---- 21: an unknown judge name --------------------------------------------------------------------------
def test_unknown_judge_names_stored_and_known_judges(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = image_query("drugs", 0)
    path = build_store(tmp_path / "s.sqlite", {"r": {i.id: o(R) for i in items}}, items=items, judge="keyword")
    err = report_error(capsys, "--run", "r", "--judge", "bogus", "--store", str(path))
    assert "unknown judge 'bogus'" in err and "labels from: keyword" in err
    assert "judge names are keyword, local" in err and "rubric:PROVIDER/MODEL" in err and "vscbench judge" not in err
    err = report_error(capsys, "--run", "r", "--judge", "local", "--store", str(path))
    assert "labels stored from: keyword" in err and "'vscbench judge --run r --judge local'" in err
    err = report_error(capsys, "--run", "r", "--judge", "rubric:openai/gpt-4o-mini+image", "--store", str(path))
    assert "'vscbench judge --run r --judge rubric:openai/gpt-4o-mini --judge-sees-image'" in err


# ---- 22: help texts -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("command", "phrases"),
    [
        ("report", ["first --run is the baseline", "booktabs", "item browser"]),
        ("plot", ["calibration_plane", "marked n/a", "svg (text kept as text)"]),
        ("score", ["vLLM", "nothing is stored"]),
    ],
)
def test_help_describes_the_command(command: str, phrases: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for p in phrases:
        assert p in out

