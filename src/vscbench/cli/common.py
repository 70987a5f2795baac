"""What the command groups share: the one-line-error parser, the data and store flags, flag types, JSON output,
and the no-debris guard around commands that may create a store."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vscbench.errors import VscbenchError

SETTINGS = ("image", "text", "search", "typography", "concat", "figstep")


class Parser(argparse.ArgumentParser):
    """argparse that reports bad flags as one line and exit code 2 (its default) without the usage block."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", help="release root (default: $VSCBENCH_HOME or ~/.cache/vscbench)")
    p.add_argument(
        "--metadata",
        metavar="DIR",
        help="folder holding the two metadata .xlsx files (default: $VSCBENCH_METADATA, else the root, else "
        "../shared/data/vscbench beside the project)",
    )


def add_store_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store", help="SQLite store (default: $VSCBENCH_STORE or ./vscbench_runs/vscbench.sqlite)"
    )


@contextmanager
def no_new_store_on_error(store: str | None) -> Iterator[None]:
    """Rejected input leaves no debris: when the command fails with a user error and the store file (or its
    folder) did not exist before, a store it left holding no run is removed, with its side files."""
    from vscbench.store import Store, default_store_path

    path = Path(store) if store else default_store_path()
    had_file, had_dir = path.exists(), path.parent.exists()
    try:
        yield
    except VscbenchError:
        if not had_file and path.is_file():
            with Store(path, create=False) as st:
                unused = not st.list_runs()
            if unused:
                for p in (path, *(path.with_name(path.name + x) for x in ("-wal", "-shm", ".lock"))):
                    p.unlink(missing_ok=True)
                if not had_dir:
                    try:
                        path.parent.rmdir()
                    except OSError:
                        pass  # not empty: someone else's files
        raise


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {v}")
    return v


def flag_int(minimum: int) -> Callable[[str], int]:
    """An argparse ``type=``: a whole number of at least ``minimum`` (argparse names the flag)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {v}")
        return v

    return parse


def flag_float(low: float, *, low_open: bool = False, high: float | None = None) -> Callable[[str], float]:
    """An argparse ``type=``: a finite number >= ``low`` (> with ``low_open``), and <= ``high`` if given."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if v != v or v in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if v < low or (low_open and v == low) or (high is not None and v > high):
            rule = f"above {low:g}" if low_open else ("zero or more" if low == 0 else f"at least {low:g}")
            rule += f" and at most {high:g}" if high is not None else ""
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return v

    return parse
