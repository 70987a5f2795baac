"""`vscbench report` on stores built by hand: exact numbers, formats, judge choice, coverage, banner."""

from __future__ import annotations

import csv
import io
import json
import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from report_store import ERR, ITEMS, OUTCOMES, C, R, W, build_store, image_query, o
from vscbench.cli import main
from vscbench.metrics import Outcome
from vscbench.report.longform import COLUMNS
from vscbench.store import Store
from vscbench.types import Label


def run_b_outcomes() -> dict[str, Outcome]:
    """Run B: every item right except two safe image items (refused), one error."""
    out = {}
    for i in ITEMS:
        out[i.id] = o(R if i.label == "unsafe" else C)
    out["ic/drugs/000/safe/0"] = o(R)
    out["ic/violence/000/safe/2"] = o(W)
    out["tc/001/search"] = o(None, ERR)
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "store.sqlite"
    return build_store(path, {"run_a": OUTCOMES, "run_b": run_b_outcomes()})


def report(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    code = main(["report", *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def rows_of(doc: dict[str, Any], run: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(r["group"], r["metric"]): r for r in doc["rows"] if r["run"] == run}


def test_json_gives_the_hand_computed_numbers(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads(report(capsys, "--run", "run_a", "--format", "json", "--store", str(store)))
    rows = rows_of(doc, "run_a")
    assert doc["blocked_policy"] == "refuse" and doc["intervals"] is None
    assert doc["runs"][0]["judge"] == "local"
    u, s = rows[("half=image", "SRA_u")], rows[("half=image", "SRA_s")]
    assert (u["value"], u["n"], u["excluded"], u["excluded_unjudged"], u["blocked"]) == (0.8, 5, 1, 1, 1)
    assert (s["value"], s["n"], s["excluded"], s["excluded_error"], s["blocked"]) == (0.6, 5, 1, 1, 1)
    assert rows[("half=image", "helpful_s")]["value"] == 0.4
    assert rows[("half=image", "overall")]["value"] == pytest.approx(0.7)
    p = rows[("half=image", "pair_acc")]
    assert (p["value"], p["n"], p["excluded"]) == (0.5, 4, 2)
    cov = rows[("half=image", "coverage")]
    assert (cov["value"], cov["n"], cov["excluded"]) == (pytest.approx(10 / 12), 12, 2)
    assert (cov["excluded_error"], cov["excluded_unjudged"], cov["blocked"]) == (1, 1, 2)
    assert rows[("half=text", "SRA_s")]["value"] == pytest.approx(6 / 7)
    assert rows[("half=text", "consistency")]["value"] == 0.0
    assert rows[("category=religion", "SRA_u")]["value"] is None
    # run-level coverage counts every item, the text-only baseline included
    run_cov = rows[("run", "coverage")]
    assert (run_cov["n"], run_cov["excluded"], run_cov["excluded_missing"], run_cov["excluded_empty"]) == (27, 4, 1, 1)


def test_blocked_policy_is_visible_and_applied(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads(report(capsys, "--run", "run_a", "--format", "json", "--blocked", "exclude", "--store", str(store)))
    rows = rows_of(doc, "run_a")
    assert doc["blocked_policy"] == "exclude"
    assert rows[("half=image", "SRA_u")]["value"] == 0.75
    assert rows[("half=image", "coverage")]["excluded_blocked"] == 2
    assert {r["blocked_policy"] for r in doc["rows"]} == {"exclude"}
    md = report(capsys, "--run", "run_a", "--format", "md", "--blocked", "exclude", "--store", str(store))
    assert "excluded from the rates (--blocked exclude)" in md and "blocked responses (provider safety filter): 2" in md


def test_bootstrap_interval_is_reproducible(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--run", "run_a", "--run", "run_b", "--format", "json", "--ci", "--seed", "11", "--resamples", "300"]
    first = report(capsys, *args, "--store", str(store))
    again = report(capsys, *args, "--store", str(store))
    assert first == again
    doc = json.loads(first)
    r = rows_of(doc, "run_a")[("benchmark", "SRA_s")]
    assert r["ci_low"] is not None and r["ci_low"] <= r["value"] <= r["ci_high"]
    assert doc["intervals"] == {
        "method": "cluster bootstrap over queries (percentile)", "confidence": 0.95, "resamples": 300, "seed": 11
    }
    other = json.loads(report(capsys, *args[:-1], "12", "--store", str(store)))
    assert other["rows"] != doc["rows"]


def test_paired_comparison_in_json(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads(report(capsys, "--run", "run_a", "--run", "run_b", "--format", "json", "--store", str(store)))
    comp = {(c["group"], c["metric"]): c for c in doc["comparisons"]}
    u = comp[("half=image", "SRA_u")]
    # common unsafe image items scored in both: drugs 0,1,2 + violence 1,2 (violence 0 is UNJUDGED in A)
    # A right on 4 of 5 (drugs slot 2 COMPLY), B right on all 5
    assert (u["run_a"], u["run_b"], u["n"], u["a"], u["b"]) == ("run_a", "run_b", 5, 0.8, 1.0)
    assert (u["a_right_b_wrong"], u["b_right_a_wrong"], u["p_value"]) == (0, 1, 1.0)


def test_csv_long_format(store: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out = report(capsys, "--run", "run_a", "--run", "run_b", "--format", "csv", "--store", str(store))
    rows = list(csv.DictReader(io.StringIO(out)))
    assert tuple(rows[0].keys()) == COLUMNS
    doc = json.loads(report(capsys, "--run", "run_a", "--run", "run_b", "--format", "json", "--store", str(store)))
    assert len(rows) == len(doc["rows"])
    assert {r["run"] for r in rows} == {"run_a", "run_b"}
    one = next(r for r in rows if (r["run"], r["group"], r["metric"]) == ("run_a", "half=image", "SRA_u"))
    assert (float(one["value"]), one["n"], one["excluded"], one["ci_low"]) == (0.8, "5", "1", "")
    msg = report(capsys, "--run", "run_a", "--run", "run_b", "--format", "csv", "--out", str(tmp_path / "r.csv"),
                 "--store", str(store))
    assert (tmp_path / "r.csv").is_file() and (tmp_path / "r.comparisons.csv").is_file()
    assert "r.csv" in msg


def _md_tables(text: str) -> list[list[str]]:
    tables: list[list[str]] = []
    cur: list[str] = []
    for line in text.splitlines():
        if line.startswith("|"):
            cur.append(line)
        elif cur:
            tables.append(cur)
            cur = []
    if cur:
        tables.append(cur)
    return tables


def test_markdown_one_row_per_run(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    md = report(capsys, "--run", "run_a", "--run", "run_b", "--format", "md", "--store", str(store))
    tables = _md_tables(md)
    paper = [t for t in tables if t[0].startswith("| Run |")]
    assert len(paper) == 3  # summary, image half, text half
    for t in paper:
        body = t[2:]
        assert [c.split("|")[1].strip() for c in body] == ["run\\_a", "run\\_b"]
        assert all(line.count("|") == t[0].count("|") for line in t)
    assert "Drugs SRA\\_s" in md and "FigStep SRA\\_u" in md
    assert "Paired comparison" in md
    # every table says whether the text-only baseline is in it
    heads = [line for line in md.splitlines() if line.startswith("### ")]
    assert len(heads) == 4 and all("text-only baseline" in h for h in heads), heads
    assert "### Text-centric half (Avg: text-only baseline out; Text only: the baseline alone)" in heads
    # image half pooled SRA_u = 80.0 for run_a
    image = next(t for t in paper if "Drugs" in t[0])
    heads = [h.strip() for h in image[0].strip("|").split("|")]
    cells = [c.strip() for c in image[2].strip("|").split("|")]
    assert cells[heads.index("Avg (pooled) SRA\\_u")] == "80.0"
    assert cells[heads.index("Avg (slot mean) SRA\\_u")] == "83.3"
    assert cells[heads.index("Religion SRA\\_u")] == "–"
    with_ci = report(capsys, "--run", "run_a", "--format", "md", "--ci", "--resamples", "100", "--store", str(store))
    assert re.search(r"80\.0 \[\d+\.\d, \d+\.\d\]", with_ci)


def _tex_columns(spec: str) -> int:
    return len(re.findall(r"[lrc]", spec))


def _tex_row_span(row: str) -> int:
    cells = re.split(r"(?<!\\)&", row)
    span = 0
    for c in cells:
        m = re.search(r"\\multicolumn\{(\d+)\}", c)
        span += int(m.group(1)) if m else 1
    return span


def check_latex_fragment(tex: str) -> list[int]:
    """Compile-free syntax check; returns the number of body rows of each tabular."""
    tex = "\n".join(re.sub(r"(?<!\\)%.*$", "", line) for line in tex.splitlines())  # drop comments
    depth = 0
    for ch_i, ch in enumerate(tex):
        if ch in "{}" and (ch_i == 0 or tex[ch_i - 1] != "\\"):
            depth += 1 if ch == "{" else -1
            assert depth >= 0, "unbalanced }"
    assert depth == 0, "unbalanced {"
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}")
    bodies: list[int] = []
    for block in re.findall(r"\\begin\{tabular\}\{([^}]*)\}(.*?)\\end\{tabular\}", tex, flags=re.S):
        spec, inner = block
        ncol = _tex_columns(spec)
        rows = [r.strip() for r in inner.split("\\\\")]
        content = []
        for r in rows:
            lines = [ln for ln in r.splitlines() if ln.strip() and not ln.strip().startswith(("\\toprule", "\\midrule",
                                                                                                "\\bottomrule", "\\cmidrule"))]
            r2 = " ".join(lines).strip()
            if r2:
                content.append(r2)
        for r in content:
            assert _tex_row_span(r) == ncol, f"row spans {_tex_row_span(r)} of {ncol} columns: {r}"
            # outside math mode there is no bare underscore, percent or hash
            text = re.sub(r"\$[^$]*\$", "", r)
            assert not re.search(r"(?<!\\)[_%#]", text), r
        mid = inner.split("\\midrule", 1)[1]
        bodies.append(len([x for x in mid.split("\\\\") if x.strip() and "\\bottomrule" not in x.strip()[:11]]))
    return bodies


def test_latex_fragment_syntax(store: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for extra in ([], ["--ci", "--resamples", "50"]):
        tex = report(capsys, "--run", "run_a", "--run", "run_b", "--format", "latex", *extra, "--store", str(store))
        bodies = check_latex_fragment(tex)
        assert bodies == [2, 2, 2]
        body = "\n".join(ln for ln in tex.splitlines() if not ln.startswith("%"))
        assert "run\\_a" in body and "run_a" not in body.replace("run\\_a", "")
    # hostile names are escaped
    path = build_store(tmp_path / "s.sqlite", {"50%_a&b#1": OUTCOMES}, models={"50%_a&b#1": "m_{x}^$"})
    tex = report(capsys, "--run", "50%_a&b#1", "--format", "latex", "--store", str(path))
    assert check_latex_fragment(tex) == [1, 1, 1]
    assert r"50\%\_a\&b\#1" in tex and r"m\_\{x\}\textasciicircum{}\$" in tex


def test_latex_checker_catches_broken_rows() -> None:
    good = "\\begin{tabular}{lrr}\n\\toprule\nA & B & C \\\\\n\\midrule\nx & 1 & 2 \\\\\n\\bottomrule\n\\end{tabular}"
    assert check_latex_fragment(good) == [1]
    with pytest.raises(AssertionError):
        check_latex_fragment(good.replace("x & 1 & 2", "x & 1"))
    with pytest.raises(AssertionError):
        check_latex_fragment(good.replace("x & 1", "x_y & 1"))
    with pytest.raises(AssertionError):
        check_latex_fragment(good.replace("{lrr}", "{lrr"))


def test_table_format(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = report(capsys, "--run", "run_a", "--run", "run_b", "--store", str(store))
    assert "VSCBench summary" in out and "run_a" in out and "run_b" in out
    assert "Paired comparison" in out and "blocked responses" in out
    # coverage and n agree: the summary counts the benchmark items (as its rates do), like the group table's
    # "benchmark" row; the run's 3 text-only baseline items are counted in the notes' "all items" figure only
    assert "VSCBench summary (benchmark items; text-only baseline out)" in out
    assert "20/24 scored (missing 1, error 1, empty 1, unjudged 1)" in out
    bench = next(line for line in out.splitlines() if line.startswith("│ benchmark "))
    assert [c.strip() for c in bench.strip("│").split("│")][3] == "20"  # run_a's n
    assert "coverage run_a: 20 of 24 benchmark items scored (text-only baseline out); " in out
    assert "all items of the run: 23 of 27 (text-only baseline in)" in out


def test_judge_choice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = image_query("drugs", 0)
    outs = {i.id: o(R) for i in items}
    # no labels at all
    path = build_store(tmp_path / "none.sqlite", {"r": {i.id: Outcome(o(R).status) for i in items}}, items=items)
    assert main(["report", "--run", "r", "--store", str(path)]) == 2
    assert "vscbench judge --run r" in capsys.readouterr().err
    # two judges, neither local: must pick
    path = build_store(
        tmp_path / "two.sqlite", {"r": outs}, items=items, judge="keyword",
        extra_labels={"r": {"rubric:x": {i.id: Label.COMPLY for i in items}}},
    )
    assert main(["report", "--run", "r", "--store", str(path)]) == 2
    assert "pick one with --judge" in capsys.readouterr().err
    doc = json.loads(report(capsys, "--run", "r", "--judge", "rubric:x", "--format", "json", "--store", str(path)))
    assert rows_of(doc, "r")[("half=image", "SRA_u")]["value"] == 0.0
    assert doc["runs"][0]["judges"] == ["keyword", "rubric:x"]
    assert main(["report", "--run", "r", "--judge", "local", "--store", str(path)]) == 2
    assert "no labels from judge 'local'" in capsys.readouterr().err
    # local is preferred when stored
    path = build_store(
        tmp_path / "loc.sqlite", {"r": outs}, items=items,
        extra_labels={"r": {"keyword": {i.id: Label.COMPLY for i in items}}},
    )
    doc = json.loads(report(capsys, "--run", "r", "--format", "json", "--store", str(path)))
    assert doc["runs"][0]["judge"] == "local"
    assert rows_of(doc, "r")[("half=image", "SRA_u")]["value"] == 1.0


def test_user_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], store: Path) -> None:
    assert main(["report", "--run", "nope", "--store", str(store)]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
    assert main(["report", "--run", "x", "--store", str(tmp_path / "absent.sqlite")]) == 2
    assert "no store here" in capsys.readouterr().err
    assert main(["report", "--run", "run_a", "--run", "run_a", "--store", str(store)]) == 2
    assert "given twice" in capsys.readouterr().err
    assert main(["report", "--run", "run_a", "--ci", "--resamples", "0", "--store", str(store)]) == 2
    assert "--resamples must be at least 1" in capsys.readouterr().err
    assert main(["report", "--run", "run_a", "--seed", "-1", "--store", str(store)]) == 2
    assert "--seed must be a non-negative" in capsys.readouterr().err


def test_never_sent_items_are_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    items = image_query("discrimination", 16) + image_query("drugs", 0)
    outs = {i.id: (Outcome(sent=False) if "discrimination" in i.id else o(R)) for i in items}
    path = build_store(tmp_path / "s.sqlite", {"r": outs}, items=items)
    # the manifest also lists an excluded id that is not among the run's items
    with Store(path) as st:
        st.update_manifest("r", {"excluded_items": [*(i.id for i in items[:6]), "ic/discrimination/035/safe/0"]})
    doc = json.loads(report(capsys, "--run", "r", "--format", "json", "--store", str(path)))
    rows = rows_of(doc, "r")
    assert rows[("run", "coverage")]["excluded_not_sent"] == 7
    assert rows[("run", "coverage")]["n"] == 13
    assert rows[("category=discrimination", "coverage")]["excluded_not_sent"] == 6
    assert doc["runs"][0]["not_sent"] == 7
    md = report(capsys, "--run", "r", "--format", "md", "--store", str(path))
    assert "not sent 7" in md


def test_html_is_self_contained_and_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = tmp_path / "pic.png"
    Image.new("RGB", (640, 480), (200, 30, 30)).save(img)
    items = [i if i.id != "ic/drugs/000/unsafe/0" else type(i)(**{**i.__dict__, "image": str(img)}) for i in ITEMS]
    payload = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2"> & </script>'
    path = build_store(
        tmp_path / "s.sqlite", {"r": OUTCOMES}, items=items, texts={"ic/drugs/000/unsafe/0": payload},
        manifests={"r": {"banner": "random tiny model: numbers are meaningless"}},
        models={"r": "<b>evil</b>"},
    )
    out = tmp_path / "rep" / "report.html"
    assert "report.html" in report(capsys, "--run", "r", "--format", "html", "--out", str(out), "--store", str(path))
    html = out.read_text()
    assert "Content-Security-Policy" in html and "default-src 'none'" in html and "img-src data:" in html
    assert html.count("<script") == 2 and "window.__pwned=1</script>" not in html
    assert "\\u003cscript\\u003ewindow.__pwned=1" in html
    assert "&lt;b&gt;evil&lt;/b&gt;" in html and "<b>evil</b>" not in html
    assert "random tiny model: numbers are meaningless" in html
    assert "data:image/jpeg;base64," in html
    # nothing is fetched: no external URL other than the SVG namespace, no link/iframe elements
    urls = set(re.findall(r"https?://[^\s\"'<>]+", html))
    assert urls <= {"http://www.w3.org/2000/svg"}
    assert not re.search(r"<(link|iframe|object|embed|base)\b", html)
    assert "<svg" in html and "Calibration plane" in html
    # the embedded JSON is valid and round-trips the payload
    blob = re.search(r'<script type="application/json" id="vsc-data">(.*?)</script>', html, re.S)
    assert blob is not None
    data = json.loads(blob.group(1))
    assert any(it["resp"] == payload for it in data["items"])
    # a second rendering is byte-identical
    out2 = tmp_path / "rep" / "again.html"
    report(capsys, "--run", "r", "--format", "html", "--out", str(out2), "--store", str(path))
    assert out2.read_bytes() == out.read_bytes()


def test_banner_in_text_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = build_store(tmp_path / "s.sqlite", {"r": OUTCOMES}, manifests={"r": {"banner": "random tiny model"}})
    for fmt in ("table", "md"):
        assert "random tiny model" in report(capsys, "--run", "r", "--format", fmt, "--store", str(path))
    assert json.loads(report(capsys, "--run", "r", "--format", "json", "--store", str(path)))["runs"][0]["banner"]


def test_tradeoff_section_when_present(
    store: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = types.ModuleType("vscbench.report.tradeoff")
    calls: list[Any] = []

    def rows(st: Any, run_ids: list[str], judge_id: str, **kw: Any) -> list[dict[str, Any]]:
        calls.append((run_ids, judge_id))
        assert kw == {"seed": 0, "ci": False, "n_boot": 1000}  # the report's own interval settings
        return [{"run": "run_b", "d_sra_s": 0.1}]

    fake.tradeoff_rows = rows  # type: ignore[attr-defined]
    fake.tradeoff_table = lambda r: "TRADEOFF-TABLE " + str(len(r))  # type: ignore[attr-defined]
    fake.tradeoff_html = lambda r: "<section id='tradeoff'>TRADEOFF-HTML</section>"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vscbench.report.tradeoff", fake)
    import vscbench.report as rp

    monkeypatch.setattr(rp, "tradeoff", fake, raising=False)
    md = report(capsys, "--run", "run_a", "--run", "run_b", "--format", "md", "--store", str(store))
    assert "TRADEOFF-TABLE 1" in md
    assert calls[-1] == (["run_a", "run_b"], "local")
    html = report(capsys, "--run", "run_a", "--run", "run_b", "--format", "html", "--store", str(store))
    assert "TRADEOFF-HTML" in html
    doc = json.loads(report(capsys, "--run", "run_a", "--run", "run_b", "--format", "json", "--store", str(store)))
    assert doc["tradeoff"] == [{"run": "run_b", "d_sra_s": 0.1}]


def test_plot_writes_figures(store: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    for fmt in ("png", "svg"):
        capsys.readouterr()
        code = main(["plot", "--run", "run_a", "--run", "run_b", "--out", str(tmp_path / fmt), "--format", fmt,
                     "--ci", "--resamples", "50", "--store", str(store)])
        assert code == 0
        names = sorted(p.name for p in (tmp_path / fmt).iterdir())
        assert names == [f"calibration_plane.{fmt}", f"sra_by_category.{fmt}", f"sra_by_setting.{fmt}"]
    with Image.open(tmp_path / "png" / "calibration_plane.png") as im:
        assert im.size[0] > 300
    assert (tmp_path / "svg" / "calibration_plane.svg").read_text().lstrip().startswith("<?xml")


def test_html_leaderboard_scored_is_the_rates_population(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    html = report(capsys, "--run", "run_a", "--format", "html", "--store", str(store))
    board = html[html.index('id="leaderboard"') : html.index("</table>", html.index('id="leaderboard"'))]
    assert ">20/24</td>" in board and ">23/27</td>" not in board  # benchmark items, as the rates
    assert "Benchmark items; text-only baseline out" in html
    assert "Text half: SRA_s by setting (%; Text only = the baseline)" in html
