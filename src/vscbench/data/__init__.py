"""Data stage: the official release, items with stable ids, rendered images, integrity checks."""

from vscbench.data.items import build_items, load_items
from vscbench.data.paths import DataPaths, resolve_paths

__all__ = ["DataPaths", "build_items", "load_items", "resolve_paths"]
