"""The ``vscbench`` command line. Thin: parse, call one stage function, print. No logic lives here.

Each command group is a module of this package with a ``register(sub)`` that adds its subcommands; stage
functions are imported lazily so that ``vscbench --help`` stays fast and a missing optional extra only
matters to the command that needs it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vscbench import __version__
from vscbench.cli import calibrate, cases, data, judge, label, report, run, snapshots, utility
from vscbench.cli.common import Parser
from vscbench.errors import VscbenchError


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="vscbench",
        description="Measure whether a vision-language model is safety-calibrated (VSCBench).",
    )
    parser.add_argument("--version", action="version", version=f"vscbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for group in (data, run, judge, report, calibrate, utility, snapshots, label, cases):
        group.register(sub)
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
