"""`data fetch` against a loopback server, and `data import` with good and malicious archives."""

from __future__ import annotations

import hashlib
import io
import stat
import tarfile
import threading
import zipfile
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from vscbench.cli import main
from vscbench.data.archive import ArchiveError, Limits, import_archive, safe_member_name
from vscbench.data.fetch import fetch_metadata
from vscbench.data.paths import METADATA_SHA256
from vscbench.data.synthetic import tiny_image_bytes
from vscbench.errors import VscbenchError

PNG = tiny_image_bytes("PNG")


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def serve() -> Iterator[Callable[[Path], str]]:
    """Start a loopback HTTP server over a folder; returns its base URL."""
    servers: list[ThreadingHTTPServer] = []

    def start(folder: Path) -> str:
        srv = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(folder)))
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def test_pinned_hashes_are_those_of_the_shared_copies(metadata_dir: Path) -> None:
    for name, digest in METADATA_SHA256.items():
        assert hashlib.sha256((metadata_dir / name).read_bytes()).hexdigest() == digest


def test_fetch_metadata_from_a_mirror(
    serve: Callable[[Path], str], metadata_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = serve(metadata_dir)
    root = tmp_path / "root"
    assert main(["data", "fetch", "--root", str(root), "--base-url", url, "--metadata-only"]) == 0
    assert "vscbench_image_centric.xlsx: downloaded" in capsys.readouterr().out
    for name in METADATA_SHA256:
        assert (root / name).read_bytes() == (metadata_dir / name).read_bytes()
    # a good copy is kept without a download (the server may be gone)
    res = fetch_metadata(root, base_url="http://127.0.0.1:9/unreachable")
    assert [r.action for r in res] == ["kept", "kept"]


def test_fetch_refuses_a_wrong_hash_and_writes_nothing(
    serve: Callable[[Path], str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "mirror"
    bad.mkdir()
    for name in METADATA_SHA256:
        (bad / name).write_bytes(b"tampered")
    url = serve(bad)
    root = tmp_path / "root"
    assert main(["data", "fetch", "--root", str(root), "--base-url", url, "--metadata-only"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "SHA-256" in err[0] and "vscbench_image_centric.xlsx" in err[0]
    assert not (root / "vscbench_image_centric.xlsx").exists()
    assert [p.name for p in root.iterdir()] == []  # no temporary files left


def test_fetch_unreachable_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["data", "fetch", "--root", str(tmp_path), "--base-url", "http://127.0.0.1:9", "--metadata-only"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "download failed" in err[0] and "127.0.0.1:9" in err[0]


# ------------------------------------------------------------------------------------------- archives
def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _good_members(prefix: str = "VSCBench/") -> dict[str, bytes]:
    return {
        f"{prefix}vscbench_image_centric_images/drugs/safe_drugs_0_0.png": PNG,
        f"{prefix}vscbench_image_centric_images/porngraphy/safe_img_porngraphy_0_0.jpg": tiny_image_bytes(
            "JPEG"
        ),
        f"{prefix}vscbench_text_centric_images/search/d_0_3.png": PNG,
        f"{prefix}vscbench_image_centric.xlsx": b"not the pinned metadata",
        f"{prefix}README.txt": b"ignored",
    }


def _snapshot(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_import_good_zip_with_wrapper_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arc = _zip(tmp_path / "release.zip", _good_members())
    root = tmp_path / "root"
    assert main(["data", "import", str(arc), "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "vscbench_image_centric_images: 2 files" in out and "differs from the pinned" in out
    assert (root / "vscbench_image_centric_images/drugs/safe_drugs_0_0.png").read_bytes() == PNG
    assert (root / "vscbench_text_centric_images/search/d_0_3.png").is_file()
    assert not (root / "vscbench_image_centric.xlsx").exists()  # not the pinned copy: not installed
    assert not any(p.name.startswith(".import-") for p in root.iterdir())  # staging removed


def test_import_tar_gz_with_pinned_metadata(tmp_path: Path, metadata_dir: Path) -> None:
    arc = tmp_path / "release.tar.gz"
    with tarfile.open(arc, "w:gz") as tf:
        for name, data in {
            "vscbench_text_centric_images/figstep/0_fistep.png": PNG,
            "vscbench_text_centric.xlsx": (metadata_dir / "vscbench_text_centric.xlsx").read_bytes(),
        }.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    s = import_archive(arc, tmp_path / "root")
    assert s.files == {"vscbench_text_centric_images": 1} and s.metadata == ["vscbench_text_centric.xlsx"]


def _tar_with(path: Path, ti: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(path, "w") as tf:
        ok = tarfile.TarInfo("vscbench_text_centric_images/search/a.png")
        ok.size = len(PNG)
        tf.addfile(ok, io.BytesIO(PNG))
        tf.addfile(ti, io.BytesIO(data) if data else None)
    return path


def _tarinfo(name: str, kind: bytes, linkname: str = "", size: int = 0) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.linkname = linkname
    ti.size = size
    return ti


def _zip_symlink(folder: Path) -> Path:
    path = folder / "a.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("vscbench_text_centric_images/search/a.png", PNG)
        info = zipfile.ZipInfo("vscbench_text_centric_images/search/link.png")
        info.create_system = 3
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    return path


MALICIOUS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "dotdot": (lambda d: _zip(d / "a.zip", {"vscbench_text_centric_images/../../evil.png": PNG}), "'..'"),
    "absolute": (lambda d: _zip(d / "a.zip", {"/tmp/evil.png": PNG}), "absolute path"),
    "drive": (lambda d: _zip(d / "a.zip", {"C:/evil.png": PNG}), "absolute path"),
    "backslash": (lambda d: _zip(d / "a.zip", {"..\\..\\evil.png": PNG}), "backslash"),
    "zip-symlink": (_zip_symlink, "symbolic link"),
    "tar-symlink": (
        lambda d: _tar_with(
            d / "a.tar", _tarinfo("vscbench_text_centric_images/x.png", tarfile.SYMTYPE, "/etc/passwd")
        ),
        "symbolic link",
    ),
    "tar-hardlink": (
        lambda d: _tar_with(
            d / "a.tar", _tarinfo("vscbench_text_centric_images/h.png", tarfile.LNKTYPE, "/etc/passwd")
        ),
        "hard link",
    ),
    "tar-device": (lambda d: _tar_with(d / "a.tar", _tarinfo("dev/null0", tarfile.CHRTYPE)), "device file"),
    "tar-fifo": (lambda d: _tar_with(d / "a.tar", _tarinfo("fifo", tarfile.FIFOTYPE)), "FIFO"),
    "tar-dotdot": (
        lambda d: _tar_with(d / "a.tar", _tarinfo("../evil.png", tarfile.REGTYPE, size=len(PNG)), PNG),
        "'..'",
    ),
    "duplicate": (
        lambda d: _zip(
            d / "a.zip",
            {"vscbench_text_centric_images/a.png": PNG, "./vscbench_text_centric_images/a.png": PNG},
        ),
        "appears twice",
    ),
    "not-a-release": (lambda d: _zip(d / "a.zip", {"photos/cat.png": PNG}), "not a VSCBench release"),
    "not-an-archive": (lambda d: (d / "a.zip", (d / "a.zip").write_bytes(b"hello"))[0], "not a zip or tar"),
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_import_refuses_malicious_archives(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    build, expect = MALICIOUS[case]
    src = tmp_path / "src"
    src.mkdir()
    arc = build(src)
    root = tmp_path / "a" / "b" / "root"
    root.mkdir(parents=True)
    (root / "keep.txt").write_text("existing")
    before = _snapshot(tmp_path)
    code = main(["data", "import", str(arc), "--root", str(root)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(arc) in err[0] and expect in err[0], err
    assert _snapshot(tmp_path) == before  # nothing written anywhere, staging removed
    assert not Path("/tmp/evil.png").exists()


@pytest.mark.parametrize(
    ("limits", "expect"),
    [
        (Limits(max_files=2), "more than the limit of 2"),
        (Limits(max_file_bytes=50), "per-file limit of 50"),
        (Limits(max_total_bytes=len(PNG) + 10), "add up to more than"),
    ],
    ids=["count", "per-file", "total"],
)
def test_import_limits(tmp_path: Path, limits: Limits, expect: str) -> None:
    arc = _zip(tmp_path / "r.zip", _good_members(prefix=""))
    root = tmp_path / "root"
    with pytest.raises(ArchiveError, match=expect):
        import_archive(arc, root, limits)
    assert list(root.iterdir()) == []


def test_member_size_is_also_enforced_while_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The listing check is not the only guard: bytes actually written are counted (a member whose data
    exceeds what its header declares is stopped at the limit)."""
    import vscbench.data.archive as A

    arc = _zip(tmp_path / "r.zip", {"vscbench_text_centric_images/search/a.png": b"\x00" * 5000})
    monkeypatch.setattr(A, "_check_listing", lambda *a, **k: None)
    with pytest.raises(ArchiveError, match="holds more than the per-file limit"):
        import_archive(arc, tmp_path / "root", Limits(max_file_bytes=1000))
    assert not any((tmp_path / "root").iterdir())


def test_safe_member_name() -> None:
    p = Path("x.zip")
    assert str(safe_member_name(p, "./a/./b.png")) == "a/b.png"
    assert safe_member_name(p, "./") is None
    for bad in ("../a", "a/../../b", "/a", "C:/a", "a\\b", "a\x00b"):
        with pytest.raises(VscbenchError):
            safe_member_name(p, bad)


def test_fetch_images_through_gdown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], metadata_dir: Path
) -> None:
    """The Drive download is delegated to gdown (faked here: no network); its file goes through safe import."""
    import sys
    import types

    calls: list[dict[str, object]] = []

    def download(**kw: object) -> str:
        calls.append(kw)
        _zip(Path(str(kw["output"])), _good_members())
        return str(kw["output"])

    monkeypatch.setitem(sys.modules, "gdown", types.SimpleNamespace(download=download))
    root = tmp_path / "root"
    for name in METADATA_SHA256:  # metadata already in place: kept, no HTTP
        root.mkdir(exist_ok=True)
        (root / name).write_bytes((metadata_dir / name).read_bytes())
    assert main(["data", "fetch", "--root", str(root), "--drive-id", "FILEID"]) == 0
    assert calls and calls[0]["id"] == "FILEID"
    assert (root / "vscbench_image_centric_images/drugs/safe_drugs_0_0.png").read_bytes() == PNG
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == []  # download folder removed
    assert "kept" in capsys.readouterr().out


def test_fetch_images_without_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    from vscbench.data.fetch import fetch_images

    monkeypatch.setitem(sys.modules, "gdown", None)  # import gdown -> ImportError
    with pytest.raises(VscbenchError, match=r"pip install 'vscbench\[fetch\]'"):
        fetch_images(tmp_path)


def test_import_refuses_a_member_that_is_not_an_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    assert main(["data", "import", str(_zip(tmp_path / "good.zip", _good_members())), "--root", str(root)]) == 0
    capsys.readouterr()
    before = {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    members = _good_members()
    members["VSCBench/vscbench_image_centric_images/drugs/safe_drugs_0_0.png"] = b"garbage"
    arc = _zip(tmp_path / "partial.zip", members)
    code = main(["data", "import", str(arc), "--root", str(root)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "'VSCBench/vscbench_image_centric_images/drugs/safe_drugs_0_0.png' is not an image" in err[0]
    after = {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    assert after == before  # nothing replaced, staging removed


def test_import_of_a_directory_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["data", "import", str(tmp_path), "--root", str(tmp_path / "root")])
    err = capsys.readouterr().err
    assert code == 2 and "is a directory, not an archive" in err and "not found" not in err


def test_import_tolerates_non_image_side_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Archives made on a Mac carry .DS_Store files: they are not item images, so they do not refuse the import."""
    members = _good_members()
    members["VSCBench/vscbench_image_centric_images/drugs/.DS_Store"] = b"\x00\x00\x00\x01Bud1"
    code = main(["data", "import", str(_zip(tmp_path / "mac.zip", members)), "--root", str(tmp_path / "root")])
    assert code == 0, capsys.readouterr().err
