"""Where the release lives: the root (``--root``, ``$VSCBENCH_HOME``, ``~/.cache/vscbench``) and metadata."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

IMAGE_CENTRIC_XLSX = "vscbench_image_centric.xlsx"
TEXT_CENTRIC_XLSX = "vscbench_text_centric.xlsx"
IMAGE_CENTRIC_DIR = "vscbench_image_centric_images"
TEXT_CENTRIC_DIR = "vscbench_text_centric_images"


def default_root() -> Path:
    env = os.environ.get("VSCBENCH_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vscbench"


@dataclass(frozen=True)
class DataPaths:
    """The release root (images live here) and the folder holding the two metadata files.

    ``metadata`` defaults to ``root``; ``--metadata DIR`` points at metadata alone (e.g. a read-only copy),
    while images (downloaded or rendered) still go under ``root``.
    """

    root: Path
    metadata: Path

    @property
    def image_centric_xlsx(self) -> Path:
        return self.metadata / IMAGE_CENTRIC_XLSX

    @property
    def text_centric_xlsx(self) -> Path:
        return self.metadata / TEXT_CENTRIC_XLSX

    @property
    def image_centric_images(self) -> Path:
        return self.root / IMAGE_CENTRIC_DIR

    @property
    def text_centric_images(self) -> Path:
        return self.root / TEXT_CENTRIC_DIR

    def text_image(self, setting: str, name: str) -> Path:
        return self.text_centric_images / setting / name


def resolve_paths(
    root: str | os.PathLike[str] | None = None, metadata: str | os.PathLike[str] | None = None
) -> DataPaths:
    r = Path(root).expanduser() if root else default_root()
    m = Path(metadata).expanduser() if metadata else r
    return DataPaths(root=r.resolve(), metadata=m.resolve())
