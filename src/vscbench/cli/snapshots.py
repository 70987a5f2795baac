"""``vscbench snapshots``: the safety suite's snapshot files (``diff``, ``trend``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vscbench.cli.common import Parser


def _cmd_snapshots_diff(a: argparse.Namespace) -> int:
    from vscbench.suite.snapshots import REGRESSION, diff_sets, format_table, read_pair

    before, after = read_pair(a.before, a.after, a.path, a.repo)
    table = diff_sets(before, after)
    sys.stdout.write(format_table(table, fmt=a.format, responses=a.top))
    return 1 if a.fail_on == "regression" and table.classes[REGRESSION] else 0


def _cmd_snapshots_trend(a: argparse.Namespace) -> int:
    import json

    from vscbench.suite.trend import format_trend, plot, trend

    points = trend(a.path, a.repo, a.since)
    if a.format == "json":
        sys.stdout.write(json.dumps([p.to_dict() for p in points], indent=2) + "\n")
    else:
        sys.stdout.write(format_trend(points, a.format))
    if a.out:
        for path in plot(points, a.out, title=f"{a.path}"):
            sys.stderr.write(f"wrote {path}\n")
    return 0


def register(sub: Any) -> None:
    snap = sub.add_parser("snapshots", help="the safety suite's snapshot files: what changed between two sets")
    ssub = snap.add_subparsers(dest="snapshots_command", required=True, metavar="COMMAND", parser_class=Parser)
    p = ssub.add_parser(
        "diff",
        help="flip table between two snapshot sets (two folders, or two git revisions of --path)",
        description="Per scope, how many cases regressed (correct -> under-/over-safe, or between the two), "
        "were fixed (-> correct) or changed label only (neutral), then each flipped case, regressions "
        "first, with its query, image and old and new response. BEFORE and AFTER are snapshot folders "
        "(e.g. tests_safety/__snapshots__/qwen-vl) or git revisions (then --path names the folder).",
    )
    p.add_argument("before", metavar="BEFORE", help="a snapshot folder or a git revision")
    p.add_argument("after", metavar="AFTER", help="a snapshot folder or a git revision")
    p.add_argument("--path", help="one model's snapshot folder, read at each revision (tests_safety/__snapshots__/MODEL)")
    p.add_argument("--repo", default=".", help="the git repository (default: here)")
    p.add_argument("--format", choices=["text", "md", "html", "json"], default="text", help="text, md (a PR comment), html or json")
    p.add_argument("--fail-on", choices=["regression"], help="exit 1 when any case regressed (for CI)")
    p.add_argument("--top", type=int, default=20, help="flipped cases shown with their responses (default 20)")
    p.set_defaults(func=_cmd_snapshots_diff)
    t = ssub.add_parser(
        "trend",
        help="under- and over-safety per commit of a model's snapshot folder, with regressions and fixes",
        description="Walks the git history of --path: per commit that changed it, under-safety and over-safety "
        "with 95%% Wilson intervals, and the regressions and fixes against the previous such commit. A table "
        "(text, md or json); --out DIR also writes trend.png and trend.svg.",
    )
    t.add_argument("--path", required=True, help="one model's snapshot folder (tests_safety/__snapshots__/MODEL)")
    t.add_argument("--since", metavar="REF", help="only commits after this revision")
    t.add_argument("--repo", default=".", help="the git repository (default: here)")
    t.add_argument("--format", choices=["text", "md", "json"], default="text")
    t.add_argument("--out", metavar="DIR", help="write trend.png and trend.svg there")
    t.set_defaults(func=_cmd_snapshots_trend)
