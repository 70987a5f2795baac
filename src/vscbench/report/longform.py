"""CSV and JSON in long format: one row per (run, judge, group, metric).

Columns (:data:`COLUMNS`): ``value``, ``ci_low``, ``ci_high`` are fractions in [0, 1] (not %); ``n`` counts
scored units (items; pairs for ``pair_acc``; queries for ``consistency``; all items for ``coverage``);
``excluded`` the units left out; ``excluded_<reason>`` breaks excluded items down; ``blocked`` counts
blocked responses in the population and ``blocked_policy`` says how they were scored. The group ``run``
holds the coverage of every item of the run (text-only baseline and never-sent items included).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from vscbench import __version__
from vscbench.metrics import EXCLUSION_REASONS, MetricValue
from vscbench.report.build import Report, RunReport

COLUMNS: tuple[str, ...] = (
    "run",
    "model",
    "judge",
    "group",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "n",
    "excluded",
    *(f"excluded_{r}" for r in EXCLUSION_REASONS),
    "blocked",
    "blocked_policy",
)
COMPARISON_COLUMNS: tuple[str, ...] = (
    "run_a",
    "run_b",
    "judge_a",
    "judge_b",
    "group",
    "metric",
    "a",
    "b",
    "diff",
    "ci_low",
    "ci_high",
    "n",
    "a_right_b_wrong",
    "b_right_a_wrong",
    "p_value",
)


def _row(rep: Report, run: RunReport, m: MetricValue) -> dict[str, Any]:
    item_level = bool(m.reasons)
    row: dict[str, Any] = {
        "run": run.run_id,
        "model": run.model,
        "judge": run.judge,
        "group": m.group,
        "metric": m.metric,
        "value": m.value,
        "ci_low": m.ci_low,
        "ci_high": m.ci_high,
        "n": m.n,
        "excluded": m.excluded,
    }
    for r in EXCLUSION_REASONS:
        row[f"excluded_{r}"] = m.reasons.get(r, 0) if item_level else None
    row["blocked"] = m.blocked if item_level else None
    row["blocked_policy"] = rep.blocked
    return row


def long_rows(rep: Report) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for run in rep.runs:
        rows.append(_row(rep, run, run.coverage))
        rows += [_row(rep, run, m) for m in run.metrics]
    return rows


def comparison_rows(rep: Report) -> list[dict[str, Any]]:
    judge = {r.run_id: r.judge for r in rep.runs}
    return [
        {
            "run_a": pc.a,
            "run_b": pc.b,
            "judge_a": judge[pc.a],
            "judge_b": judge[pc.b],
            "group": c.group,
            "metric": c.metric,
            "a": c.a,
            "b": c.b,
            "diff": c.diff,
            "ci_low": c.ci_low,
            "ci_high": c.ci_high,
            "n": c.n,
            "a_right_b_wrong": c.a_right_b_wrong,
            "b_right_a_wrong": c.b_right_a_wrong,
            "p_value": c.p_value,
        }
        for pc in rep.comparisons
        for c in pc.rows
    ]


def render_json(rep: Report) -> str:
    doc: dict[str, Any] = {
        "vscbench_version": __version__,
        "blocked_policy": rep.blocked,
        "intervals": (
            {"method": "cluster bootstrap over queries (percentile)", "confidence": rep.confidence,
             "resamples": rep.n_boot, "seed": rep.seed}
            if rep.ci
            else None
        ),
        "runs": [
            {
                "run": r.run_id,
                "model": r.model,
                "kind": r.kind,
                "judge": r.judge,
                "judges": r.judges,
                "items": len(r.items),
                "not_sent": r.coverage.reasons.get("not_sent", 0),
                "blocked": r.coverage.blocked,
                "banner": r.banner,
            }
            for r in rep.runs
        ],
        "rows": long_rows(rep),
        "comparisons": comparison_rows(rep),
        "tradeoff": rep.tradeoff or None,
    }
    return json.dumps(doc, indent=1, ensure_ascii=False, default=str) + "\n"


def _csv(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    """A header line of ``columns`` and one line per row (``None`` written as an empty cell)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buf.getvalue()


def render_csv(rep: Report) -> str:
    """The metric rows only (comparisons have their own columns: :func:`render_comparisons_csv`)."""
    return _csv(COLUMNS, long_rows(rep))


def render_comparisons_csv(rep: Report) -> str:
    return _csv(COMPARISON_COLUMNS, comparison_rows(rep))
