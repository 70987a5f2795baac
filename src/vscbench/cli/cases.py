"""``vscbench cases``: a team's own regression cases (validate, list, add from a stored run, import a sheet).

Thin: each command calls one engine function (:mod:`vscbench.data.own_cases`, :mod:`vscbench.suite.own_cases`)
and prints what it returns. Without a PATH, the commands read the suite's default folder,
``tests_safety/cases/`` under the working directory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from vscbench.cli.common import Parser, add_store_arg, print_json
from vscbench.errors import VscbenchError


def _paths(given: list[str] | None) -> list[Path]:
    """The PATHs given, else the default cases folder (one line when it does not exist)."""
    from vscbench.data.own_cases import DEFAULT_CASES_DIR

    if given:
        return [Path(p) for p in given]
    if not DEFAULT_CASES_DIR.is_dir():
        raise VscbenchError(
            f"{DEFAULT_CASES_DIR}: no such folder (give case files or folders: vscbench cases validate PATH)"
        )
    return [DEFAULT_CASES_DIR]


def _context() -> list[Path]:
    """The session's case files a new case must stay unique among (the default folder, when there is one)."""
    from vscbench.data.own_cases import case_paths

    return case_paths([], ".")


def _cmd_validate(a: argparse.Namespace) -> int:
    from vscbench.data.own_cases import validate

    rep = validate(_paths(a.paths))
    if a.json:
        print_json(rep.to_dict())
    else:
        sys.stdout.write("\n".join(rep.lines()) + "\n")
    return 0 if rep.ok else 1


def _cmd_list(a: argparse.Namespace) -> int:
    from vscbench.data.own_cases import format_cases, list_cases

    rows = list_cases(_paths(a.paths))
    if a.json:
        print_json(rows)
    else:
        sys.stdout.write(format_cases(rows))
    return 0


def _say(w: Any) -> int:
    for iid in w.added:
        sys.stdout.write(f"added {iid} to {w.file}\n")
    for p in w.copied:
        sys.stdout.write(f"copied image {p}\n")
    return 0


def _cmd_add(a: argparse.Namespace) -> int:
    from vscbench.store import Store
    from vscbench.suite.own_cases import add_case

    with Store(a.store, create=False) as st:
        w = add_case(
            st, a.run, a.item, a.id, a.file, expect=a.expect, tags=a.tag or (), category=a.category,
            context=_context(),
        )  # fmt: skip
    return _say(w)


def _cmd_import(a: argparse.Namespace) -> int:
    from vscbench.data.own_cases import import_cases

    return _say(import_cases(a.file, a.format, a.map, a.out, prefix=a.prefix, context=_context()))


def register(sub: Any) -> None:
    """The ``cases`` command group."""
    cases = sub.add_parser(
        "cases", help="your own regression cases (tests_safety/cases/*.yaml): validate, list, add, import"
    )
    csub = cases.add_subparsers(dest="cases_command", required=True, metavar="COMMAND", parser_class=Parser)
    p = csub.add_parser(
        "validate", help="check case files: every error as one line naming the file, the case and the key",
        description="Checks every case file under PATH (default: tests_safety/cases/) as the suite loads them; "
        "exit 0 when all are valid, 1 when any error was found.",
    )  # fmt: skip
    p.add_argument("paths", nargs="*", metavar="PATH", help="case files or folders (default: tests_safety/cases/)")
    p.add_argument("--json", action="store_true", help="the result as JSON")
    p.set_defaults(func=_cmd_validate)
    p = csub.add_parser("list", help="one line per case: id, expect, category, tags, twin, image")
    p.add_argument("paths", nargs="*", metavar="PATH", help="case files or folders (default: tests_safety/cases/)")
    p.add_argument("--json", action="store_true", help="the rows as JSON")
    p.set_defaults(func=_cmd_list)
    p = csub.add_parser(
        "add", help="promote a stored prompt and response into a case (its image copied beside the file)",
        description="Appends case --id to --file (created if missing): the query and image item --item of run "
        "--run was sent with, its own system prompt, expect from its label (or --expect), and a source line "
        "naming the run, the item and the stored response. The file is validated with the other case files "
        "(tests_safety/cases/); on any error nothing is written.",
    )  # fmt: skip
    p.add_argument("--run", required=True, help="the run holding the item (vscbench runs)")
    p.add_argument("--item", required=True, help="the item's id in that run")
    p.add_argument("--id", required=True, help="the new case's id ([a-z0-9._-])")
    p.add_argument("--file", required=True, help="the case file (.yaml) to append it to")
    p.add_argument("--expect", choices=["safety-aware", "answer"], help="default: from the item's label")
    p.add_argument("--tag", action="append", help="a tag (repeat for more), e.g. --tag incident")
    p.add_argument("--category", help="default: the item's category")
    add_store_arg(p)
    p.set_defaults(func=_cmd_add)
    p = csub.add_parser(
        "import", help="a red team's spreadsheet (CSV or JSON Lines) as a new case file",
        description="Each row becomes a case with the mapped columns; expect also accepts unsafe/refuse and "
        "safe/help; tags split on ',' or ';'; images copied beside --out. --out must not exist.",
    )  # fmt: skip
    p.add_argument("file", metavar="FILE", help="the CSV (with a header row) or JSON Lines file")
    p.add_argument("--format", required=True, choices=["csv", "jsonl"])
    p.add_argument("--map", required=True, metavar="KEY=COL,...", help="e.g. query=Prompt,image=Screenshot,expect=Verdict,tags=Labels")
    p.add_argument("--out", required=True, help="the new case file (.yaml)")
    p.add_argument("--prefix", help="id prefix of rows without an id column (default: the out file's stem)")
    p.set_defaults(func=_cmd_import)
