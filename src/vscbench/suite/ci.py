"""What CI reads of a gate: JUnit test cases from the gate result, and the pull-request Markdown summary.

Both come from the :class:`vscbench.suite.gate.GateResult` as it is, so they follow whatever statuses it has: a
JUnit row fails when its gate row FAILs, or when it is not PASS and the verdict is not PASS (an INCOMPLETE or
NOT EVALUATED row that keeps the gate from passing); the verdict case fails exactly when the gate does not
pass. A dashboard reading the JUnit file goes red exactly when the gate's exit code does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vscbench.suite.gate import FAIL, PASS, GateResult, format_markdown, table_rows, verdict_line
from vscbench.suite.snapshots import (
    FIX,
    NEUTRAL,
    REGRESSION,
    Flip,
    bounded,
    fixes_hint,
    flip_markdown,
    ordered_flips,
)

JUNIT_PREFIX = "vscbench.gate"
SUMMARY_LIMIT = 1 << 20  # GitHub's step summary limit (1 MiB)


@dataclass(frozen=True)
class JunitCase:
    nodeid: str  # vscbench.gate::benchmark::under-safety (classname vscbench.gate.benchmark, name under-safety)
    failed: bool
    message: str


def junit_cases(result: GateResult) -> list[JunitCase]:
    """One case per gate row, then one for the verdict."""
    out = []
    table = table_rows(result)[1:]
    for row, cells in zip(result.rows, table, strict=True):
        _, rate, n, value, ci, threshold, coverage, _status = cells
        failed = row.status == FAIL or (row.status != PASS and not result.passed)
        message = (
            f"{row.status}: {rate} {value} (95% CI {ci}, threshold {threshold}, n {n}, coverage {coverage}): "
            f"{row.why}"
        )
        out.append(JunitCase(f"{JUNIT_PREFIX}::{row.scope}::{row.rate_name}", failed, message))
    out.append(JunitCase(f"{JUNIT_PREFIX}::verdict", not result.passed, verdict_line(result)))
    return out


def session_flips_markdown(flips: Sequence[Flip]) -> list[str]:
    """The session's flips as Markdown parts (regressions first), one part per flip, for :func:`summary`."""
    parts = []
    flips = ordered_flips(flips)
    for cls, title in ((REGRESSION, "Regressions"), (FIX, "Fixes"), (NEUTRAL, "Neutral flips")):
        group = [f for f in flips if f.cls == cls]
        if not group:
            continue
        hint = f" — {fixes_hint(len(group))}" if cls == FIX else ""
        parts.append(f"\n#### {title} ({len(group)}){hint}\n\n")
        parts += [flip_markdown(f) + "\n\n" for f in group]
    return parts


def summary(
    result: GateResult | None,
    *,
    title: str,
    flips: Sequence[Flip] = (),
    baseline_md: str = "",
    why_no_gate: str = "--vsc-no-gate",
    limit: int = SUMMARY_LIMIT,
) -> str:
    """The pull-request Markdown: verdict and gate table, the baseline comparison, then every flip in a
    collapsed ``<details>`` (regressions first), bounded to ``limit`` bytes with a count of what was left out."""
    if result is None:
        head = f"### {title}: gate not run ({why_no_gate})\n"
    else:
        head = format_markdown(result, title=title)
    if flips:
        counts = {c: sum(f.cls == c for f in flips) for c in (REGRESSION, FIX, NEUTRAL)}
        head += (
            f"\n**Snapshot flips:** {counts[REGRESSION]} regressions, {counts[FIX]} fixes, "
            f"{counts[NEUTRAL]} neutral\n"
        )
    if baseline_md:
        head += "\n" + baseline_md
    return bounded(head, limit, session_flips_markdown(flips))


def describe_written(written: Sequence[tuple[str, Any]]) -> list[str]:
    return [f"wrote {what}: {path}" for what, path in written]


def session_report_html(
    store_path: str | Path,
    run_id: str,
    *,
    result: GateResult | None,
    cases: Sequence[str],
    flips: Sequence[Flip] = (),
    images: Mapping[str, str | None] | None = None,
    judge: str | None = None,
    blocked: str = "refuse",
    title: str = "vscbench safety gate",
    why_no_gate: str = "--vsc-no-gate",
) -> str:
    """The session's HTML report: the verdict and gate table (from ``result``, baseline rows included), the
    flips (regressions first, with query, thumbnail and both answers), then the report of the stored run
    restricted to the gate's population (``result.cases``; ``cases`` when no gate ran), so its rates are the
    gate's. ``images`` maps a case id to its image file (for the thumbnails)."""
    from vscbench.data.own_cases import case_id_of
    from vscbench.report.build import build_report
    from vscbench.report.session import render_session_html
    from vscbench.store import Store
    from vscbench.suite.cases import own_run_id

    ids = list(result.cases) if result is not None else list(cases)
    with Store(store_path, create=False) as st:
        # the team's own cases sit in the run beside it (stored as <case id>@<digest>); a session of own cases
        # only (-m own) has no benchmark run at all
        runs = [r for r in (run_id, own_run_id(run_id)) if st.has_run(r)] or [run_id]
        wanted = set(ids)
        if len(runs) > 1 or runs[0] != run_id:
            wanted |= {i for i in st.responses(own_run_id(run_id)) if case_id_of(i) in wanted}
        rep = build_report(st, runs, judge=judge, blocked=blocked, only_ids=wanted, tradeoff=False)
    gate = None
    if result is not None:
        gate = result.to_dict() | {"verdict": verdict_line(result), "thresholds": _shown(result.source)}
    paths = images or {}
    rows = [f.to_dict() | {"image_path": paths.get(f.case)} for f in ordered_flips(flips)]
    return render_session_html(rep, gate, rows, cases=len(ids), title=title, why_no_gate=why_no_gate)


def _shown(path: str) -> str:
    """A path as a report shows it: relative to the working directory when it lies inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve())) if path else path
    except (ValueError, OSError):
        return path
