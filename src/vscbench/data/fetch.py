"""Download the official release: the two metadata files (pinned, hash-checked) and the image archive.

Invariants:

* metadata comes from the upstream repository at one pinned commit, and a file is installed only when its
  SHA-256 equals the pinned hash (a mismatch leaves the root untouched and names the URL);
* downloads go to a temporary file beside the target and are renamed into place: never a half file;
* the image archive is extracted by :func:`vscbench.data.archive.import_archive` (safe extraction).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from vscbench.data.archive import ImportSummary, Limits, import_archive
from vscbench.data.paths import METADATA_SHA256, writable_folder, writing  # the pinned hashes live in paths
from vscbench.errors import VscbenchError, require
from vscbench.hashing import sha256_file

UPSTREAM_REPO = "jiahuigeng/VSCBench"
#: The upstream commit the metadata is pinned to (short form 426fa1f).
UPSTREAM_COMMIT = "426fa1f5b3ccce639ac5cbc593d887f166fc12d9"
RAW_BASE_URL = f"https://raw.githubusercontent.com/{UPSTREAM_REPO}/{UPSTREAM_COMMIT}"
#: Google Drive file id of the full dataset archive, from the upstream README at :data:`UPSTREAM_COMMIT`
#: ("Google Drive - VSCBench Full Dataset"). Override with ``--drive-id`` if upstream moves it.
DRIVE_FILE_ID = "1U6l3XvoInLJeQTMcmjySADvmwUs3ifnG"
#: Refuse metadata downloads larger than this (the real files are ~40 and ~60 KB).
MAX_METADATA_BYTES = 16 * 1024**2


@dataclass(frozen=True)
class FetchedFile:
    """One metadata file: where it is, its hash, and whether it was downloaded or already in place."""

    name: str
    path: Path
    sha256: str
    action: str  # "downloaded" | "kept"


def _download(url: str, timeout: float, limit: int) -> bytes:
    req = urllib.request.Request(url, headers={"User-Agent": "vscbench"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            data: bytes = resp.read(limit + 1)
    except urllib.error.HTTPError as exc:
        raise VscbenchError(f"{url}: download failed (HTTP {exc.code} {exc.reason})") from exc
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise VscbenchError(f"{url}: download failed ({reason})") from exc
    if len(data) > limit:
        raise VscbenchError(f"{url}: more than {limit} bytes; refused")
    return data


def fetch_metadata(
    root: Path, base_url: str = RAW_BASE_URL, force: bool = False, timeout: float = 60.0
) -> list[FetchedFile]:
    """Download the two metadata files into ``root`` unless a copy with the pinned hash is already there."""
    root = writable_folder(Path(root).expanduser())
    out: list[FetchedFile] = []
    for name, expected in METADATA_SHA256.items():
        target = root / name
        if not force and target.is_file() and sha256_file(target) == expected:
            out.append(FetchedFile(name, target, expected, "kept"))
            continue
        url = f"{base_url.rstrip('/')}/{name}"
        data = _download(url, timeout, MAX_METADATA_BYTES)
        got = hashlib.sha256(data).hexdigest()
        if got != expected:
            raise VscbenchError(
                f"{url}: SHA-256 {got} differs from the pinned {expected} (upstream {UPSTREAM_COMMIT[:7]}); "
                f"{target} not written"
            )
        with writing(target):
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=root)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        out.append(FetchedFile(name, target, got, "downloaded"))
    return out


def fetch_images(root: Path, drive_id: str = DRIVE_FILE_ID, limits: Limits = Limits()) -> ImportSummary:
    """Download the image archive from Google Drive (through ``gdown``) and import it safely into ``root``."""
    gdown = require("gdown", "fetch")
    root = writable_folder(Path(root).expanduser())
    with tempfile.TemporaryDirectory(prefix=".download-", dir=root) as tmp:
        target = Path(tmp) / "vscbench_images.archive"
        try:
            got = gdown.download(id=drive_id, output=str(target), quiet=False)
        except Exception as exc:  # gdown raises assorted errors (quota, permission, network)
            raise VscbenchError(
                f"Google Drive file {drive_id}: download failed ({exc.__class__.__name__}: {exc}); download it by "
                "hand from the link in the upstream README and run: vscbench data import ARCHIVE"
            ) from exc
        if not got or not target.is_file():
            raise VscbenchError(
                f"Google Drive file {drive_id}: download failed; download it by hand and run: "
                "vscbench data import ARCHIVE"
            )
        return import_archive(target, root, limits)
