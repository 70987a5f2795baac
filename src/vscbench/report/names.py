"""How a run's model is named in reports: a local checkpoint by its folder name and a short config hash.

The stored model spec (``hf//home/me/ckpt/tiny-vlm``) keeps the full local path; it belongs to the run's
manifest, not to a report someone may share. :func:`model_label` turns it into ``hf/tiny-vlm@1a2b3c4d``:
the folder name, then the first 8 hex digits of the SHA-256 of the folder's ``config.json`` (so two
different checkpoints in folders of the same name stay apart). Hub ids (``hf/ORG/NAME``) and API models
(``openai/gpt-4o``) are shown as given.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

#: Hex digits of the config hash shown after the folder name.
HASH_CHARS = 8


def is_local_path(name: str) -> bool:
    """Whether the model part of a spec names a local folder rather than a hub id or an API model: an
    absolute, ``./``, ``../`` or ``~`` path, or a relative one that is a folder here."""
    if name.startswith(("/", "./", "../", "~")):
        return True
    try:
        return Path(name).is_dir()
    except OSError:
        return False


def config_hash(folder: Path) -> str:
    """First :data:`HASH_CHARS` hex digits of the SHA-256 of ``folder/config.json``; of the folder's absolute
    path when that file cannot be read (a checkpoint since moved or deleted)."""
    try:
        data = (folder / "config.json").read_bytes()
    except OSError:
        data = str(folder.expanduser().absolute()).encode("utf-8")
    return hashlib.sha256(data).hexdigest()[:HASH_CHARS]


def model_label(spec: str) -> str:
    """The name a report shows for the model spec ``spec`` (see the module docstring); never a full path."""
    provider, sep, name = spec.partition("/")
    if not sep or not name or not is_local_path(name):
        return spec
    folder = Path(name.rstrip("/\\")).expanduser()
    base = folder.name or "model"
    return f"{provider}/{base}@{config_hash(folder)}"
