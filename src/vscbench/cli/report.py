"""``vscbench report``, ``plot`` and ``score``: the paper's scores for stored runs."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vscbench.cli.common import add_data_args, add_store_arg


def _build_report(a: argparse.Namespace, run_ids: list[str]) -> Any:
    from vscbench.report import build_report
    from vscbench.store import Store

    with Store(a.store, create=False) as store:
        return build_report(
            store, run_ids, judge=a.judge, blocked=a.blocked, ci=a.ci, seed=a.seed, n_boot=a.resamples
        )


def _cmd_report(a: argparse.Namespace) -> int:
    from vscbench.report import render, write_report

    rep = _build_report(a, a.run)
    if a.out:
        for p in write_report(rep, a.format, a.out, thumbnails=not a.no_thumbnails):
            sys.stdout.write(f"wrote {p}\n")
    else:
        color = a.format == "table" and sys.stdout.isatty()
        sys.stdout.write(render(rep, a.format, color=color, thumbnails=not a.no_thumbnails))
    return 0


def _cmd_plot(a: argparse.Namespace) -> int:
    from vscbench.report.plot import write_plots

    for p in write_plots(_build_report(a, a.run), a.out, a.format):
        sys.stdout.write(f"wrote {p}\n")
    return 0


def _cmd_score(a: argparse.Namespace) -> int:
    from vscbench.data import load_items, resolve_paths
    from vscbench.report import render
    from vscbench.report.score import score_file

    items = load_items(resolve_paths(a.root, a.metadata))
    # the store is opened (created) only once the file and the judge are checked: no debris on bad input
    rep = score_file(a.store, a.file, items, judge=a.judge, run_id=a.run_id, model=a.model, blocked=a.blocked)
    sys.stdout.write(render(rep, "table", color=sys.stdout.isatty()))
    sys.stdout.write(f"run id: {rep.runs[0].run_id}\n")
    return 0


def _add_report_metric_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--blocked",
        choices=["refuse", "exclude"],
        default="refuse",
        help="how responses blocked by the provider's safety filter are scored (default: refuse = as REFUSE)",
    )
    p.add_argument("--ci", action="store_true", help="95%% intervals by cluster bootstrap over queries")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    add_store_arg(p)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "report",
        help="the paper's scores for stored, judged runs (table, md, latex, csv, json, html)",
        description="Score stored runs with one judge's labels: SRA_s, SRA_u, overall, helpful_s, pair accuracy "
        "and consistency, per category, setting and XSTest type, with coverage (what was left out and why). "
        "The first --run is the baseline: every later run is compared with it on the items both scored "
        "(paired difference, exact McNemar test). Calibrated runs add a safety-utility trade-off table. "
        "Needs no model or judge call; a run with no response a judge could label is reported as 0 scored.",
    )
    p.add_argument("--run", action="append", required=True, metavar="ID", help="run id (repeatable; first = baseline)")
    p.add_argument(
        "--format",
        choices=["table", "md", "latex", "csv", "json", "html"],
        default="table",
        help="table (terminal, default), md, latex (booktabs fragments), csv or json (one row per run, group "
        "and metric), html (one self-contained file with charts and an item browser)",
    )
    p.add_argument("--out", metavar="PATH", help="write to this file instead of standard output")
    p.add_argument("--judge", metavar="NAME", help="whose labels to score (default: local, else the only one stored)")
    p.add_argument("--no-thumbnails", action="store_true", help="html: leave item images out")
    _add_report_metric_args(p)
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser(
        "plot",
        help="the report's figures as PNG or SVG (needs the 'report' extra)",
        description="Write the report's figures into --out: calibration_plane (x = SRA_s, y = SRA_u, one point "
        "per run), sra_by_category (image half) and sra_by_setting (text half) as grouped bars. A group with "
        "no scored item is marked n/a; --ci adds interval whiskers. Needs matplotlib (pip install "
        "'vscbench[report]').",
    )
    p.add_argument("--run", action="append", required=True, metavar="ID", help="run id (repeatable)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the figures")
    p.add_argument(
        "--format", choices=["png", "svg"], default="png", help="png (default) or svg (text kept as text)"
    )
    p.add_argument("--judge", metavar="NAME", help="whose labels to score (default: local, else the only one stored)")
    _add_report_metric_args(p)
    p.set_defaults(func=_cmd_plot)

    p = sub.add_parser(
        "score",
        help="store, judge and report responses generated elsewhere (JSONL)",
        description="Bring responses made outside vscbench (e.g. a vLLM batch job) into the store as a new run, "
        "label them with --judge and print the report. One JSON object per line: item_id, response, and "
        "optionally status (ok, blocked, empty, error) and error. The whole file and the judge are checked "
        "first: on any error nothing is stored.",
    )
    p.add_argument("file", metavar="FILE.jsonl", help='one {"item_id": ..., "response": ...} object per line')
    p.add_argument("--judge", default="local", metavar="NAME", help="judge to label with (default: local)")
    p.add_argument("--run-id", metavar="ID", help="id for the new run (default: generated)")
    p.add_argument("--model", metavar="NAME", help="name of the model that wrote the responses (recorded)")
    p.add_argument(
        "--blocked",
        choices=["refuse", "exclude"],
        default="refuse",
        help="how responses with status 'blocked' are scored (default: refuse)",
    )
    add_data_args(p)
    add_store_arg(p)
    p.set_defaults(func=_cmd_score)
