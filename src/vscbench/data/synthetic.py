"""Small stand-ins for the official release, for tests and demos (no network, no official images).

* :func:`subset_metadata` writes the first rows of the real metadata into new .xlsx files (same columns).
* :func:`write_release_tree` writes a tiny image for every file the metadata names, in the format its
  extension says, so that ``verify`` sees a whole release.

The generated images are placeholders (flat colour, 8x8 px); they say nothing about model behaviour.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from vscbench.data.metadata import IMAGE_COLUMNS, TEXT_COLUMNS, read_image_centric, read_text_centric
from vscbench.data.paths import IMAGE_CENTRIC_XLSX, TEXT_CENTRIC_XLSX, DataPaths

_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".gif": "GIF", ".bmp": "BMP"}
_TEXT_FOLDERS = {
    "search_img": "search",
    "typography_img": "typography",
    "concat_img": "concat",
    "figstep_img": "figstep",
}


def tiny_image_bytes(fmt: str, colour: tuple[int, int, int] = (200, 30, 30), size: int = 8) -> bytes:
    """A ``size`` x ``size`` flat image encoded as ``fmt`` (a Pillow format name such as ``PNG``)."""
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format=fmt)
    return buf.getvalue()


def subset_metadata(
    src: Path, dst: Path, image_rows: int | None = None, text_rows: int | None = None
) -> Path:
    """Write the first ``image_rows`` / ``text_rows`` data rows of the metadata in ``src`` into ``dst``.

    ``None`` keeps every row. Columns and their order are those the readers require. Returns ``dst``.
    """
    import openpyxl

    dst.mkdir(parents=True, exist_ok=True)
    for name, cols, reader, n in (
        (IMAGE_CENTRIC_XLSX, IMAGE_COLUMNS, read_image_centric, image_rows),
        (TEXT_CENTRIC_XLSX, TEXT_COLUMNS, read_text_centric, text_rows),
    ):
        rows = reader(src / name)
        wb = openpyxl.Workbook()
        ws = wb.active
        ws.title = "Sheet1"
        ws.append(list(cols))
        for r in rows if n is None else rows[:n]:
            ws.append([r.values[c] if r.values[c] != "" else None for c in cols])
        wb.save(dst / name)
    return dst


def release_files(paths: DataPaths) -> dict[Path, str]:
    """Every image file the metadata under ``paths`` names (release layout, duplicates once) -> its setting."""
    out: dict[Path, str] = {}
    for r in read_image_centric(paths.image_centric_xlsx):
        cat = r.values["Category"].strip()
        for c in IMAGE_COLUMNS[2:]:
            out[paths.image_centric_images / cat / r.values[c]] = "image"
    for r in read_text_centric(paths.text_centric_xlsx):
        for c, folder in _TEXT_FOLDERS.items():
            out[paths.text_image(folder, r.values[c])] = folder
    return out


def write_release_tree(paths: DataPaths, settings: tuple[str, ...] | None = None) -> list[Path]:
    """Write a tiny placeholder image for every file the metadata names (or only those of ``settings``:
    ``image``, ``search``, ``typography``, ``concat``, ``figstep``).

    Each file's bytes are in the format its extension names. Returns the paths written.
    """
    cache: dict[str, bytes] = {}
    written: list[Path] = []
    for p, setting in release_files(paths).items():
        if settings is not None and setting not in settings:
            continue
        fmt = _FORMATS.get(p.suffix.lower(), "PNG")
        data = cache.setdefault(fmt, tiny_image_bytes(fmt))
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        written.append(p)
    return written
