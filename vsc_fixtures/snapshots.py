"""syrupy glue: one readable JSON file per case, per model, under ``tests_safety/__snapshots__/<model>/``.

The format and the comparison are the engine's (:mod:`vscbench.suite.snapshots`). syrupy stores, finds, updates
(``--snapshot-update``) and merges xdist workers' reports; the suite decides what a difference means: in
compare mode this extension reports every existing snapshot as matching (the case itself classifies it as
same, flip or stale), in update mode it compares bytes, so only changed files are rewritten.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path
from typing import Any

from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

SNAPSHOT_DIR = "__snapshots__"


def model_dir_name(given: str) -> str:
    """A folder name for a model: the alias or spec as it is when it is a safe name (``tiny``), else made
    readable and safe plus a short hash of the original (``openai_gpt-4o-mini-1a2b3c4d``); a local checkpoint
    by folder name + hash of its path."""
    p = Path(given).expanduser()
    if p.is_dir():
        digest = hashlib.sha256(str(p.resolve()).encode("utf-8")).hexdigest()[:8]
        return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', p.resolve().name)}-{digest}"
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", given).strip("_.") or "model"
    if name != given:  # sanitising changed it: two specs (a/b, a_b; x/.., x) never share a folder
        name += "-" + hashlib.sha256(given.encode("utf-8")).hexdigest()[:8]
    return name


class VscSnapshotExtension(SingleFileSnapshotExtension):
    _write_mode = WriteMode.TEXT
    file_extension = "json"
    #: set by the plugin at configure time
    model_dir = "model"
    update = False

    @classmethod
    def dirname(cls, *, test_location: Any) -> str:
        base = Path(test_location.filepath).parent / SNAPSHOT_DIR / cls.model_dir
        return str(base / test_location.basename)

    def serialize(self, data: Any, **kwargs: Any) -> Any:
        return str(data)

    def matches(self, *, serialized_data: Any, snapshot_data: Any) -> bool:
        return bool(serialized_data == snapshot_data) if self.update else True

    @classmethod
    def write_snapshot(cls, **kwargs: Any) -> None:
        """syrupy's write, without its per-file warning that the model folder is not the test's basename
        (it is by design: ``<model>/<test file>/<case>.json``) and that ``/`` was stripped from the case id."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"\s*Can not relate snapshot")
            super().write_snapshot(**kwargs)


def snapshot_path(test_file: str | Path, model_dir: str, case_name: str) -> Path:
    """Where the extension keeps a case's file (``case_name``: syrupy's cleaned test name)."""
    return Path(test_file).parent / SNAPSHOT_DIR / model_dir / Path(test_file).stem / f"{case_name}.json"
