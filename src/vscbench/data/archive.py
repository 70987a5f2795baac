"""Safe import of a release archive (zip or tar) into the release root.

Invariants (checked on every member before anything is written, and again while writing):

* no absolute paths, drive letters, backslashes, NUL bytes or ``..`` components: nothing lands outside the
  staging folder;
* only regular files and folders: symbolic links, hard links, devices and FIFOs are refused;
* at most :attr:`Limits.max_files` members, :attr:`Limits.max_file_bytes` per file and
  :attr:`Limits.max_total_bytes` in all, counted on the bytes actually written (a member that lies about its
  size is stopped when it passes the limit);
* every file under a release image folder must start like an image (PNG, JPEG, GIF, WebP, BMP), checked
  in the staging folder before anything is installed;
* extraction goes to a staging folder inside the root; only the release folders and the two metadata files
  are moved into place, and the staging folder is removed whatever happens. A refused archive leaves the
  root as it was.

Python's ``extractall`` is never used.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from vscbench.data.paths import (
    IMAGE_CENTRIC_DIR,
    IMAGE_CENTRIC_XLSX,
    METADATA_SHA256,
    TEXT_CENTRIC_DIR,
    TEXT_CENTRIC_XLSX,
    writable_folder,
    writing,
)
from vscbench.errors import VscbenchError
from vscbench.hashing import sha256_file

_RELEASE_DIRS = (IMAGE_CENTRIC_DIR, TEXT_CENTRIC_DIR)
_RELEASE_FILES = (IMAGE_CENTRIC_XLSX, TEXT_CENTRIC_XLSX)
_CHUNK = 1 << 20


class ArchiveError(VscbenchError):
    """The archive is unsafe, too large, or not a VSCBench release."""


@dataclass(frozen=True)
class Limits:
    """Upper bounds on what an archive may hold."""

    max_files: int = 50_000
    max_file_bytes: int = 256 * 1024**2
    max_total_bytes: int = 32 * 1024**3


@dataclass
class ImportSummary:
    """What :func:`import_archive` put under the root."""

    archive: Path
    root: Path
    files: dict[str, int] = field(default_factory=dict)
    metadata: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_written: int = 0

    def to_dict(self) -> dict[str, object]:
        return {
            "archive": str(self.archive),
            "root": str(self.root),
            "files": dict(self.files),
            "metadata": list(self.metadata),
            "skipped": list(self.skipped),
            "bytes_written": self.bytes_written,
        }


@dataclass(frozen=True)
class _Member:
    name: PurePosixPath
    is_dir: bool
    size: int
    ref: object  # ZipInfo or TarInfo


_DRIVE = re.compile(r"^[A-Za-z]:")


def safe_member_name(archive: Path, raw: str) -> PurePosixPath | None:
    """The member's relative path, or None for the archive's own root entry; refuses anything that escapes."""
    where = f"{archive}: member {raw!r}"
    if "\x00" in raw:
        raise ArchiveError(f"{where}: NUL byte in the name")
    if "\\" in raw:
        raise ArchiveError(f"{where}: backslash in the name (refused: could escape on Windows)")
    if raw.startswith("/") or _DRIVE.match(raw):
        raise ArchiveError(f"{where}: absolute path")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise ArchiveError(f"{where}: '..' in the path (would escape the target folder)")
    return PurePosixPath(*parts) if parts else None


def _zip_members(archive: Path, zf: zipfile.ZipFile) -> list[_Member]:
    out: list[_Member] = []
    for info in zf.infolist():
        name = safe_member_name(archive, info.filename)
        mode = (info.external_attr >> 16) & 0xFFFF
        kind = stat.S_IFMT(mode)
        if kind == stat.S_IFLNK:
            raise ArchiveError(f"{archive}: member {info.filename!r}: symbolic link (refused)")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise ArchiveError(f"{archive}: member {info.filename!r}: not a regular file (refused)")
        if info.flag_bits & 0x1:
            raise ArchiveError(f"{archive}: member {info.filename!r}: encrypted (refused)")
        if name is None:
            continue
        out.append(_Member(name, info.is_dir(), info.file_size, info))
    return out


def _tar_members(archive: Path, tf: tarfile.TarFile) -> list[_Member]:
    out: list[_Member] = []
    for ti in tf.getmembers():
        name = safe_member_name(archive, ti.name)
        if ti.issym():
            raise ArchiveError(f"{archive}: member {ti.name!r}: symbolic link (refused)")
        if ti.islnk():
            raise ArchiveError(f"{archive}: member {ti.name!r}: hard link (refused)")
        if ti.ischr() or ti.isblk():
            raise ArchiveError(f"{archive}: member {ti.name!r}: device file (refused)")
        if ti.isfifo():
            raise ArchiveError(f"{archive}: member {ti.name!r}: FIFO (refused)")
        if not (ti.isreg() or ti.isdir()):
            raise ArchiveError(f"{archive}: member {ti.name!r}: not a regular file (refused)")
        if name is None:
            continue
        out.append(_Member(name, ti.isdir(), ti.size, ti))
    return out


def _check_listing(archive: Path, members: list[_Member], limits: Limits) -> None:
    files = [m for m in members if not m.is_dir]
    if len(members) > limits.max_files:
        raise ArchiveError(f"{archive}: {len(members)} members, more than the limit of {limits.max_files}")
    seen: set[PurePosixPath] = set()
    total = 0
    for m in files:
        if m.name in seen:
            raise ArchiveError(f"{archive}: member {str(m.name)!r} appears twice (refused)")
        seen.add(m.name)
        if m.size > limits.max_file_bytes:
            raise ArchiveError(
                f"{archive}: member {str(m.name)!r} is {m.size} bytes, over the per-file limit of "
                f"{limits.max_file_bytes}"
            )
        total += m.size
        if total > limits.max_total_bytes:
            raise ArchiveError(
                f"{archive}: members add up to more than the limit of {limits.max_total_bytes} bytes"
            )


def _copy_limited(
    archive: Path, name: PurePosixPath, src: IO[bytes], dst: Path, limits: Limits, total: int
) -> int:
    written = 0
    with open(dst, "xb") as out:
        while block := src.read(_CHUNK):
            written += len(block)
            if written > limits.max_file_bytes:
                raise ArchiveError(
                    f"{archive}: member {str(name)!r} holds more than the per-file limit of {limits.max_file_bytes} bytes"
                )
            if total + written > limits.max_total_bytes:
                raise ArchiveError(
                    f"{archive}: members add up to more than the limit of {limits.max_total_bytes} bytes"
                )
            out.write(block)
    return written


@contextmanager
def _open_archive(archive: Path) -> Iterator[tuple[str, zipfile.ZipFile | tarfile.TarFile]]:
    if archive.is_dir():
        raise ArchiveError(f"{archive}: is a directory, not an archive (give the release's .zip or .tar file)")
    if not archive.is_file():
        raise ArchiveError(f"{archive}: archive not found")
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                yield "zip", zf
            return
        if tarfile.is_tarfile(str(archive)):
            with tarfile.open(archive, "r:*") as tf:
                yield "tar", tf
            return
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, ArchiveError):
            raise
        raise ArchiveError(f"{archive}: damaged archive ({exc.__class__.__name__}: {exc})") from exc
    raise ArchiveError(f"{archive}: not a zip or tar archive")


def safe_extract(archive: Path, dest: Path, limits: Limits = Limits()) -> int:
    """Extract ``archive`` into the existing folder ``dest`` under the module's invariants; returns bytes written."""
    dest = dest.resolve()
    total = 0
    with _open_archive(archive) as (kind, ar):
        try:
            if kind == "zip":
                assert isinstance(ar, zipfile.ZipFile)
                members = _zip_members(archive, ar)
            else:
                assert isinstance(ar, tarfile.TarFile)
                members = _tar_members(archive, ar)
            _check_listing(archive, members, limits)
            for m in members:
                target = dest.joinpath(*m.name.parts)
                if not target.resolve().is_relative_to(dest):  # belt and braces (e.g. a pre-existing link)
                    raise ArchiveError(f"{archive}: member {str(m.name)!r} would land outside {dest}")
                if m.is_dir:
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                if kind == "zip":
                    assert isinstance(ar, zipfile.ZipFile)
                    src_cm: IO[bytes] = ar.open(m.ref)  # type: ignore[arg-type]
                else:
                    assert isinstance(ar, tarfile.TarFile)
                    fobj = ar.extractfile(m.ref)  # type: ignore[arg-type]
                    if fobj is None:
                        raise ArchiveError(f"{archive}: member {str(m.name)!r} cannot be read")
                    src_cm = fobj
                with src_cm as src:
                    total += _copy_limited(archive, m.name, src, target, limits, total)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, RuntimeError) as exc:
            raise ArchiveError(f"{archive}: damaged archive ({exc.__class__.__name__}: {exc})") from exc
    return total


def _find_release_base(staging: Path, depth: int = 3) -> Path | None:
    """The folder inside ``staging`` that holds a release folder, searched breadth-first up to ``depth``."""
    level = [staging]
    for _ in range(depth + 1):
        for d in level:
            if any((d / n).is_dir() for n in _RELEASE_DIRS):
                return d
        level = sorted(c for d in level for c in d.iterdir() if c.is_dir() and not c.is_symlink())
    return None


_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp"})


def _check_images(archive: Path, staging: Path, base: Path) -> None:
    """Refuse the archive if a file named as an image under a release image folder is not an image (by its
    first bytes). A WebP named ``.png`` passes here; ``data verify`` reports that mismatch."""
    from vscbench.data.images import sniff_mime

    for d in _RELEASE_DIRS:
        src_dir = base / d
        if not src_dir.is_dir():
            continue
        for f in sorted(src_dir.rglob("*")):
            # files named as images must be images; other files (.DS_Store, notes) are not used by any item
            if f.is_file() and f.suffix.lower() in _IMAGE_SUFFIXES and sniff_mime(f) is None:
                member = f.relative_to(staging).as_posix()
                raise ArchiveError(
                    f"{archive}: member {member!r} is not an image (PNG, JPEG, GIF, WebP or BMP); "
                    "nothing imported"
                )


def import_archive(archive: Path, root: Path, limits: Limits = Limits()) -> ImportSummary:
    """Extract a release archive safely and move its image folders (and pinned metadata) under ``root``.

    Existing files of the same name are replaced. Metadata files in the archive are installed only when
    they match the pinned upstream SHA-256; otherwise they are skipped and reported.
    """
    archive = Path(archive).expanduser().resolve()
    root = writable_folder(Path(root).expanduser().resolve())
    summary = ImportSummary(archive=archive, root=root)
    staging = Path(tempfile.mkdtemp(prefix=".import-", dir=root))
    try:
        summary.bytes_written = safe_extract(archive, staging, limits)
        base = _find_release_base(staging)
        if base is None:
            raise ArchiveError(
                f"{archive}: holds neither {IMAGE_CENTRIC_DIR}/ nor {TEXT_CENTRIC_DIR}/ (not a VSCBench release)"
            )
        _check_images(archive, staging, base)  # every image checked before any is installed
        for d in _RELEASE_DIRS:
            src_dir = base / d
            if not src_dir.is_dir():
                continue
            n = 0
            for f in sorted(src_dir.rglob("*")):
                if not f.is_file():
                    continue
                target = root / d / f.relative_to(src_dir)
                with writing(target):
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(f, target)
                n += 1
            summary.files[d] = n
        for name in _RELEASE_FILES:
            f = base / name
            if not f.is_file():
                continue
            if sha256_file(f) == METADATA_SHA256[name]:
                with writing(root / name):
                    os.replace(f, root / name)
                summary.metadata.append(name)
            else:
                summary.skipped.append(f"{name} (differs from the pinned upstream copy; not installed)")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary
