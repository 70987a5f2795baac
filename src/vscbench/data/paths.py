"""Where the release lives: the root (``--root``, ``$VSCBENCH_HOME``, ``~/.cache/vscbench``) and metadata."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vscbench.errors import VscbenchError

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


def writable_folder(folder: str | os.PathLike[str], target: str | os.PathLike[str] | None = None) -> Path:
    """Create ``folder`` (and its parents) and prove a file can be made in it; returns it.

    Raises one :class:`VscbenchError` line naming the folder (and ``target``, the file about to be written
    there, when given) when it is a file, cannot be created, or refuses new files (read-only, /proc, no
    permission). The probe file is removed at once.
    """
    f = Path(folder)
    who = f"{target}: cannot write it" if target is not None else f"{f}: cannot write here"
    if f.exists() and not f.is_dir():
        raise VscbenchError(f"{who} ({f} is a file, not a folder)")
    try:
        f.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".vscbench-probe.", dir=f)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        where = f"{f}: " if target is not None else ""
        raise VscbenchError(f"{who} ({where}{exc.strerror or exc})") from exc
    return f


@contextmanager
def writing(target: str | os.PathLike[str]) -> Iterator[None]:
    """Turn an ``OSError`` raised while writing ``target`` (disk full, permission, ...) into one line naming it."""
    try:
        yield
    except OSError as exc:
        raise VscbenchError(f"{target}: cannot write it ({exc.strerror or exc})") from exc
