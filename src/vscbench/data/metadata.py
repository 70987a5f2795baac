"""Read and validate the two VSCBench metadata spreadsheets.

Every problem is reported as one :class:`MetadataError` line naming the file, the row and the column.
"""

from __future__ import annotations

import zipfile
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vscbench.errors import VscbenchError

IMAGE_COLUMNS: tuple[str, ...] = (
    "Category",
    "Prompt",
    "safe_img_0",
    "safe_img_1",
    "safe_img_2",
    "unsafe_img_0",
    "unsafe_img_1",
    "unsafe_img_2",
)
TEXT_COLUMNS: tuple[str, ...] = (
    "type",
    "focus",
    "prompt_origin",
    "prompt_mm",
    "object",
    "search_img",
    "typography_img",
    "concat_img",
    "prompt_figstep",
    "figstep_img",
)
#: Source spelling -> our spelling.
SOURCE_CATEGORIES: dict[str, str] = {
    "drugs": "drugs",
    "violence": "violence",
    "illegal_activity": "illegal_activity",
    "religion": "religion",
    "porngraphy": "pornography",
    "pornography": "pornography",
    "discrimination": "discrimination",
}
XSTEST_TYPES: frozenset[str] = frozenset(
    {
        "homonyms",
        "contrast_homonyms",
        "figurative_language",
        "contrast_figurative_language",
        "safe_targets",
        "contrast_safe_targets",
        "safe_contexts",
        "contrast_safe_contexts",
        "definitions",
        "contrast_definitions",
        "nons_group_real_discr",
        "real_group_nons_discr",
        "contrast_discr",
        "historical_events",
        "contrast_historical_events",
        "privacy_public",
        "privacy_fictional",
        "contrast_privacy",
    }
)
#: Columns holding image file names (checked for path separators and ``..``).
IMAGE_NAME_COLUMNS = frozenset(
    {
        "safe_img_0",
        "safe_img_1",
        "safe_img_2",
        "unsafe_img_0",
        "unsafe_img_1",
        "unsafe_img_2",
        "search_img",
        "typography_img",
        "concat_img",
        "figstep_img",
    }
)
#: Columns that may be blank: a blank query is kept, flagged and not sent (see items.py).
MAY_BE_BLANK = frozenset({"Prompt", "focus"})


class MetadataError(VscbenchError):
    """The metadata file is malformed."""


@dataclass(frozen=True)
class MetaRow:
    """One data row; ``row`` is the spreadsheet row number (header is row 1)."""

    row: int
    values: dict[str, str]
    #: Column name -> spreadsheet column letter, for messages (empty when not read from a sheet).
    letters: dict[str, str] = field(default_factory=dict, compare=False, repr=False)


def _column_letter(index: int) -> str:
    from openpyxl.utils import get_column_letter

    return str(get_column_letter(index + 1))


def read_sheet(path: Path, required: tuple[str, ...]) -> list[MetaRow]:
    """Read the first sheet of ``path`` whose header holds every ``required`` column."""
    import openpyxl

    if not path.is_file():
        raise MetadataError(f"{path}: metadata file not found")
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, EOFError) as exc:
        raise MetadataError(
            f"{path}: not a readable .xlsx file (truncated or corrupt: {exc.__class__.__name__})"
        ) from exc
    except Exception as exc:  # openpyxl raises assorted errors on damaged workbooks
        raise MetadataError(f"{path}: not a readable .xlsx file ({exc.__class__.__name__}: {exc})") from exc
    at = "row 1"
    try:
        found: list[str] = []
        for ws in wb.worksheets:
            at = f"sheet '{ws.title}' row 1"
            rows = ws.iter_rows(values_only=True)
            try:
                header_raw = next(rows)
            except StopIteration:
                found.append(f"{ws.title} (empty)")
                continue
            header = [str(h).strip() if h is not None else "" for h in header_raw]
            missing = [c for c in required if c not in header]
            if missing:
                found.append(ws.title)
                if len(wb.worksheets) == 1:
                    near = _near_misses(missing, header)
                    raise MetadataError(
                        f"{path}: sheet '{ws.title}' row 1 lacks column(s) {', '.join(repr(m) for m in missing)}"
                        + (f" (found {near})" if near else "")
                    )
                continue
            index = {c: header.index(c) for c in required}
            letters = {c: _column_letter(ci) for c, ci in index.items()}
            out: list[MetaRow] = []
            for rownum, raw in enumerate(rows, start=2):
                at = f"sheet '{ws.title}' after row {rownum - 1}"
                if raw is None or all(v is None or (isinstance(v, str) and not v.strip()) for v in raw):
                    continue  # trailing empty rows
                values: dict[str, str] = {}
                for col, ci in index.items():
                    v: Any = raw[ci] if ci < len(raw) else None
                    values[col] = _cell(path, ws.title, rownum, ci, col, v)
                out.append(MetaRow(rownum, values, letters))
            return out
        raise MetadataError(
            f"{path}: no sheet has the columns {', '.join(required)} in row 1 "
            f"(sheets: {', '.join(found) or 'none'})"
        )
    except MetadataError:
        raise
    except Exception as exc:  # read-only mode parses lazily: damaged XML/zip data surfaces while iterating
        raise MetadataError(
            f"{path}: not a readable .xlsx file (damaged data at {at}: {exc.__class__.__name__}: {exc})"
        ) from exc
    finally:
        wb.close()


def _near_misses(missing: list[str], header: list[str]) -> str:
    low = {h.lower(): h for h in header}
    hits = [f"{low[m.lower()]!r} for {m!r}" for m in missing if m.lower() in low]
    return ", ".join(hits)


def _cell(path: Path, sheet: str, row: int, ci: int, col: str, v: Any) -> str:
    where = f"{path}: sheet '{sheet}' row {row} column {_column_letter(ci)} ({col})"
    if v is None:
        if col in MAY_BE_BLANK:
            return ""
        raise MetadataError(f"{where}: empty cell")
    if not isinstance(v, str):
        raise MetadataError(f"{where}: expected text, found {type(v).__name__} {v!r}")
    if col in IMAGE_NAME_COLUMNS:
        name = v.strip()
        if not name:
            raise MetadataError(f"{where}: empty image name")
        if "/" in name or "\\" in name or ".." in name or name.startswith("."):
            raise MetadataError(
                f"{where}: image name {name!r} must be a plain file name (no '/', '\\' or '..')"
            )
        return name
    if not v.strip() and col not in MAY_BE_BLANK:
        raise MetadataError(f"{where}: empty cell")
    return v


def _check_known(
    path: Path, rows: list[MetaRow], column: str, known: Collection[str], what: str, hint: str = ""
) -> list[MetaRow]:
    """``rows`` unchanged if every (stripped) ``column`` value is in ``known``; else an error naming the cell."""
    for r in rows:
        v = r.values[column].strip()
        if v not in known:
            raise MetadataError(
                f"{path}: row {r.row} column {r.letters.get(column, 'A')} ({column}): unknown {what} {v!r}{hint}"
            )
    return rows


def read_image_centric(path: Path) -> list[MetaRow]:
    expected = ", ".join(sorted(set(SOURCE_CATEGORIES) - {"pornography"}))
    rows = read_sheet(path, IMAGE_COLUMNS)
    return _check_known(
        path, rows, "Category", SOURCE_CATEGORIES, "category", f" (expected one of {expected})"
    )


def read_text_centric(path: Path) -> list[MetaRow]:
    return _check_known(path, read_sheet(path, TEXT_COLUMNS), "type", XSTEST_TYPES, "XSTest type")
