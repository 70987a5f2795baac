"""Data stage: the official release, items with stable ids, rendered images, integrity checks."""

from vscbench.data.items import build_items, load_items
from vscbench.data.paths import DataPaths, find_metadata, metadata_not_found, release_root, resolve_paths

__all__ = [
    "DataPaths",
    "build_items",
    "find_metadata",
    "load_items",
    "metadata_not_found",
    "release_root",
    "resolve_paths",
]
