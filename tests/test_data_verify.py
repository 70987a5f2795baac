"""`vscbench data verify` on a release tree built here: real metadata, tiny images named as in the metadata."""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from PIL import Image

from conftest import SHARED_DATA
from vscbench.cli import main
from vscbench.data import resolve_paths
from vscbench.data.images import check_image, sniff_mime
from vscbench.data.synthetic import subset_metadata, tiny_image_bytes, write_release_tree
from vscbench.data.verify import REPORT_KEYS, verify_release

REAL_WEBP = SHARED_DATA / "images" / "mossbench-sample" / "benign_131.png"  # a WebP file named .png


def _noise_png() -> bytes:
    """A 64x64 PNG that does not compress away, so that cutting it leaves a valid header and broken data."""
    import io
    import random

    rnd = random.Random(0)
    im = Image.frombytes("RGB", (64, 64), bytes(rnd.randrange(256) for _ in range(64 * 64 * 3)))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory, metadata_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("release")
    written = write_release_tree(resolve_paths(root, metadata_dir))
    assert len(written) == 1799 + 449 + 450 * 3  # one duplicate name in each half
    return root


@pytest.fixture(scope="module")
def small_meta(tmp_path_factory: pytest.TempPathFactory, metadata_dir: Path) -> Path:
    # rows 2-22 of the image half (drugs 0-20) and rows 2-6 of the text half
    return subset_metadata(metadata_dir, tmp_path_factory.mktemp("meta"), image_rows=21, text_rows=5)


@pytest.fixture(scope="module")
def small_release(tmp_path_factory: pytest.TempPathFactory, small_meta: Path) -> Path:
    root = tmp_path_factory.mktemp("small_release")
    write_release_tree(resolve_paths(root, small_meta))
    return root


@contextmanager
def _altered(path: Path, data: bytes | None) -> Iterator[None]:
    """Replace (or, with None, remove) ``path`` for the duration of the block."""
    saved = path.read_bytes()
    try:
        if data is None:
            path.unlink()
        else:
            path.write_bytes(data)
        yield
    finally:
        path.write_bytes(saved)


def _verify(root: Path, meta: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    code = main(["data", "verify", "--root", str(root), "--metadata", str(meta), *extra])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_whole_release_passes_with_counts(
    release: Path, metadata_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _verify(release, metadata_dir, capsys, "--json")
    assert code == 0, err
    first_json = out
    d = json.loads(out)
    assert tuple(d) == REPORT_KEYS
    assert d["ok"] is True and d["items"] == {"image": 1800, "text": 2250} and d["benchmark_items"] == 3600
    assert d["counts"]["image"]["by_category"]["pornography"] == {"safe": 150, "unsafe": 150}
    assert d["counts"]["text"]["by_setting"]["figstep"] == {"safe": 250, "unsafe": 200}
    assert sum(d["counts"]["text"]["queries_by_type"].values()) == 450
    assert d["counts"]["by_half_label"] == {
        "image": {"safe": 900, "unsafe": 900},
        "text": {"safe": 1250, "unsafe": 1000},
    }
    assert all(s["runnable"] for s in d["settings"].values())
    assert d["runnable"]["items"] == 4050 and d["runnable"]["blank_query_items_not_sent"] == 12
    assert [(b["row"], b["query_id"]) for b in d["blank_queries"]] == [
        (268, "ic/discrimination/016"),
        (287, "ic/discrimination/035"),
    ]
    assert "never sent" in d["blank_queries"][0]["action"]
    dups = {x["name"]: x for x in d["duplicates"]}
    assert dups["safe_violence_42_1.png"]["rows"] == [94]
    assert dups["safe_violence_42_1.png"]["columns"] == ["safe_img_0", "safe_img_1"]
    assert dups["d_189_4.png"]["rows"] == [130, 191]
    assert d["missing"] == [] and d["bad_images"] == [] and d["problems"] == []
    assert all(m["matches_upstream"] for m in d["metadata"].values())
    # the human report says the same
    code, out, _ = _verify(release, metadata_dir, capsys)
    assert code == 0 and "result: the release is whole" in out
    assert "blank query: row 268 (ic/discrimination/016" in out and "never sent to a model" in out
    assert "duplicate image name: safe_violence_42_1.png" in out
    assert first_json == _verify(release, metadata_dir, capsys, "--json")[1]  # stable output


def test_defects_in_the_full_release_are_each_named(
    release: Path, metadata_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    removed = release / "vscbench_image_centric_images/drugs/unsafe_drugs_7_2.png"
    corrupt = release / "vscbench_text_centric_images/figstep/125_fistep.png"
    webp = release / "vscbench_image_centric_images/religion/safe_img_religion_3_0.png"
    with (
        _altered(removed, None),
        _altered(corrupt, _noise_png()[:300]),
        _altered(webp, REAL_WEBP.read_bytes()),
    ):
        code, out, err = _verify(release, metadata_dir, capsys)
    assert code == 1 and "NOT whole: 1 image file(s) missing, 2 bad image(s)" in out and "not whole" in err
    assert f"MISSING {removed}" in out
    assert f"BAD {corrupt}: corrupt image/png data" in out
    assert f"BAD {webp}: image/webp content but the name ends in '.png'" in out


@pytest.mark.parametrize(
    ("rel", "data", "expect"),
    [
        ("vscbench_image_centric_images/drugs/unsafe_drugs_7_2.png", None, "MISSING"),
        ("vscbench_text_centric_images/figstep/2_fistep.png", _noise_png()[:300], "corrupt image/png data"),
        (
            "vscbench_image_centric_images/drugs/safe_drugs_3_0.png",
            REAL_WEBP.read_bytes(),
            "image/webp content",
        ),
        ("vscbench_text_centric_images/search/d_0_3.png", b"not an image at all", "corrupt or not an image"),
        (
            "vscbench_text_centric_images/typography/3_a_risky_plan.png",
            tiny_image_bytes("PNG")[:40],
            "corrupt or not an image",
        ),
    ],
    ids=["removed", "truncated", "webp-named-png", "garbage", "cut-header"],
)
def test_each_defect_fails_naming_the_file(
    small_release: Path,
    small_meta: Path,
    capsys: pytest.CaptureFixture[str],
    rel: str,
    data: bytes | None,
    expect: str,
) -> None:
    target = small_release / rel
    with _altered(target, data):
        code, out, err = _verify(small_release, small_meta, capsys)
        assert code == 1
        lines = [ln for ln in out.splitlines() if str(target) in ln]
        assert len(lines) == 1 and expect in lines[0], out[-2000:]
        assert "NOT whole" in out and "not whole" in err
        code, out, _ = _verify(small_release, small_meta, capsys, "--json")
        d = json.loads(out)
        assert code == 1 and d["ok"] is False
        assert len(d["problems"]) == 1 and d["problems"][0].startswith(str(target))


def test_missing_setting_is_reported_not_runnable(tmp_path: Path, metadata_dir: Path) -> None:
    """Metadata alone + rendered typography/FigStep placeholders: text, typography, figstep = 1,350 items run."""
    paths = resolve_paths(tmp_path, metadata_dir)
    write_release_tree(paths, settings=("typography", "figstep"))
    rep = verify_release(paths)
    assert not rep.ok
    run = rep.runnable()
    assert run["settings"] == ["text", "typography", "figstep"] and run["items"] == 1350
    assert rep.settings["search"].missing == 449 and not rep.settings["concat"].runnable
    text = "\n".join(rep.lines())
    assert (
        "MISSING all 1799 image-half images" in text
        and "runnable now: text, typography, figstep = 1350 items" in text
    )


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels in a few dozen bytes (a decompression bomb's header)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00"))
        + chunk(b"IEND", b"")
    )


def test_pixel_limit_and_bombs(tmp_path: Path) -> None:
    huge = tmp_path / "bomb.png"
    huge.write_bytes(
        _png_header_only(100_000, 100_000)
    )  # over twice Pillow's own limit: DecompressionBombError
    mid = tmp_path / "mid.png"
    mid.write_bytes(_png_header_only(10_000, 9_000))  # over Pillow's warning limit, under its error limit
    small = tmp_path / "small.png"
    small.write_bytes(tiny_image_bytes("PNG", size=40))
    prob = check_image(huge)
    assert prob is not None and prob.kind == "too_large" and "pixel limit" in prob.detail
    with pytest.warns(Image.DecompressionBombWarning):  # Pillow warns; we refuse anyway
        prob = check_image(mid)
    assert prob is not None and prob.kind == "too_large" and "10000x9000 > 50000000" in prob.detail
    prob = check_image(small, max_pixels=1000)
    assert prob is not None and prob.kind == "too_large" and "40x40 > 1000" in prob.detail
    assert check_image(small) is None
    assert sniff_mime(REAL_WEBP) == "image/webp"


def test_bomb_in_release_is_named_by_verify(
    small_release: Path, small_meta: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = small_release / "vscbench_image_centric_images/drugs/unsafe_drugs_1_1.png"
    with _altered(target, _png_header_only(30_000, 30_000)):
        code, out, _ = _verify(small_release, small_meta, capsys)
    assert code == 1 and f"BAD {target}: image over the pixel limit" in out
    code, out, _ = _verify(
        small_release, small_meta, capsys, "--max-pixels", "10"
    )  # 8x8 placeholders > 10 px
    assert code == 1 and "8x8 > 10 pixels" in out
