"""The one way to hash a file: SHA-256, read in 1 MiB blocks so memory stays flat for any file size."""

from __future__ import annotations

import hashlib
import os

#: Bytes read per block when hashing a file.
BLOCK_SIZE = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of the file's bytes; equals ``hashlib.sha256(Path(path).read_bytes()).hexdigest()``."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(BLOCK_SIZE), b""):
            h.update(block)
    return h.hexdigest()
