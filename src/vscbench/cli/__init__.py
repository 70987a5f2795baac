"""The ``vscbench`` command line: one module per command group and a small :mod:`~vscbench.cli.main`."""

from vscbench.cli.main import main

__all__ = ["main"]
