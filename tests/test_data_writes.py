"""Every `vscbench data` writer turns an unwritable destination into one line naming it (exit 2), before it
does any work; export and verify count missing images the same way (files vs items, both named)."""

from __future__ import annotations

import errno
import io
import zipfile
from pathlib import Path

import pytest

from vscbench.cli import main
from vscbench.data import load_items, resolve_paths
from vscbench.data.paths import writable_folder, writing
from vscbench.data.synthetic import subset_metadata, tiny_image_bytes
from vscbench.errors import VscbenchError

PROC = Path("/proc")
needs_proc = pytest.mark.skipif(not (PROC / "self").exists(), reason="needs Linux /proc (refuses new files)")


@pytest.fixture(scope="module")
def small_meta(tmp_path_factory: pytest.TempPathFactory, metadata_dir: Path) -> Path:
    return subset_metadata(metadata_dir, tmp_path_factory.mktemp("meta"), image_rows=2, text_rows=3)


@pytest.fixture
def blocker(tmp_path: Path) -> Path:
    """A plain file: nothing can be written 'under' it, even by root (chmod would not stop root)."""
    f = tmp_path / "blocker"
    f.write_text("a file, not a folder\n")
    return f


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "hf"])
def test_export_under_a_file_is_one_line(
    small_meta: Path, blocker: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = blocker / f"items.{fmt}"
    assert main(["data", "export", "--metadata", str(small_meta), "--format", fmt, "--out", str(out)]) == 2
    line = _one_line(capsys)
    assert f"{out}: cannot write it" in line and "is a file, not a folder" in line


@needs_proc
def test_export_to_proc_is_one_line(small_meta: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = PROC / "vscbench-x.jsonl"
    assert main(["data", "export", "--metadata", str(small_meta), "--format", "jsonl", "--out", str(out)]) == 2
    assert f"{out}: cannot write it" in _one_line(capsys)


def test_render_into_an_unwritable_out_renders_nothing(
    small_meta: Path, blocker: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = blocker / "out"
    args = ["data", "render", "--metadata", str(small_meta), "--root", str(tmp_path / "root"), "--out", str(out)]
    assert main([*args, "--jobs", "2"]) == 2
    line = _one_line(capsys)
    assert str(out) in line and "cannot write" in line
    assert not (tmp_path / "root").exists()


def test_fetch_and_import_into_an_unwritable_root(
    blocker: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = blocker / "root"
    # the folder is checked before any download: the unreachable mirror is never the reported problem
    code = main(["data", "fetch", "--root", str(root), "--base-url", "http://127.0.0.1:9", "--metadata-only"])
    assert code == 2
    line = _one_line(capsys)
    assert f"{root}: cannot write here" in line and "download" not in line

    arc = tmp_path / "release.zip"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("vscbench_image_centric_images/drugs/safe_drugs_0_0.png", tiny_image_bytes("PNG"))
    arc.write_bytes(buf.getvalue())
    assert main(["data", "import", str(arc), "--root", str(root)]) == 2
    assert f"{root}: cannot write here" in _one_line(capsys)


@needs_proc
def test_writable_folder_probes_a_real_write() -> None:
    # /proc exists and is a folder, yet refuses new files: only a real write attempt finds that out
    with pytest.raises(VscbenchError, match="^/proc: cannot write here"):
        writable_folder(PROC)


def test_writable_folder_creates_and_leaves_nothing(tmp_path: Path) -> None:
    f = writable_folder(tmp_path / "a" / "b")
    assert f.is_dir() and list(f.iterdir()) == []


def test_a_write_that_fails_midway_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vscbench.utility.synthetic import make_synthetic

    def full(self: Path, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(VscbenchError, match=r"cannot write it \(No space left on device\)"):
        make_synthetic(tmp_path / "syn", 3)
    target = tmp_path / "x.bin"
    with pytest.raises(VscbenchError, match=r"x\.bin: cannot write it"), writing(target):
        target.write_bytes(b"")


def test_export_and_verify_agree_on_missing_images(
    metadata_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "empty-root"
    items = load_items(resolve_paths(root, metadata_dir))
    named = [i.image for i in items if i.image is not None]
    n_items, n_files = len(named), len(set(named))
    assert n_items > n_files  # some files are named by two items (see data verify's duplicates)

    out = tmp_path / "items.jsonl"
    base = ["--root", str(root), "--metadata", str(metadata_dir)]
    assert main(["data", "export", *base, "--format", "jsonl", "--out", str(out)]) == 0
    exported = capsys.readouterr().out
    assert f"{n_items} items name an image that is not present: {n_files} distinct files" in exported

    assert main(["data", "verify", *base]) == 1
    verified, err = capsys.readouterr()
    both = f"{n_files} image file(s) missing (named by {n_items} items)"
    assert f"NOT whole: {both}" in verified and both in err
