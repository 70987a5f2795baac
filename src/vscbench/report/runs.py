"""The table of ``vscbench runs``: one line per stored run with its model, kind, creation time and counts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from vscbench.report.names import model_label

COLUMNS = ("run", "model", "kind", "created (UTC)", "items", "ok", "blocked", "empty", "error", "pending")


def runs_table(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The header and one left-aligned row per run (``list_runs`` rows), columns as wide as their widest cell."""
    rows = [
        (
            r["run_id"],
            model_label(r["model"]),
            r["kind"],
            dt.datetime.fromtimestamp(r["created_at"], dt.UTC).strftime("%Y-%m-%d %H:%M"),
            *(str(r["counts"][k]) for k in ("items", "ok", "blocked", "empty", "error", "pending")),
        )
        for r in runs
    ]
    widths = [max(len(x) for x in col) for col in zip(COLUMNS, *rows, strict=True)]
    return ["  ".join(x.ljust(w) for x, w in zip(row, widths, strict=True)).rstrip() for row in (COLUMNS, *rows)]
