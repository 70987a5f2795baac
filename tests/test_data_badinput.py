"""Bad metadata: each case gives one clear line naming file, row and column, a non-zero exit, no traceback.

The bad files are built here from the real metadata with openpyxl.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from vscbench.cli import main

IC = "vscbench_image_centric.xlsx"
TC = "vscbench_text_centric.xlsx"


def _meta_copy(metadata_dir: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in (IC, TC):
        shutil.copyfile(metadata_dir / name, dst / name)
    return dst


def _edit(path: Path, change: Callable[[Any], None]) -> None:
    wb = openpyxl.load_workbook(path)
    change(wb)
    wb.save(path)


def _run(meta: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["data", "items", "--metadata", str(meta)])
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1, cap.err
    return code, lines[0]


def _set(cell: str, value: object, name: str = IC) -> tuple[str, Callable[[Any], None]]:
    def change(wb: Any) -> None:
        wb.active[cell] = value

    return name, change


def _rename_header(col: str, new: str, name: str = IC) -> tuple[str, Callable[[Any], None]]:
    return _set(f"{col}1", new, name)


def _delete_column(idx: int, name: str = IC) -> tuple[str, Callable[[Any], None]]:
    def change(wb: Any) -> None:
        wb.active.delete_cols(idx)

    return name, change


def _wrong_sheets(name: str = TC) -> tuple[str, Callable[[Any], None]]:
    """The data moved to a sheet that lacks the header, next to an unrelated sheet."""

    def change(wb: Any) -> None:
        ws = wb.active
        ws.title = "Raw"
        ws.delete_rows(1)  # the header is gone: row 1 now holds data
        wb.create_sheet("Notes")["A1"] = "see the other sheet"

    return name, change


CASES: dict[str, tuple[tuple[str, Callable[[Any], None]], list[str]]] = {
    "missing-column": (_delete_column(2), [IC, "row 1", "lacks column(s) 'Prompt'"]),
    "renamed-column": (
        _rename_header("B", "prompt"),
        [IC, "row 1", "'Prompt'", "found 'prompt' for 'Prompt'"],
    ),
    "text-missing-column": (_delete_column(9, TC), [TC, "row 1", "'prompt_figstep'"]),
    "wrong-sheet": (_wrong_sheets(), [TC, "no sheet has the columns", "row 1", "sheets: Raw, Notes"]),
    "unknown-category": (
        _set("A5", "weapons"),
        [IC, "row 5", "column A (Category)", "unknown category 'weapons'"],
    ),
    "unknown-xstest-type": (
        _set("A9", "jokes", TC),
        [TC, "row 9", "column A (type)", "unknown XSTest type 'jokes'"],
    ),
    "number-cell": (_set("B7", 42), [IC, "row 7", "column B (Prompt)", "expected text, found int 42"]),
    "date-cell": (_set("E3", 3.5, TC), [TC, "row 3", "column E (object)", "expected text, found float"]),
    "slash-in-name": (_set("C4", "drugs/x.png"), [IC, "row 4", "column C (safe_img_0)", "plain file name"]),
    "backslash-in-name": (
        _set("H10", "..\\x.png"),
        [IC, "row 10", "column H (unsafe_img_2)", "plain file name"],
    ),
    "dotdot-name": (_set("J6", "..", TC), [TC, "row 6", "column J (figstep_img)", "plain file name"]),
    "empty-image-cell": (_set("D8", None), [IC, "row 8", "column D (safe_img_1)", "empty cell"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_metadata_is_one_line(
    case: str, metadata_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (name, change), expected = CASES[case]
    meta = _meta_copy(metadata_dir, tmp_path / "meta")
    _edit(meta / name, change)
    code, line = _run(meta, capsys)
    assert code == 2
    assert line.startswith("vscbench: error: ") and str(meta / name) in line
    for part in expected:
        assert part in line, line


def test_good_data_on_a_later_sheet_is_found(metadata_dir: Path, tmp_path: Path) -> None:
    meta = _meta_copy(metadata_dir, tmp_path / "meta")

    def change(wb: Any) -> None:
        wb.create_sheet("Readme", 0)["A1"] = "the data is on Sheet1"

    _edit(meta / IC, change)
    assert main(["data", "items", "--metadata", str(meta), "--half", "image", "--json"]) == 0


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.97])
def test_truncated_xlsx(
    cut: float, metadata_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    meta = _meta_copy(metadata_dir, tmp_path / "meta")
    data = (meta / TC).read_bytes()
    (meta / TC).write_bytes(data[: int(len(data) * cut)])
    code, line = _run(meta, capsys)
    assert code == 2 and str(meta / TC) in line and "not a readable .xlsx file" in line


def test_damaged_sheet_data(metadata_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Damage inside the worksheet XML surfaces only while rows are read (openpyxl read-only mode)."""
    import zipfile

    meta = tmp_path / "meta"
    _meta_copy(metadata_dir, meta)
    src = metadata_dir / IC
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(meta / IC, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            body = zin.read(info.filename)
            if info.filename == "xl/worksheets/sheet1.xml":
                body = body[: len(body) // 2] + b"<<<broken"
            zout.writestr(info, body)
    code, line = _run(meta, capsys)
    assert code == 2 and str(meta / IC) in line and "damaged data at sheet 'Sheet1' after row" in line


def test_no_traceback_in_a_real_process(metadata_dir: Path, tmp_path: Path) -> None:
    meta = _meta_copy(metadata_dir, tmp_path / "meta")
    _edit(meta / IC, _set("A5", "weapons")[1])
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "vscbench.cli",
            "data",
            "verify",
            "--metadata",
            str(meta),
            "--root",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        f"vscbench: error: {meta / IC}: row 5 column A (Category): unknown category 'weapons' "
        "(expected one of discrimination, drugs, illegal_activity, porngraphy, religion, violence)"
    ]
