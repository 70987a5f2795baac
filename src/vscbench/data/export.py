"""Export items for other harnesses: JSON Lines, Parquet, or a Hugging Face ``datasets`` folder.

Invariants: one row per item, in canonical item order, with the columns of :data:`EXPORT_COLUMNS`
(``image`` is the file path, or None for the text-only baseline). Formats that carry image bytes
(``hf``, ``parquet`` with ``embed``) refuse to run while an image is missing, naming it.
Output appears atomically (written beside the target, then renamed).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vscbench.data.paths import writable_folder, writing
from vscbench.errors import VscbenchError, require
from vscbench.types import Item

EXPORT_FORMATS: tuple[str, ...] = ("jsonl", "parquet", "hf")
#: Column order of every export.
EXPORT_COLUMNS: tuple[str, ...] = (
    "id",
    "half",
    "label",
    "category",
    "xstest_type",
    "setting",
    "query",
    "image",
    "query_id",
    "pair",
    "row",
    "slot",
    "image_name",
    "note",
)


@dataclass(frozen=True)
class ExportSummary:
    out: Path
    format: str
    rows: int
    #: Items whose image file is not present (an item, not a file: two items may name one file).
    images_missing: int
    #: Distinct image files not present (what ``vscbench data verify`` counts as missing).
    image_files_missing: int = 0

    def note(self) -> str:
        """'' when every image is present, else how many items and distinct files lack their image."""
        if not self.images_missing:
            return ""
        if self.image_files_missing == self.images_missing:
            return f"{self.images_missing} image files not present"
        return (
            f"{self.images_missing} items name an image that is not present: "
            f"{self.image_files_missing} distinct files, as data verify counts them"
        )


def item_row(it: Item) -> dict[str, Any]:
    """The export row of one item (keys in :data:`EXPORT_COLUMNS` order)."""
    d = it.to_dict()
    return {c: d[c] for c in EXPORT_COLUMNS}


def _missing(items: Sequence[Item]) -> list[str]:
    return [i.image for i in items if i.image is not None and not Path(i.image).is_file()]


def _require_images(items: Sequence[Item], fmt: str) -> None:
    miss = _missing(items)
    if miss:
        raise VscbenchError(
            f"{miss[0]}: image missing ({len(miss)} missing in all); {fmt} export carries image bytes: "
            "render or fetch the images first, or narrow with --half/--setting"
        )


def _atomic_file(out: Path, write: Any) -> None:
    writable_folder(out.parent, out)
    with writing(out):
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
        os.close(fd)
        try:
            write(Path(tmp))
            os.replace(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def export_jsonl(items: Sequence[Item], out: Path) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            for it in items:
                f.write(json.dumps(item_row(it), ensure_ascii=False) + "\n")

    _atomic_file(out, write)


def export_parquet(items: Sequence[Item], out: Path, embed: bool = False) -> None:
    """Parquet via pyarrow; with ``embed`` an ``image_bytes`` column holds each file's bytes."""
    pa = require("pyarrow", "parquet")
    pq = require("pyarrow.parquet", "parquet")
    if embed:
        _require_images(items, "parquet --embed-images")
    rows = [item_row(i) for i in items]
    fields = [
        pa.field("id", pa.string()),
        pa.field("half", pa.string()),
        pa.field("label", pa.string()),
        pa.field("category", pa.string()),
        pa.field("xstest_type", pa.string()),
        pa.field("setting", pa.string()),
        pa.field("query", pa.string()),
        pa.field("image", pa.string()),
        pa.field("query_id", pa.string()),
        pa.field("pair", pa.list_(pa.string())),
        pa.field("row", pa.int64()),
        pa.field("slot", pa.int64()),
        pa.field("image_name", pa.string()),
        pa.field("note", pa.string()),
    ]
    cols: dict[str, list[Any]] = {c: [r[c] for r in rows] for c in EXPORT_COLUMNS}
    if embed:
        fields.append(pa.field("image_bytes", pa.binary()))
        cols["image_bytes"] = [Path(i.image).read_bytes() if i.image else None for i in items]
    table = pa.table(cols, schema=pa.schema(fields))
    _atomic_file(out, lambda tmp: pq.write_table(table, str(tmp)))


def export_hf(items: Sequence[Item], out: Path) -> None:
    """A ``datasets`` folder (``save_to_disk``) whose ``image`` column is an ``Image`` feature (bytes embedded)."""
    ds_mod = require("datasets", "datasets")
    _require_images(items, "hf")
    rows = [item_row(i) for i in items]
    features = ds_mod.Features(
        {
            "id": ds_mod.Value("string"),
            "half": ds_mod.Value("string"),
            "label": ds_mod.Value("string"),
            "category": ds_mod.Value("string"),
            "xstest_type": ds_mod.Value("string"),
            "setting": ds_mod.Value("string"),
            "query": ds_mod.Value("string"),
            "image": ds_mod.Image(),
            "query_id": ds_mod.Value("string"),
            "pair": ds_mod.Sequence(ds_mod.Value("string")),
            "row": ds_mod.Value("int64"),
            "slot": ds_mod.Value("int64"),
            "image_name": ds_mod.Value("string"),
            "note": ds_mod.Value("string"),
        }
    )
    data = {c: [r[c] for r in rows] for c in EXPORT_COLUMNS}
    data["image"] = [{"path": p, "bytes": Path(p).read_bytes()} if p else None for p in data["image"]]
    if out.exists() and not (out.is_dir() and (out / "state.json").is_file()):
        raise VscbenchError(f"{out}: exists and is not a datasets folder written earlier; choose a new --out")
    if hasattr(ds_mod, "disable_progress_bars"):
        ds_mod.disable_progress_bars()  # a CLI prints one summary line, not a progress bar
    ds = ds_mod.Dataset.from_dict(data, features=features)
    writable_folder(out.parent, out)
    with writing(out):
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            ds.save_to_disk(str(tmp / "ds"))
            if out.exists():
                shutil.rmtree(out)
            os.replace(tmp / "ds", out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def export_items(items: Sequence[Item], fmt: str, out: Path, embed: bool = False) -> ExportSummary:
    """Write ``items`` to ``out`` in ``fmt`` (one of :data:`EXPORT_FORMATS`)."""
    if not items:
        raise VscbenchError("no items to export (check --half/--setting)")
    out = Path(out).expanduser()
    if fmt in ("jsonl", "parquet") and out.is_dir():
        raise VscbenchError(f"{out}: is a folder; --format {fmt} writes one file")
    writable_folder(out.parent, out)  # fail before reading any image bytes
    if fmt == "jsonl":
        if embed:
            raise VscbenchError("--embed-images applies to --format parquet (hf always embeds)")
        export_jsonl(items, out)
    elif fmt == "parquet":
        export_parquet(items, out, embed)
    elif fmt == "hf":
        export_hf(items, out)
    else:
        raise VscbenchError(f"--format {fmt!r}: expected one of {', '.join(EXPORT_FORMATS)}")
    miss = _missing(items)
    return ExportSummary(
        out=out, format=fmt, rows=len(items), images_missing=len(miss), image_files_missing=len(set(miss))
    )
