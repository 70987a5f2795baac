"""The ``vscbench`` command line. Thin: parse, call one stage function, print. No logic lives here.

Each command group has its own section below; stage functions are imported lazily so that
``vscbench --help`` stays fast and a missing optional extra only matters to the command that needs it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from vscbench import __version__
from vscbench.errors import VscbenchError

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad flags as one line and exit code 2 (its default) without the usage block."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", help="release root (default: $VSCBENCH_HOME or ~/.cache/vscbench)")
    p.add_argument("--metadata", help="folder holding the two metadata .xlsx files (default: the root)")


def _add_store_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store", help="SQLite store (default: $VSCBENCH_STORE or ./vscbench_runs/vscbench.sqlite)"
    )


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


# ==== data ==========================================================================================
def _cmd_data_items(a: argparse.Namespace) -> int:
    from vscbench.data import load_items, resolve_paths

    items = load_items(resolve_paths(a.root, a.metadata), half=a.half, settings=a.setting)
    if a.json:
        _print_json([i.to_dict() for i in items])
    else:
        for i in items:
            sys.stdout.write(f"{i.id}\t{i.label}\t{i.setting}\t{i.query[:80]!r}\n")
    return 0


def _register_data(sub: argparse._SubParsersAction[Any]) -> None:
    data = sub.add_parser("data", help="get, check, render and export the benchmark data")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND", parser_class=_Parser)

    p = dsub.add_parser("items", help="list the benchmark items")
    _add_data_args(p)
    p.add_argument("--half", choices=["image", "text"])
    p.add_argument(
        "--setting", action="append", help="image, text, search, typography, concat, figstep (repeatable)"
    )
    p.add_argument("--json", action="store_true", help="a JSON list of objects keyed by the Item field names")
    p.set_defaults(func=_cmd_data_items)
    # (data: fetch, import, verify, render, export are registered here)


# ==== run / runs ====================================================================================
def _register_run(sub: argparse._SubParsersAction[Any]) -> None:
    pass


# ==== judge =========================================================================================
def _register_judge(sub: argparse._SubParsersAction[Any]) -> None:
    pass


# ==== report / plot / score =========================================================================
def _register_report(sub: argparse._SubParsersAction[Any]) -> None:
    pass


# ==== calibrate / utility ===========================================================================
def _register_calibration(sub: argparse._SubParsersAction[Any]) -> None:
    pass


# ==== main ==========================================================================================
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vscbench",
        description="Measure whether a vision-language model is safety-calibrated (VSCBench).",
    )
    parser.add_argument("--version", action="version", version=f"vscbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    _register_data(sub)
    _register_run(sub)
    _register_judge(sub)
    _register_report(sub)
    _register_calibration(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except VscbenchError as exc:
        sys.stderr.write(f"vscbench: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("vscbench: interrupted; everything already stored is kept\n")
        return 130
    except BrokenPipeError:
        return 0
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
