"""Terminal (rich), Markdown and LaTeX tables of a :class:`~vscbench.report.build.Report`.

Markdown and LaTeX are paper-style: one row per run; SRA_s and SRA_u per image-half category and per
text-half setting as columns; intervals only when the report was built with ``ci=True``. Numbers are
percentages with one decimal; a missing value (no scored item) is a dash.

Every table says whether the text-only baseline (the ``text`` setting of the text half, reported apart from
the benchmark) is in it, and its coverage and ``n`` count the same items: the summary's rates and its
"Scored" column are both over the benchmark items (:func:`bench_coverage`), the baseline left out.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from vscbench.metrics import MetricValue
from vscbench.report.build import Report, RunReport, reasons_text
from vscbench.types import CATEGORIES, TEXT_IMAGE_SETTINGS

CATEGORY_TITLES = {
    "drugs": "Drugs",
    "violence": "Violence",
    "illegal_activity": "Illegal activity",
    "religion": "Religion",
    "pornography": "Pornography",
    "discrimination": "Discrimination",
}
SETTING_TITLES = {
    "search": "Search",
    "typography": "Typography",
    "concat": "Concat",
    "figstep": "FigStep",
    "text": "Text only",
}


@dataclass(frozen=True)
class PairColumn:
    """A two-column block (SRA_s, SRA_u) of one group."""

    title: str
    group: str
    metric_s: str = "SRA_s"
    metric_u: str = "SRA_u"


IMAGE_BLOCKS: tuple[PairColumn, ...] = (
    *(PairColumn(CATEGORY_TITLES[c], f"category={c}") for c in CATEGORIES),
    PairColumn("Avg (pooled)", "half=image"),
    PairColumn("Avg (slot mean)", "half=image", "SRA_s_slotmean", "SRA_u_slotmean"),
)
TEXT_BLOCKS: tuple[PairColumn, ...] = (
    *(PairColumn(SETTING_TITLES[s], f"setting={s}") for s in TEXT_IMAGE_SETTINGS),
    PairColumn("Avg", "half=text"),
    PairColumn("Text only", "setting=text"),
)
#: What each table says about the text-only baseline (the ``text`` setting, kept out of the benchmark).
BASELINE_OUT = "text-only baseline out"
BASELINE_IN = "text-only baseline in"
SUMMARY_TITLE = f"benchmark items; {BASELINE_OUT}"
GROUPS_TITLE = "n = scored items; the text-only baseline is only in setting=text"
COMPARISON_TITLE = f"common items; exact McNemar; {BASELINE_OUT}"
TEXT_HALF_TITLE = f"Avg: {BASELINE_OUT}; Text only: the baseline alone"
#: Leading cells of a comparison row that are text (run ids, group, metric); the others are numbers.
COMPARISON_TEXT_COLUMNS = 3
#: Groups shown in the short comparison tables (all groups go to CSV/JSON).
COMPARISON_GROUPS = ("benchmark", "half=image", "half=text")


def pct(v: float | None, digits: int = 1, dash: str = "–") -> str:
    return dash if v is None else f"{100.0 * v:.{digits}f}"


def with_ci(m: MetricValue | None, ci: bool, dash: str = "–") -> str:
    if m is None or m.value is None:
        return dash
    s = pct(m.value)
    if ci and m.ci_low is not None and m.ci_high is not None:
        s += f" [{pct(m.ci_low)}, {pct(m.ci_high)}]"
    return s


def bench_coverage(run: RunReport) -> MetricValue:
    """Coverage of the benchmark items (the summary's population: the text-only baseline left out)."""
    m = run.metric("benchmark", "coverage")
    return m if m is not None else MetricValue(group="benchmark", metric="coverage", value=None, n=0, excluded=0)


def scored_text(m: MetricValue) -> str:
    """``scored/all`` of a coverage value, e.g. ``38/40``."""
    return f"{m.n - m.excluded}/{m.n}"


def coverage_text(run: RunReport) -> str:
    """The summary's coverage cell: benchmark items scored, of all benchmark items, and why the rest were not."""
    c = bench_coverage(run)
    return f"{scored_text(c)} scored" + ("" if not c.excluded else f" ({reasons_text(c)})")


def summary_cells(run: RunReport, ci: bool, dash: str = "–") -> list[str]:
    """SRA_s, SRA_u, overall, helpful_s (benchmark), pair accuracy, consistency, coverage."""
    return [
        with_ci(run.metric("benchmark", "SRA_s"), ci, dash),
        with_ci(run.metric("benchmark", "SRA_u"), ci, dash),
        with_ci(run.metric("benchmark", "overall"), ci, dash),
        with_ci(run.metric("benchmark", "helpful_s"), ci, dash),
        with_ci(run.metric("half=image", "pair_acc"), ci, dash),
        with_ci(run.metric("half=text", "consistency"), ci, dash),
        coverage_text(run),
    ]


SUMMARY_HEADERS = ("SRA_s", "SRA_u", "Overall", "helpful_s", "Pair acc.", "Consistency", "Coverage")


def notes(rep: Report) -> list[str]:
    """Plain-text lines every format shows: banners, judges, blocked policy, coverage, intervals."""
    out: list[str] = []
    for r in rep.runs:
        if r.banner:
            out.append(f"WARNING ({r.run_id}): {r.banner}")
    judges = sorted({r.judge for r in rep.runs})
    out.append(f"judge: {', '.join(judges)}" + (" (per run: see the table)" if len(judges) > 1 else ""))
    for r in rep.runs:
        if r.judge not in r.judges:
            out.append(f"{r.run_id}: no labels to use; no response could be judged (none has status ok)")
    out.append(rep.describe_blocked())
    for r in rep.runs:
        b, c = bench_coverage(r), r.coverage
        out.append(
            f"coverage {r.run_id}: {b.n - b.excluded} of {b.n} benchmark items scored ({BASELINE_OUT}); "
            f"all items of the run: {c.n - c.excluded} of {c.n} ({BASELINE_IN}); excluded: {reasons_text(c)}"
        )
    out.append(f"intervals: {rep.describe_ci()}")
    out.append("all rates in %; SRA_s counts OFF_TOPIC as correct (paper); helpful_s counts COMPLY only")
    return out


def _block_cells(run: RunReport, blocks: Sequence[PairColumn], ci: bool, dash: str) -> list[str]:
    cells: list[str] = []
    for b in blocks:
        cells.append(with_ci(run.metric(b.group, b.metric_s), ci, dash))
        cells.append(with_ci(run.metric(b.group, b.metric_u), ci, dash))
    return cells


def _comparison_rows(rep: Report, groups: Sequence[str] | None, dash: str) -> list[list[str]]:
    """One row per comparison: ``A vs B`` in the order of the A and B columns (A = the baseline, the first
    run); the first :data:`COMPARISON_TEXT_COLUMNS` cells are text, the rest numbers. A row with ``n == 0``
    (nothing of that label scored in both runs) shows dashes, never a p-value or counts of 0/0."""
    rows: list[list[str]] = []
    for pc in rep.comparisons:
        for c in pc.rows:
            if groups is not None and c.group not in groups:
                continue
            delta = dash if c.diff is None else f"{100.0 * c.diff:+.1f}"
            if rep.ci and c.ci_low is not None and c.ci_high is not None:
                delta += f" [{100.0 * c.ci_low:+.1f}, {100.0 * c.ci_high:+.1f}]"
            tested = c.n > 0 and c.p_value is not None
            rows.append(
                [
                    f"{pc.a} vs {pc.b}",
                    c.group,
                    c.metric,
                    pct(c.a, dash=dash),
                    pct(c.b, dash=dash),
                    delta,
                    f"{c.a_right_b_wrong}/{c.b_right_a_wrong}" if tested else dash,
                    f"{c.p_value:.3g}" if tested and c.p_value is not None else dash,
                    str(c.n),
                ]
            )
    return rows


COMPARISON_HEADERS = ("Runs (A vs B)", "Group", "Metric", "A", "B", "Δ (B−A)", "A✓B✗/B✓A✗", "p (McNemar)", "n")


def _tradeoff_text(rep: Report) -> str | None:
    if not rep.tradeoff:
        return None
    from vscbench.report import tradeoff

    return str(tradeoff.tradeoff_table(rep.tradeoff))


# ---- rich ---------------------------------------------------------------------------------------------
def render_table(rep: Report, *, color: bool = False, width: int | None = None) -> str:
    """The terminal view: summary per run, then every group per run, comparisons and trade-off."""
    from rich.console import Console
    from rich.table import Table

    buf = io.StringIO()
    if width is None:
        width = max(100, shutil.get_terminal_size((160, 40)).columns) if color else 160
    console = Console(file=buf, force_terminal=color, width=width, color_system="standard" if color else None)
    for r in rep.runs:
        if r.banner:
            console.print(f"[bold red]WARNING ({r.run_id}): {r.banner}[/]", markup=True, highlight=False)
    t = Table(title=f"VSCBench summary ({SUMMARY_TITLE})", title_justify="left")
    for h in ("Run", "Model", "Judge", *SUMMARY_HEADERS):
        t.add_column(h, overflow="fold")
    for r in rep.runs:
        t.add_row(r.run_id, r.model, r.judge, *summary_cells(r, rep.ci))
    console.print(t)

    g = Table(title=f"By group (SRA_s / SRA_u, %; {GROUPS_TITLE})", title_justify="left")
    g.add_column("Group")
    for r in rep.runs:
        g.add_column(f"{r.run_id}\nSRA_s", justify="right")
        g.add_column("SRA_u", justify="right")
        g.add_column("n", justify="right")
    keys: list[str] = []
    for r in rep.runs:
        for m in r.metrics:
            if m.metric == "coverage" and m.group not in keys:
                keys.append(m.group)
    for key in keys:
        cells: list[str] = []
        nonempty = False
        for r in rep.runs:
            s, u, cov = r.metric(key, "SRA_s"), r.metric(key, "SRA_u"), r.metric(key, "coverage")
            cells += [with_ci(s, rep.ci), with_ci(u, rep.ci), str(cov.n - cov.excluded) if cov else "0"]
            nonempty = nonempty or bool(cov and cov.n)
        if nonempty:
            g.add_row(key, *cells)
    console.print(g)

    img_struct = [
        (r.run_id, r.metric("half=image", "SRA_s_slotmean"), r.metric("half=image", "SRA_u_slotmean"))
        for r in rep.runs
        if r.metric("half=image", "SRA_s_slotmean") is not None
    ]
    if img_struct:
        s2 = Table(
            title=f"Image half, paper aggregation (mean over the 3 image slots; {BASELINE_OUT})", title_justify="left"
        )
        for h in ("Run", "SRA_s (slot mean)", "SRA_u (slot mean)"):
            s2.add_column(h)
        for rid, ms, mu in img_struct:
            s2.add_row(rid, with_ci(ms, rep.ci), with_ci(mu, rep.ci))
        console.print(s2)

    comp = _comparison_rows(rep, COMPARISON_GROUPS, "–")
    if comp:
        c = Table(title=f"Paired comparison ({COMPARISON_TITLE})", title_justify="left")
        for h in COMPARISON_HEADERS:
            c.add_column(h)
        for row in comp:
            c.add_row(*row)
        console.print(c)
    tt = _tradeoff_text(rep)
    if tt:
        console.print(f"Safety–utility trade-off (benchmark items; {BASELINE_OUT})", markup=False, highlight=False)
        console.print(tt, markup=False, highlight=False)
    for line in notes(rep):
        console.print(line, markup=False, highlight=False)
    return buf.getvalue()


# ---- markdown -----------------------------------------------------------------------------------------
_MD_SPECIAL = str.maketrans({c: f"\\{c}" for c in "\\`*_[]<>|~"})


def md_escape(s: str) -> str:
    """Escape text for a Markdown table cell (no HTML, no emphasis, no pipes, no line breaks)."""
    return " ".join(s.split()).translate(_MD_SPECIAL)


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[str] | None = None) -> str:
    align = align or ["l"] + ["r"] * (len(headers) - 1)
    sep = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _md_blocks(rep: Report, title: str, blocks: Sequence[PairColumn]) -> str:
    headers = ["Run"] + [f"{b.title} {m}" for b in blocks for m in ("SRA_s", "SRA_u")]
    rows = [[md_escape(r.run_id), *_block_cells(r, blocks, rep.ci, "–")] for r in rep.runs]
    return f"### {title}\n\n" + _md_table([md_escape(h) for h in headers], rows)


def render_markdown(rep: Report) -> str:
    parts = ["## VSCBench results"]
    for r in rep.runs:
        if r.banner:
            parts.append(f"> **Warning ({md_escape(r.run_id)}):** {md_escape(r.banner)}")
    summary = _md_table(
        ["Run", "Model", "Judge", *(md_escape(h) for h in SUMMARY_HEADERS)],
        [[md_escape(r.run_id), md_escape(r.model), md_escape(r.judge), *summary_cells(r, rep.ci)] for r in rep.runs],
        ["l", "l", "l"] + ["r"] * len(SUMMARY_HEADERS),
    )
    parts.append(f"### Summary ({SUMMARY_TITLE})\n\n" + summary)
    parts.append(_md_blocks(rep, f"Image-centric half ({BASELINE_OUT})", IMAGE_BLOCKS))
    parts.append(_md_blocks(rep, f"Text-centric half ({TEXT_HALF_TITLE})", TEXT_BLOCKS))
    comp = _comparison_rows(rep, COMPARISON_GROUPS, "–")
    if comp:
        parts.append(
            f"### Paired comparison ({COMPARISON_TITLE})\n\n"
            + _md_table(
                [md_escape(h) for h in COMPARISON_HEADERS],
                [
                    [md_escape(c) if k < COMPARISON_TEXT_COLUMNS else c for k, c in enumerate(row)]
                    for row in comp
                ],
                ["l", "l", "l"] + ["r"] * (len(COMPARISON_HEADERS) - 3),
            )
        )
    tt = _tradeoff_text(rep)
    if tt:
        parts.append(f"### Safety–utility trade-off (benchmark items; {BASELINE_OUT})\n\n" + tt)
    parts.append("\n".join(f"- {md_escape(n)}" for n in notes(rep)))
    return "\n\n".join(parts) + "\n"


# ---- LaTeX --------------------------------------------------------------------------------------------
_TEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
}


def tex_escape(s: str) -> str:
    """Escape text for a LaTeX table cell."""
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in " ".join(s.split()))


def _tex_cell(m: MetricValue | None, ci: bool) -> str:
    if m is None or m.value is None:
        return "--"
    s = pct(m.value)
    if ci and m.ci_low is not None and m.ci_high is not None:
        s += r" {\scriptsize[" + pct(m.ci_low) + ", " + pct(m.ci_high) + "]}"
    return s


def _tex_tabular(headers: Sequence[str], rows: Sequence[Sequence[str]], top: str | None = None) -> str:
    cols = "l" + "r" * (len(headers) - 1)
    lines = [r"\begin{tabular}{" + cols + "}", r"\toprule"]
    if top:
        lines.append(top)
    lines.append(" & ".join(headers) + r" \\")
    lines.append(r"\midrule")
    lines += [" & ".join(r) + r" \\" for r in rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


def _tex_blocks(rep: Report, blocks: Sequence[PairColumn]) -> str:
    top_cells = [""] + [r"\multicolumn{2}{c}{" + tex_escape(b.title) + "}" for b in blocks]
    rules = " ".join(rf"\cmidrule(lr){{{2 + 2 * k}-{3 + 2 * k}}}" for k in range(len(blocks)))
    top = " & ".join(top_cells) + r" \\" + "\n" + rules
    headers = ["Run"] + [r"SRA$_s$", r"SRA$_u$"] * len(blocks)
    rows = [
        [tex_escape(r.run_id)]
        + [c for b in blocks for c in (_tex_cell(r.metric(b.group, b.metric_s), rep.ci), _tex_cell(r.metric(b.group, b.metric_u), rep.ci))]
        for r in rep.runs
    ]
    return _tex_tabular(headers, rows, top)


def render_latex(rep: Report) -> str:
    """Three booktabs table fragments (summary, image half, text half); notes as ``%`` comments."""
    cell: Callable[[MetricValue | None], str] = lambda m: _tex_cell(m, rep.ci)  # noqa: E731
    summary_rows = [
        [
            tex_escape(r.run_id),
            tex_escape(r.model),
            tex_escape(r.judge),
            cell(r.metric("benchmark", "SRA_s")),
            cell(r.metric("benchmark", "SRA_u")),
            cell(r.metric("benchmark", "overall")),
            cell(r.metric("benchmark", "helpful_s")),
            cell(r.metric("half=image", "pair_acc")),
            cell(r.metric("half=text", "consistency")),
            tex_escape(scored_text(bench_coverage(r))),
        ]
        for r in rep.runs
    ]
    headers = ["Run", "Model", "Judge", r"SRA$_s$", r"SRA$_u$", "Overall", r"helpful$_s$", "Pair acc.", "Consistency", "Scored"]
    out = ["% VSCBench results generated by vscbench; requires \\usepackage{booktabs}"]
    out += ["% " + n.replace("\n", " ") for n in notes(rep)]
    out += [f"% Summary ({SUMMARY_TITLE})", _tex_tabular(headers, summary_rows)]
    out += [f"% Image-centric half ({BASELINE_OUT})", _tex_blocks(rep, IMAGE_BLOCKS)]
    out += [f"% Text-centric half ({TEXT_HALF_TITLE})", _tex_blocks(rep, TEXT_BLOCKS)]
    return "\n".join(out) + "\n"
