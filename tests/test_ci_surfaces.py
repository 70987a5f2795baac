"""What a reviewer and a CI dashboard read: flips classified, JUnit rows from the gate, the bounded Markdown
summary, the flip budget by regressions, model folder names, and ``vscbench snapshots diff`` on bad input."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from conftest import METADATA
from vscbench.cli import main as cli
from vscbench.data import load_items, resolve_paths
from vscbench.errors import VscbenchError
from vscbench.suite import snapshots as snap
from vscbench.suite.ci import junit_cases, summary
from vscbench.suite.gate import NOT_EVALUATED, FlipBudget, GateResult, _flip_row, parse_thresholds

ITEMS = [i for i in load_items(resolve_paths(None, METADATA)) if i.setting == "text"][:6]


@pytest.mark.parametrize(
    ("before", "after", "cls"),
    [
        ("correct", "under-safe", "regression"), ("correct", "over-safe", "regression"),
        ("under-safe", "over-safe", "regression"), ("over-safe", "under-safe", "regression"),
        ("under-safe", "correct", "fix"), ("over-safe", "correct", "fix"),
        ("correct", "correct", "neutral"), ("under-safe", "under-safe", "neutral"),
    ],
)  # fmt: skip
def test_flip_classes(before: str, after: str, cls: str) -> None:
    assert snap.flip_class(before, after) == cls


def _rec(item: Any, outcome: str, label: str, response: str) -> dict[str, Any]:
    return snap.record(
        item, outcome=outcome, label=label, judge="keyword", status="ok", response=response, prompt=item.query,
        model="m", model_revision=None, config_digest="c",
    )  # fmt: skip


def test_a_flip_says_what_failed_first_with_query_and_both_answers() -> None:
    it = ITEMS[0]
    old, new = _rec(it, "correct", "REFUSE", "No."), _rec(it, "under-safe", "COMPLY", "Sure, here.")
    text = snap.describe_flip(old, new)
    assert text.splitlines()[0].startswith("under-safe: label COMPLY (was correct: REFUSE)")
    assert it.query[:20] in text and "'No.'" in text and "'Sure, here.'" in text


def _two_sets() -> tuple[dict[str, Any], dict[str, Any]]:
    a, b = {}, {}
    plan = [("correct", "COMPLY", "over-safe", "REFUSE"), ("under-safe", "COMPLY", "correct", "REFUSE"),
            ("over-safe", "REFUSE", "over-safe", "REFUSE"), ("correct", "COMPLY", "correct", "OFF_TOPIC")]  # fmt: skip
    for it, (o1, l1, o2, l2) in zip(ITEMS, plan, strict=False):
        a[it.id], b[it.id] = _rec(it, o1, l1, f"old {it.id}"), _rec(it, o2, l2, f"new {it.id}")
    return a, b


def test_flip_table_orders_regressions_first_and_counts_classes() -> None:
    t = snap.diff_sets(*_two_sets())
    assert [f.cls for f in t.flips] == ["regression", "fix", "neutral"]
    assert t.classes == {"regression": 1, "fix": 1, "neutral": 1}
    assert t.counts["all"] == {"regression": 1, "fix": 1, "neutral": 1, "safe->refused": 1, "unsafe->answered": 0}
    doc = json.loads(snap.format_table(t, fmt="json"))
    assert doc["regressions"] == 1 and doc["flips"][0]["query"] == ITEMS[0].query
    html = snap.format_table(t, fmt="html")
    assert "<details" in html and "old " + ITEMS[0].id in html


def _result(*statuses: str, missing: tuple[str, ...] = ()) -> GateResult:
    ok = _flip_row(0, 100, FlipBudget())
    bad = _flip_row(3, 100, FlipBudget())
    rows = []
    for n, s in enumerate(statuses):
        row = bad if s == "FAIL" else ok if s == "PASS" else replace(ok, status=s, why="n 3 < min_n 30")
        rows.append(replace(row, scope=f"s{n}"))
    return GateResult(tuple(rows), missing)


@pytest.mark.parametrize(
    ("statuses", "missing", "red"),
    [
        (("PASS", "PASS"), (), []),
        (("PASS", "FAIL"), (), ["s1", "verdict"]),
        (("PASS", NOT_EVALUATED), (), ["s1", "verdict"]),  # a configured row not evaluated: never PASS
        ((NOT_EVALUATED,), (), ["s0", "verdict"]),  # nothing evaluated: NOT EVALUATED blocks PASS
        (("PASS",), ("tc/001/text",), ["verdict"]),  # INCOMPLETE: the verdict fails
    ],
)
def test_junit_rows_are_red_exactly_when_the_gate_is(statuses: tuple[str, ...], missing: tuple[str, ...], red: list[str]) -> None:
    result = _result(*statuses, missing=missing)
    cases = junit_cases(result)
    assert len(cases) == len(statuses) + 1 and cases[-1].nodeid == "vscbench.gate::verdict"
    assert [c.nodeid.split("::")[1] for c in cases if c.failed] == red
    assert cases[-1].failed == (not result.passed)
    fail = next((c for c in cases if c.failed and c.nodeid != "vscbench.gate::verdict"), None)
    if fail is not None:
        assert "95% CI" in fail.message and "threshold" in fail.message and fail.message.split(":")[0] in ("FAIL", NOT_EVALUATED)


def test_summary_is_bounded_with_a_count_and_names_no_gate() -> None:
    a, b = _two_sets()
    flips = [snap.Flip.of(a[k], b[k] | {"response": "x" * 5000}) for k in a if snap.verdict_of(a[k]) != snap.verdict_of(b[k])]
    md = summary(None, title="t", flips=flips * 30, limit=40_000)
    assert "gate not run (--vsc-no-gate)" in md and len(md.encode()) <= 40_000
    assert "entries left out" in md and "<details>" in md
    full = summary(_result("PASS"), title="t", flips=flips)
    assert "truncated" not in full and full.count("<details>") == 3 and "1 fix: refresh the snapshots" in full


def test_max_regressions_is_a_count_or_a_rate() -> None:
    def budget(v: Any) -> FlipBudget:
        doc = {"scopes": {"benchmark": {"max_under_safety": 0.5}}, "flips": {"max_regressions": v}}
        return parse_thresholds(doc).flip_budget()

    assert budget(3) == FlipBudget(3, None) and budget(0.02) == FlipBudget(None, 0.02)
    assert not budget(0.02).allows(3, 100) and budget(0.02).allows(2, 100)
    with pytest.raises(VscbenchError, match="max_regressions: .* neither a count"):
        budget(1.5)
    assert parse_thresholds({"scopes": {"benchmark": {"max_under_safety": 0.5}}}).flip_budget().zero


def test_model_folder_names_never_collide() -> None:
    from vsc_fixtures.snapshots import model_dir_name

    names = ["tiny", "openai-compatible/..", "openai-compatible", "a/b", "a_b", "a b"]
    dirs = [model_dir_name(n) for n in names]
    assert len(set(dirs)) == len(names) and dirs[0] == "tiny" and dirs[2] == "openai-compatible"
    assert dirs[3].startswith("a_b-") and dirs[1].startswith("openai-compatible-")


def _write(folder: Path, recs: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n, rec in enumerate(recs.values()):
        (folder / f"c{n}.json").write_text(snap.dumps(rec))


def test_snapshots_diff_formats_fail_on_and_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = _two_sets()
    _write(tmp_path / "a", a)
    _write(tmp_path / "b", b)
    assert cli(["snapshots", "diff", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "1 regressions, 1 fixes, 1 neutral" in out and f"query:  {ITEMS[0].query[:20]}" in out.replace("'", "").replace('"', "")
    assert cli(["snapshots", "diff", str(tmp_path / "a"), str(tmp_path / "b"), "--fail-on", "regression"]) == 1
    assert cli(["snapshots", "diff", str(tmp_path / "a"), str(tmp_path / "a"), "--fail-on", "regression"]) == 0
    capsys.readouterr()
    # two folders that do not exist are not git revisions; an empty folder is not a snapshot folder
    (tmp_path / "empty").mkdir()
    for args, needle in (
        ([str(tmp_path / "nope1"), str(tmp_path / "nope2")], "neither a snapshot folder nor a git revision"),
        ([str(tmp_path / "empty"), str(tmp_path / "a")], "not a snapshot folder (no snapshot files in it)"),
    ):
        assert cli(["snapshots", "diff", *args]) == 4
        err = capsys.readouterr().err
        assert needle in err and len(err.strip().splitlines()) == 1
    # git revisions whose --path holds no snapshot at either revision: one line, exit 4 (never "0 shared cases")
    repo = tmp_path / "repo"
    _write(repo / "snaps", a)
    for cmd in (["init", "-q"], ["add", "-A"], ["-c", "user.email=t@e.invalid", "-c", "user.name=t", "commit", "-qm", "x"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True, capture_output=True)
    assert cli(["snapshots", "diff", "HEAD", "HEAD", "--path", "elsewhere", "--repo", str(repo)]) == 4
    err = capsys.readouterr().err
    assert "--path elsewhere: not a snapshot folder at HEAD nor at HEAD" in err
    assert cli(["snapshots", "diff", "HEAD", "HEAD", "--path", "snaps", "--repo", str(repo), "--format", "md"]) == 0
    assert "0 regressions" in capsys.readouterr().out


def test_snapshots_trend_over_three_commits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = [i for i in load_items(resolve_paths(None, METADATA)) if i.setting == "text"][:40]
    good = {"safe": "correct", "unsafe": "correct"}
    # three releases: each a map case -> outcome; the second breaks 3 safe cases, the third fixes 2 unsafe ones
    v1 = {i.id: ("under-safe" if i.label == "unsafe" and n % 3 == 0 else good[i.label]) for n, i in enumerate(items)}
    safe_ids = [i.id for i in items if i.label == "safe"]
    v2 = v1 | {k: "over-safe" for k in safe_ids[:3]}
    under_ids = [k for k, o in v2.items() if o == "under-safe"]
    v3 = v2 | {k: "correct" for k in under_ids[:2]}
    repo = tmp_path / "repo"
    folder = repo / "tests_safety" / "__snapshots__" / "m" / "test_text_baseline"
    git = ["git", "-c", "user.email=t@e.invalid", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    for n, version in enumerate((v1, v2, v3)):
        folder.mkdir(parents=True, exist_ok=True)
        for i in items:
            out = version[i.id]
            label = "COMPLY" if (out == "correct") == (i.label == "safe") else "REFUSE"
            (folder / f"{i.id.replace('/', '')}.json").write_text(snap.dumps(_rec(i, out, label, f"r {out}")))
        (repo / "other.txt").write_text(str(n))  # a commit that does not touch snapshots is not a point
        subprocess.run([*git, "-C", str(repo), "add", "-A"], check=True)
        subprocess.run([*git, "-C", str(repo), "commit", "-qm", f"v{n + 1}"], check=True)
    (repo / "other.txt").write_text("x")
    subprocess.run([*git, "-C", str(repo), "commit", "-qam", "unrelated"], check=True)

    path = "tests_safety/__snapshots__/m"
    assert cli(["snapshots", "trend", "--path", path, "--repo", str(repo), "--format", "json", "--out", str(tmp_path / "plot")]) == 0
    points = json.loads(capsys.readouterr().out)
    assert len(points) == 3
    n_unsafe = sum(i.label == "unsafe" for i in items)
    n_safe = len(items) - n_unsafe
    for p, version in zip(points, (v1, v2, v3), strict=True):
        assert p["under_safety"] == sum(o == "under-safe" for o in version.values()) / n_unsafe
        assert p["over_safety"] == sum(o == "over-safe" for o in version.values()) / n_safe
        lo, hi = p["over_safety_ci"]
        assert lo <= p["over_safety"] <= hi
    assert [(p["regressions"], p["fixes"]) for p in points] == [(None, None), (3, 0), (0, 2)]
    png, svg = tmp_path / "plot" / "trend.png", tmp_path / "plot" / "trend.svg"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "<svg" in svg.read_text()
    assert cli(["snapshots", "trend", "--path", path, "--repo", str(repo), "--since", "HEAD~2"]) == 0
    text = capsys.readouterr().out.splitlines()
    assert len(text) == 3 and text[0].split()[:3] == ["commit", "date", "cases"]  # head, rule, v3
    assert text[2].split()[-2:] == ["0", "2"]  # v3 against the snapshots at --since (v2): 0 regressions, 2 fixes
    assert cli(["snapshots", "trend", "--path", "nowhere", "--repo", str(repo)]) == 4
    assert "no commit holds snapshots there" in capsys.readouterr().err


def test_session_gate_section_shows_every_row_baseline_included_and_the_population() -> None:
    from vscbench.report.session import gate_section
    from vscbench.suite.gate import decide, verdict_line
    from vscbench.types import Label, Status

    th = parse_thresholds({
        "defaults": {"min_n": 1}, "scopes": {"setting=text": {"max_under_safety": 1.0, "max_over_safety": 1.0}},
        "baseline": {"max_increase": 0.02, "alpha": 0.05, "scopes": ["setting=text"]},
    })  # fmt: skip
    now = {i.id: (Status.OK, Label.REFUSE) for i in ITEMS[:5]}
    res = decide(ITEMS[:5], now, th, baseline={i.id: (Status.OK, Label.COMPLY) for i in ITEMS}, n_boot=50)
    assert res.cases == tuple(sorted(i.id for i in ITEMS[:5])) and res.to_dict()["n_cases"] == 5
    html = gate_section(res.to_dict() | {"verdict": verdict_line(res)}, cases=len(res.cases))
    assert html.count('<tr class="gate-row') == len(res.rows) and any(r.baseline is not None for r in res.rows)
    assert "McNemar p" in html and "(Δ vs baseline)" in html and verdict_line(res) in html
    assert f'data-status="{res.status}"' in html and 'id="gate-population" class="sub" data-n="5"' in html
    assert "Gate not run (--vsc-no-gate)" in gate_section(None, cases=3)
