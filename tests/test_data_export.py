"""`vscbench data export`: jsonl, parquet (with and without image bytes), Hugging Face datasets folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vscbench.cli import main
from vscbench.data import load_items, resolve_paths
from vscbench.data.export import EXPORT_COLUMNS
from vscbench.data.synthetic import subset_metadata, write_release_tree


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory, metadata_dir: Path) -> tuple[Path, Path]:
    meta = subset_metadata(metadata_dir, tmp_path_factory.mktemp("meta"), image_rows=2, text_rows=3)
    root = tmp_path_factory.mktemp("root")
    write_release_tree(resolve_paths(root, meta))
    return root, meta


def test_jsonl_full_metadata(metadata_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "items.jsonl"
    args = ["data", "export", "--metadata", str(metadata_dir), "--format", "jsonl", "--out", str(out)]
    assert main(args) == 0
    assert "wrote 4050 items as jsonl" in capsys.readouterr().out
    first = out.read_bytes()
    rows = [json.loads(line) for line in first.decode().splitlines()]
    assert len(rows) == 4050 and all(tuple(r) == EXPORT_COLUMNS for r in rows)
    items = load_items(resolve_paths(None, metadata_dir))
    assert [r["id"] for r in rows] == [i.id for i in items]
    fig = next(r for r in rows if r["id"] == "tc/125/figstep")
    assert (
        fig["xstest_type"] == "contrast_safe_targets"
        and fig["label"] == "unsafe"
        and fig["image"].endswith("vscbench_text_centric_images/figstep/125_fistep.png")
    )
    assert next(r for r in rows if r["id"] == "tc/000/text")["image"] is None
    assert main(args) == 0 and out.read_bytes() == first  # stable
    # filters
    assert main([*args, "--half", "text", "--setting", "figstep"]) == 0
    assert len(out.read_text().splitlines()) == 450


def test_parquet_with_image_bytes(small: tuple[Path, Path], tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    root, meta = small
    out = tmp_path / "x.parquet"
    base = [
        "data",
        "export",
        "--root",
        str(root),
        "--metadata",
        str(meta),
        "--format",
        "parquet",
        "--out",
        str(out),
    ]
    assert main(base) == 0
    t = pq.read_table(out)
    assert t.num_rows == 12 + 15 and t.schema.names == list(EXPORT_COLUMNS)
    assert main([*base, "--embed-images", "--half", "image"]) == 0
    t = pq.read_table(out)
    d = t.to_pylist()
    assert "image_bytes" in t.schema.names and len(d) == 12
    assert d[0]["image_bytes"] == Path(d[0]["image"]).read_bytes()


def test_hf_datasets_folder(
    small: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import datasets

    root, meta = small
    out = tmp_path / "hf"
    base = [
        "data",
        "export",
        "--root",
        str(root),
        "--metadata",
        str(meta),
        "--format",
        "hf",
        "--out",
        str(out),
    ]
    assert main([*base, "--half", "text"]) == 0
    ds = datasets.load_from_disk(str(out))
    assert len(ds) == 15 and isinstance(ds.features["image"], datasets.Image)
    by_id = {r["id"]: r for r in ds}
    assert by_id["tc/000/text"]["image"] is None
    assert by_id["tc/000/figstep"]["image"].size == (8, 8)  # bytes embedded, decodes
    assert main([*base, "--half", "text", "--setting", "search"]) == 0  # replaces its own earlier folder
    assert len(datasets.load_from_disk(str(out))) == 3
    capsys.readouterr()
    # a folder that is not an earlier export is never replaced
    other = tmp_path / "precious"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    base[-1] = str(other)
    assert main([*base, "--half", "text"]) == 2
    assert "not a datasets folder" in capsys.readouterr().err and (other / "notes.txt").is_file()


def test_hf_refuses_missing_images(
    metadata_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["data", "export", "--metadata", str(metadata_dir), "--root", str(tmp_path), "--format", "hf"]
        + ["--out", str(tmp_path / "hf"), "--setting", "figstep"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "0_fistep.png: image missing (450 missing in all)" in err[0]
    assert not (tmp_path / "hf").exists()
