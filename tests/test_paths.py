"""One search for the metadata, for every command, the demo and the suite; one line when nothing is found."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from vscbench import demo
from vscbench.cli import main
from vscbench.data import paths, resolve_paths
from vscbench.data.paths import IMAGE_CENTRIC_XLSX, TEXT_CENTRIC_XLSX, find_metadata, metadata_not_found
from vscbench.errors import VscbenchError


def fake_metadata(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names or (IMAGE_CENTRIC_XLSX, TEXT_CENTRIC_XLSX):
        (folder / n).write_bytes(b"")
    return folder


@pytest.fixture
def fresh_clone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean checkout (the current folder, and the package's own checkout) beside nothing yet: no release
    root, no $VSCBENCH_METADATA, no $VSCBENCH_SHARED. Returns the folder that holds the checkout."""
    base = tmp_path / "work"
    clone = base / "vscbench"
    clone.mkdir(parents=True)
    monkeypatch.chdir(clone)
    monkeypatch.setattr(paths, "project_dir", lambda: clone)
    monkeypatch.setenv("VSCBENCH_HOME", str(tmp_path / "empty-home"))
    monkeypatch.setenv("VSCBENCH_STORE", str(tmp_path / "store" / "s.sqlite"))
    monkeypatch.delenv("VSCBENCH_METADATA", raising=False)
    monkeypatch.delenv("VSCBENCH_SHARED", raising=False)
    return base


def link_shared(base: Path, metadata_dir: Path) -> Path:
    """``../shared/data/vscbench`` beside the clone, holding (links to) the real metadata."""
    dst = base / "shared" / "data" / "vscbench"
    dst.mkdir(parents=True)
    for n in (IMAGE_CENTRIC_XLSX, TEXT_CENTRIC_XLSX):
        os.symlink(metadata_dir / n, dst / n)
    return dst.resolve()


# -- the order of the search ------------------------------------------------------------------------
def test_order_flag_env_root_then_beside_the_project(
    fresh_clone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    beside = fake_metadata(fresh_clone / "shared" / "data" / "vscbench").resolve()
    assert find_metadata() == beside
    root = fake_metadata(tmp_path / "root").resolve()
    assert find_metadata(root=root) == root  # the release root before the folder beside the project
    monkeypatch.setenv("VSCBENCH_HOME", str(root))
    assert resolve_paths().metadata == root
    env = fake_metadata(tmp_path / "env").resolve()
    monkeypatch.setenv("VSCBENCH_METADATA", str(env))
    assert resolve_paths().metadata == env
    flag = fake_metadata(tmp_path / "flag").resolve()
    assert resolve_paths(None, flag) == paths.DataPaths(root=root, metadata=flag)


def test_a_complete_folder_wins_over_a_partial_one(fresh_clone: Path, tmp_path: Path) -> None:
    partial = fake_metadata(tmp_path / "root", TEXT_CENTRIC_XLSX)
    beside = fake_metadata(fresh_clone / "shared" / "data" / "vscbench").resolve()
    assert find_metadata(root=partial) == beside
    (beside / IMAGE_CENTRIC_XLSX).unlink()
    (beside / TEXT_CENTRIC_XLSX).unlink()
    assert find_metadata(root=partial) == partial.resolve()  # then the missing file is named when read


def test_shared_variable_replaces_the_folders_beside_the_project(
    fresh_clone: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_metadata(fresh_clone / "shared" / "data" / "vscbench")
    monkeypatch.setenv("VSCBENCH_SHARED", str(tmp_path / "elsewhere"))
    with pytest.raises(VscbenchError, match=r"under \$VSCBENCH_SHARED .*elsewhere/data/vscbench"):
        find_metadata()
    there = fake_metadata(tmp_path / "elsewhere" / "data" / "vscbench").resolve()
    assert find_metadata() == there


# -- what a wrong choice says ---------------------------------------------------------------------
def test_a_missing_metadata_folder_is_reported_as_a_folder(fresh_clone: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    gone = tmp_path / "no-such-dir"
    assert main(["data", "items", "--metadata", str(gone)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"vscbench: error: --metadata {gone}: no such folder;") and err.count("\n") == 1
    assert IMAGE_CENTRIC_XLSX + ":" not in err  # not "a missing file inside it"
    afile = tmp_path / "f.txt"
    afile.write_text("x")
    with pytest.raises(VscbenchError, match="a file, not a folder"):
        find_metadata(afile)
    with pytest.raises(VscbenchError, match=f"neither {IMAGE_CENTRIC_XLSX} nor {TEXT_CENTRIC_XLSX}"):
        find_metadata(tmp_path)


def test_a_wrong_environment_variable_is_an_error_not_skipped(
    fresh_clone: Path, tmp_path: Path, metadata_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    link_shared(fresh_clone, metadata_dir)  # a good folder later in the search must not hide the mistake
    monkeypatch.setenv("VSCBENCH_METADATA", str(tmp_path / "typo"))
    with pytest.raises(VscbenchError, match=r"^\$VSCBENCH_METADATA=.*typo: no such folder; run 'vscbench data fetch'"):
        resolve_paths()


def test_not_found_names_every_place_and_both_ways_out(fresh_clone: Path, tmp_path: Path) -> None:
    msg = metadata_not_found()
    assert "\n" not in msg
    assert str(tmp_path / "empty-home") in msg  # the release root
    assert str(fresh_clone / "shared" / "data" / "vscbench") in msg  # beside the project
    assert "$VSCBENCH_METADATA" in msg and "--metadata DIR" in msg and "'vscbench data fetch'" in msg


# -- every data-reading command, from a fresh clone -----------------------------------------------
def _score_file(tmp_path: Path) -> str:
    f = tmp_path / "answers.jsonl"
    f.write_text(json.dumps({"item_id": "tc/000/figstep", "response": "Sure, here is how."}) + "\n")
    return str(f)


def _commands(tmp_path: Path) -> dict[str, list[str]]:
    """Every command that reads the metadata (the demo is called apart: it has its own entry point)."""
    return {
        "data items": ["data", "items", "--half", "text"],
        "data verify": ["data", "verify", "--json"],
        "data render": ["data", "render", "--out", str(tmp_path / "render"), "--jobs", "1"],
        "data export": ["data", "export", "--format", "jsonl", "--out", str(tmp_path / "items.jsonl")],
        "run": ["run", "-m", "openai-compatible/m", "--base-url", "http://127.0.0.1:9/v1", "--limit", "1"],
        "score": ["score", _score_file(tmp_path), "--judge", "keyword"],
        "calibrate fit": ["calibrate", "fit", "-m", "hf/some/model", "--layer", "0",
                          "--out", str(tmp_path / "dir.safetensors")],
    }  # fmt: skip


def test_every_command_finds_the_metadata_beside_the_clone(
    fresh_clone: Path, tmp_path: Path, metadata_dir: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    shared = link_shared(fresh_clone, metadata_dir)
    # each command must reach the one search; stop it there (the heavy ones would render, load or send)
    found: list[Path] = []
    real = paths.find_metadata

    def spy(metadata: str | None = None, root: str | None = None) -> Path:
        found.append(real(metadata, root))
        raise VscbenchError(f"stop: found {found[-1]}")

    monkeypatch.setattr(paths, "find_metadata", spy)
    for name, argv in _commands(tmp_path).items():
        found.clear()
        assert main(argv) == 2, name
        assert found == [shared], name
        assert capsys.readouterr().err == f"vscbench: error: stop: found {shared}\n", name
    found.clear()
    assert demo.main(["--out", str(tmp_path / "demo_out")]) == 2
    assert found == [shared] and f"stop: found {shared}" in capsys.readouterr().err
    monkeypatch.setattr(paths, "find_metadata", real)
    assert resolve_paths().metadata == shared  # what the pytest suite calls
    # and the cheap ones all the way through
    assert main(["data", "items", "--half", "text"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2250
    assert main(["data", "export", "--format", "jsonl", "--out", str(tmp_path / "items.jsonl")]) == 0
    assert len((tmp_path / "items.jsonl").read_text().splitlines()) == 4050
    assert main(["score", _score_file(tmp_path), "--judge", "keyword", "--run-id", "s1"]) == 0
    assert "run id: s1" in capsys.readouterr().out


def test_every_command_says_the_same_line_when_nothing_is_found(
    fresh_clone: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = metadata_not_found()
    for name, argv in _commands(tmp_path).items():
        assert main(argv) == 2, name
        assert capsys.readouterr().err == f"vscbench: error: {expected}\n", name
    assert demo.main(["--out", str(tmp_path / "demo_out")]) == 2
    assert capsys.readouterr().err == f"demo: error: {expected}\n"
    with pytest.raises(VscbenchError) as exc:
        resolve_paths()
    assert str(exc.value) == expected
    # and nothing was left behind: no store, no output folder
    assert not (tmp_path / "store").exists() and not (tmp_path / "demo_out").exists()
    assert not (tmp_path / "render").exists() and not (tmp_path / "items.jsonl").exists()


def test_fetch_and_import_need_only_the_root(fresh_clone: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """The two ways to put the release in place never ask for the metadata they are about to install."""
    assert paths.release_root(tmp_path / "r") == (tmp_path / "r").resolve()
    code = main(["data", "import", str(tmp_path / "absent.zip"), "--root", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "metadata not found" not in err and "absent.zip" in err
