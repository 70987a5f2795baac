"""Where the release lives: the root (``--root``, ``$VSCBENCH_HOME``, ``~/.cache/vscbench``) and the metadata.

The metadata (the two ``.xlsx`` files) is found by one ordered search that every command, the demo and the
pytest suite share (:func:`find_metadata`, used by :func:`resolve_paths`):

1. ``--metadata DIR`` (the ``metadata`` argument);
2. ``$VSCBENCH_METADATA``;
3. the release root (``--root``, else ``$VSCBENCH_HOME``, else ``~/.cache/vscbench``), where
   ``vscbench data fetch`` puts it;
4. a metadata folder beside the project: ``$VSCBENCH_SHARED/data/vscbench`` when that variable is set,
   else ``../shared/data/vscbench`` from the current folder, then from the source checkout.

A flag or variable that names a missing folder is an error about that folder (never skipped silently);
when the search finds nothing, one line names every place tried and the two ways out.
"""

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
#: SHA-256 of the two metadata files at the pinned upstream commit (``vscbench.data.fetch.UPSTREAM_COMMIT``,
#: 426fa1f): what a release's metadata must be, checked by the download (``fetch``), the archive import
#: (``archive``) and ``data verify``.
METADATA_SHA256: dict[str, str] = {
    IMAGE_CENTRIC_XLSX: "f33fc4d9622e93cf2710c27586bc059ea1d93385f7c7d93a0d2d9c6e82f568ee",
    TEXT_CENTRIC_XLSX: "dbac4ced24a41ffdef3b8c0297cabb2575b6d28b07f833966b0ce4f2cfd9d08b",
}


METADATA_ENV = "VSCBENCH_METADATA"
SHARED_ENV = "VSCBENCH_SHARED"
#: Where the metadata sits inside a shared data folder (``<shared>/data/vscbench``).
SHARED_METADATA = Path("data") / "vscbench"
WAYS_OUT = (
    "run 'vscbench data fetch' to download it, or pass --metadata DIR (the folder holding "
    f"{IMAGE_CENTRIC_XLSX} and {TEXT_CENTRIC_XLSX})"
)


def default_root() -> Path:
    env = os.environ.get("VSCBENCH_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vscbench"


def release_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The release root alone (``root``, else :func:`default_root`), absolute; needs no metadata.

    For the commands that put the release in place (``data fetch``, ``data import``)."""
    return (Path(root).expanduser() if root else default_root()).resolve()


def project_dir() -> Path | None:
    """The source checkout this package runs from (``<repo>`` of ``<repo>/src/vscbench``), or ``None`` when
    it is installed elsewhere (site-packages)."""
    pkg = Path(__file__).resolve().parents[1]
    return pkg.parents[1] if pkg.parent.name == "src" else None


def metadata_candidates(root: str | os.PathLike[str] | None = None) -> list[tuple[str, Path]]:
    """Steps 3 and 4 of the search, in order, each with how it was chosen (no duplicates)."""
    out: list[tuple[str, Path]] = [("the release root", release_root(root))]
    shared = os.environ.get(SHARED_ENV)
    if shared:
        out.append((f"under ${SHARED_ENV}", (Path(shared).expanduser() / SHARED_METADATA).resolve()))
    else:
        rel = Path("..") / "shared" / SHARED_METADATA
        out.append(("beside the current folder", (Path.cwd() / rel).resolve()))
        proj = project_dir()
        if proj is not None:
            out.append(("beside the source checkout", (proj / rel).resolve()))
    seen: set[Path] = set()
    unique: list[tuple[str, Path]] = []
    for how, p in out:
        if p not in seen:
            seen.add(p)
            unique.append((how, p))
    return unique


def _files_in(folder: Path) -> int:
    return sum((folder / n).is_file() for n in (IMAGE_CENTRIC_XLSX, TEXT_CENTRIC_XLSX))


def _chosen_folder(who: str, value: str | os.PathLike[str]) -> Path:
    """A folder named by ``--metadata`` or ``$VSCBENCH_METADATA`` (``who``, e.g. ``--metadata DIR``): it must
    exist and hold at least one of the two metadata files."""
    p = Path(value).expanduser()
    if not p.exists():
        raise VscbenchError(f"{who}: no such folder; {WAYS_OUT}")
    if not p.is_dir():
        raise VscbenchError(f"{who}: a file, not a folder; {WAYS_OUT}")
    if _files_in(p) == 0:
        raise VscbenchError(f"{who}: neither {IMAGE_CENTRIC_XLSX} nor {TEXT_CENTRIC_XLSX} in this folder; {WAYS_OUT}")
    return p.resolve()


def metadata_not_found(root: str | os.PathLike[str] | None = None) -> str:
    """The one line said when the search finds no metadata: what was searched and the two ways out."""
    tried = "; ".join(f"{how} {p}" for how, p in metadata_candidates(root))
    return f"benchmark metadata not found (no --metadata, no ${METADATA_ENV}; looked in {tried}): {WAYS_OUT}"


def find_metadata(
    metadata: str | os.PathLike[str] | None = None, root: str | os.PathLike[str] | None = None
) -> Path:
    """The folder holding the metadata, by the ordered search of this module's docstring.

    Among the release root and the folders beside the project, the first holding both files wins; else the
    first holding one of them (the missing one is then reported by name when it is read). Raises one
    :class:`VscbenchError` line when nothing is found."""
    if metadata:
        return _chosen_folder(f"--metadata {metadata}", metadata)
    env = os.environ.get(METADATA_ENV)
    if env:
        return _chosen_folder(f"${METADATA_ENV}={env}", env)
    cands = metadata_candidates(root)
    for want in (2, 1):
        for _, p in cands:
            if _files_in(p) >= want:
                return p
    raise VscbenchError(metadata_not_found(root))


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
    """The release root and the metadata folder (:func:`find_metadata`: ``metadata``, else the search).

    Raises one :class:`VscbenchError` line when no metadata is found (what was searched, and the two ways
    out: ``vscbench data fetch`` or ``--metadata DIR``)."""
    return DataPaths(root=release_root(root), metadata=find_metadata(metadata, root))


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
