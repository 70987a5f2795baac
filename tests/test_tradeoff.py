"""The trade-off report on a store built by hand: deltas for two calibrations of one model, hand-computed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vscbench.report.tradeoff import calibration_specs, tradeoff_html, tradeoff_rows, tradeoff_table
from vscbench.store import Store
from vscbench.types import Item, Label, Response, Status

MODEL = "openai-compatible/m"
C, R, W = Label.COMPLY, Label.REFUSE, Label.WARN


def _item(name: str) -> Item:
    return Item(
        id=f"t/{name}",
        half="text",
        label="safe" if name.startswith("s") else "unsafe",
        setting="typography",
        query=f"query {name}",
        image=None,
        pair=(),
        row=1,
        query_id=f"t/{name}",
        xstest_type="homonyms",
    )


ITEMS = [_item(n) for n in ("s1", "s2", "s3", "s4", "u1", "u2", "u3", "u4")]


def _eval_run(
    st: Store, run_id: str, specs: list[str], labels: dict[str, Label | None], model: str = MODEL
) -> None:
    st.create_run(run_id, kind="generation", model=model, manifest={"calibration_specs": specs}, items=ITEMS)
    for name, lab in labels.items():
        iid = f"t/{name}"
        if lab is None:
            st.add_response(run_id, Response(item_id=iid, status=Status.ERROR, error="boom"))
        else:
            st.add_response(run_id, Response(item_id=iid, status=Status.OK, text="answer"))
            st.put_labels(run_id, "j", [(iid, lab, {})])


def _utility_run(
    st: Store, run_id: str, specs: list[str], right: set[int], excluded: set[int] = frozenset()
) -> None:  # type: ignore[assignment]
    scored = [i for i in range(1, 11) if i not in excluded]
    acc = sum(i in right for i in scored) / len(scored)
    st.create_run(
        run_id,
        kind="utility",
        model=MODEL,
        manifest={"calibration_specs": specs, "utility": {"accuracy": acc, "ci": [acc - 0.1, acc + 0.1]}},
        items=[],
    )
    rows = [
        {
            "id": f"e{i}",
            "correct": None if i in excluded else (i in right),
            "reason": "error" if i in excluded else None,
        }
        for i in range(1, 11)
    ]
    st.put_artifact(run_id, "utility/scores.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tradeoff") / "s.sqlite"
    with Store(path) as st:
        # an older uncalibrated run: superseded by the later one
        _eval_run(st, "base-old", [], {n: R for n in ("s1", "s2", "s3", "s4", "u1", "u2", "u3", "u4")})
        # base: SRA_s = 2/4, SRA_u = 1/4
        _eval_run(st, "base", [], {"s1": C, "s2": C, "s3": R, "s4": R, "u1": R, "u2": C, "u3": C, "u4": C})
        # reminder: SRA_s = 1/4 (-0.25), SRA_u = 4/4 (+0.75)
        _eval_run(
            st, "rem", ["reminder"], {"s1": C, "s2": R, "s3": R, "s4": R, "u1": R, "u2": R, "u3": W, "u4": R}
        )
        # fewshot: s4 errored -> safe items compared on s1..s3: base 2/3, fewshot 3/3 (+1/3); SRA_u 1/4 -> 2/4
        _eval_run(
            st,
            "fs",
            ["fewshot:k=2"],
            {"s1": C, "s2": C, "s3": C, "s4": None, "u1": R, "u2": W, "u3": C, "u4": C},
        )
        _utility_run(st, "u-base", [], set(range(1, 9)))  # 8/10
        _utility_run(st, "u-rem", ["reminder"], set(range(1, 7)))  # 6/10 -> -0.2
        _utility_run(st, "u-fs", ["fewshot:k=2"], set(range(1, 10)), excluded={10})  # on e1..e9: 8/9 -> 9/9
        # another model with a calibrated run only
        _eval_run(st, "lonely", ["reminder"], {"s1": C}, model="other/<b>m2</b>")
    return path


def test_rows_hold_the_hand_computed_deltas(store: Path) -> None:
    with Store(store) as st:
        rows = tradeoff_rows(st, [], "j")
    by = {(r["model"], r["calibration"]): r for r in rows}
    assert list(by) == [
        (MODEL, "none"),
        (MODEL, "fewshot:k=2"),
        (MODEL, "reminder"),
        ("other/<b>m2</b>", "reminder"),
    ]
    base = by[(MODEL, "none")]
    assert base["is_baseline"] and base["eval_run"] == "base" and base["baseline_eval_run"] == "base"
    assert base["d_SRA_s"] == 0 and base["d_SRA_u"] == 0 and base["d_utility"] == 0
    assert base["SRA_s"] == pytest.approx(0.5) and base["utility"] == pytest.approx(0.8)

    rem = by[(MODEL, "reminder")]
    assert (rem["eval_run"], rem["utility_run"], rem["baseline_utility_run"]) == ("rem", "u-rem", "u-base")
    assert rem["SRA_s"] == pytest.approx(0.25) and rem["SRA_u"] == pytest.approx(1.0)
    assert rem["d_SRA_s"] == pytest.approx(-0.25)
    assert rem["d_SRA_u"] == pytest.approx(0.75)
    assert rem["d_calibration"] == pytest.approx(0.25)
    assert rem["d_utility"] == pytest.approx(-0.2) and rem["n_utility"] == 10
    lo, hi = rem["d_utility_ci"]
    assert lo <= -0.2 <= hi
    assert rem["note"] == ""

    fs = by[(MODEL, "fewshot:k=2")]
    assert fs["d_SRA_s"] == pytest.approx(1 / 3)
    assert fs["d_SRA_u"] == pytest.approx(0.25)
    assert fs["d_calibration"] == pytest.approx((1 / 3 + 0.25) / 2)
    assert fs["d_utility"] == pytest.approx(1 / 9) and fs["n_utility"] == 9

    lonely = by[("other/<b>m2</b>", "reminder")]
    assert lonely["d_SRA_s"] is None and "no uncalibrated evaluation run" in lonely["note"]

    # a judge without labels gives no values, and says so
    with Store(store) as st:
        rows = tradeoff_rows(st, ["base", "rem"], "other-judge")
    (rem2,) = [r for r in rows if r["calibration"] == "reminder"]
    assert rem2["d_SRA_s"] is None and "other-judge" in rem2["note"]


def test_selection_and_determinism(store: Path) -> None:
    with Store(store) as st:
        rows = tradeoff_rows(st, ["base", "rem", "u-base", "u-rem"], "j")
        again = tradeoff_rows(st, ["base", "rem", "u-base", "u-rem"], "j")
    assert rows == again
    assert [r["calibration"] for r in rows] == ["none", "reminder"]


def test_markdown_table(store: Path) -> None:
    with Store(store) as st:
        md = tradeoff_table(tradeoff_rows(st, [], "j"))
    lines = md.strip().splitlines()
    assert lines[0].startswith("| model | calibration | SRA_s | Δ SRA_s")
    assert len(lines) == 2 + 4
    rem = next(line for line in lines if "| reminder |" in line and MODEL in line)
    cells = [c.strip() for c in rem.strip("|").split("|")]
    # rates in %, deltas in percentage points with intervals
    assert cells[2] == "25.0" and cells[3].startswith("-25.0 [") and cells[5].startswith("+75.0 [")
    assert cells[6].startswith("+25.0 [") and cells[7] == "60.0" and cells[8].startswith("-20.0 [")


def test_html_plot_has_one_point_per_method_and_escapes(store: Path) -> None:
    with Store(store) as st:
        rows = tradeoff_rows(st, [], "j")
    out = tradeoff_html(rows)
    assert out.startswith('<figure class="tradeoff"><svg') and out.endswith("</figure>")
    assert out.count('class="point"') == 2  # reminder and fewshot; the baseline is the origin marker
    assert "uncalibrated (origin)" in out and "<b>" not in out
    # the reminder point sits left of the origin (utility fell) and above it (calibration rose)
    circles = re.findall(r'<circle (?:class="point" )?cx="([\d.]+)" cy="([\d.]+)"', out)
    (ox, oy), *points = [(float(x), float(y)) for x, y in circles]
    title = re.findall(r"<title>([^<]*)</title>", out)
    rem_idx = next(i for i, t in enumerate(title[1:]) if "reminder" in t)
    rx, ry = points[rem_idx]
    assert rx < ox and ry < oy  # SVG y grows downwards
    evil = [dict(rows[2], calibration="<script>alert(1)</script>", model='m"><img src=x onerror=alert(1)>')]
    bad = tradeoff_html(evil)
    assert "<script" not in bad and "<img" not in bad and "&lt;script&gt;" in bad
    assert "No calibrated run" in tradeoff_html([rows[0]])


def test_calibration_specs_reads_either_manifest_shape() -> None:
    assert calibration_specs({"calibration_specs": ["a", "b:k=1"]}) == ("a", "b:k=1")
    assert calibration_specs({"calibrations": [{"spec": "a", "manifest": {}}]}) == ("a",)
    assert calibration_specs({}) == ()


def test_markdown_marks_the_baseline_and_neutralises_html(store: Path) -> None:
    with Store(store) as st:
        md = tradeoff_table(tradeoff_rows(st, [], "j"))
    base = next(line for line in md.splitlines() if "| none |" in line)
    cells = [c.strip() for c in base.strip("|").split("|")]
    assert [cells[k] for k in (3, 5, 6, 8)] == ["baseline"] * 4
    assert "<b>" not in md and "&lt;b&gt;m2&lt;/b&gt;" in md


def test_missing_runs_are_found_in_the_store(store: Path) -> None:
    """Naming only the calibrated run finds the baseline and the utility runs of the same model."""
    with Store(store) as st:
        rows = tradeoff_rows(st, ["rem"], "j")
        assert tradeoff_rows(st, ["base", "u-base"], "j") == []  # nothing calibrated: no trade-off
    assert [r["calibration"] for r in rows] == ["none", "reminder"]
    rem = rows[1]
    assert (rem["baseline_eval_run"], rem["utility_run"], rem["baseline_utility_run"]) == (
        "base",
        "u-rem",
        "u-base",
    )
    assert rem["d_SRA_u"] == pytest.approx(0.75) and rem["d_utility"] == pytest.approx(-0.2)


def test_report_command_shows_the_deltas(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Acceptance: ``vscbench report`` on two calibrations of one model shows the trade-off rows."""
    from vscbench.cli import main

    argv = ["report", "--store", str(store), "--run", "base", "--run", "rem", "--run", "fs", "--judge", "j"]
    assert main([*argv, "--format", "md", "--ci", "--resamples", "200"]) == 0
    md = capsys.readouterr().out
    assert "| model | calibration | SRA_s | Δ SRA_s" in md
    rem = next(line for line in md.splitlines() if line.startswith(f"| {MODEL} | reminder |"))
    assert "+75.0 [" in rem and "-20.0 [" in rem
    assert main([*argv, "--format", "html", "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    fig = page[page.index('<figure class="tradeoff">') :]
    assert fig[: fig.index("</figure>")].count('class="point"') == 2


def test_report_accepts_utility_runs_beside_evaluation_runs(
    store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A utility run named with --run feeds the trade-off only; it is not a leaderboard row."""
    from vscbench.cli import main

    argv = ["report", "--store", str(store), "--run", "base", "--run", "rem", "--run", "u-rem", "--judge", "j"]
    assert main([*argv, "--format", "md"]) == 0
    md = capsys.readouterr().out
    assert "u-rem" not in md.split("| model | calibration |")[0]
    assert main(["report", "--store", str(store), "--run", "u-rem", "--judge", "j"]) == 2
    assert "utility run" in capsys.readouterr().err


def test_intervals_only_with_ci(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """QA 20: a report without --ci says 'no intervals' and its trade-off table shows none either."""
    from vscbench.cli import main

    argv = ["report", "--store", str(store), "--run", "base", "--run", "rem", "--judge", "j", "--format", "md"]
    assert main(argv) == 0
    md = capsys.readouterr().out
    rem = next(line for line in md.splitlines() if line.startswith(f"| {MODEL} | reminder |"))
    assert "[" not in rem and "+75.0" in rem and "-20.0" in rem
    assert "no intervals (add --ci)" in md
    with Store(store) as st:
        (row,) = [r for r in tradeoff_rows(st, ["base", "rem"], "j", ci=False) if r["calibration"] == "reminder"]
    assert row["d_SRA_u_ci"] == [None, None] and row["d_utility_ci"] == [None, None]
    assert row["d_SRA_u"] == pytest.approx(0.75)


def test_the_chosen_run_is_named_when_several_match(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """QA 20: two utility runs of one calibration: the latest is used and the table's note names it."""
    import shutil

    from vscbench.cli import main

    path = tmp_path / "s.sqlite"
    shutil.copy(store, path)
    with Store(path) as st:
        _utility_run(st, "u-rem2", ["reminder"], set(range(1, 10)))  # 9/10, created last
        rows = tradeoff_rows(st, ["rem"], "j")
    base, rem = rows
    assert rem["utility_run"] == "u-rem2" and rem["d_utility"] == pytest.approx(0.1)
    assert "utility run 'u-rem2' chosen, the latest of 2 (also: u-rem)" in rem["note"]
    assert "baseline evaluation run 'base' chosen, the latest of 2 (also: base-old)" in base["note"]
    assert main(["report", "--store", str(path), "--run", "rem", "--judge", "j", "--format", "md"]) == 0
    assert "utility run 'u-rem2' chosen" in capsys.readouterr().out
