"""User-facing errors and the one way to say an optional extra is missing."""

from __future__ import annotations

import importlib
from types import ModuleType


class VscbenchError(Exception):
    """An error caused by the user's input or environment.

    The CLI prints ``str(error)`` as one line and exits with :attr:`exit_code`; no traceback.
    Messages name the file, row, column, item or flag that is wrong.
    """

    exit_code: int = 2

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class MissingExtraError(VscbenchError):
    """An optional dependency is not installed."""


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise one clear line naming the ``pip install`` that brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"this needs the optional extra '{extra}' ({module} is not installed): "
            f"run pip install 'vscbench[{extra}]'"
        ) from exc
