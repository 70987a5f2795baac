"""The demo (`make demo`): offline end to end, with a plain warning when the model is the random tiny one."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from vscbench import demo
from vscbench.cli import main
from vscbench.errors import VscbenchError
from vscbench.store import Store, default_store_path


def test_metadata_not_found_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(VscbenchError, match="--metadata .*: neither vscbench_image_centric.xlsx"):
        demo.find_metadata(str(tmp_path))


def test_metadata_found_from_env(metadata_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VSCBENCH_METADATA", str(metadata_dir))
    assert demo.find_metadata() == metadata_dir.resolve()


@pytest.mark.torch
@pytest.mark.slow
def test_demo_end_to_end_with_fallback_to_tiny_model(
    metadata_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    # an unloadable model: the demo must say so and fall back to the tiny random model
    monkeypatch.setenv(demo.MODEL_ENV, f"hf/{tmp_path / 'no-such-model'}")
    out = tmp_path / "demo_out"
    code = demo.main(["--out", str(out), "--metadata", str(metadata_dir), "--limit", "12", "--max-tokens", "6"])
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    lines = stdout.rstrip().splitlines()
    assert lines[-1] == f"report: {out / 'report.html'}"
    assert "cannot use hf/" in stdout and "falling back to a tiny randomly initialised model" in stdout
    assert demo.TINY_BANNER in stdout
    assert "need the official image archive" in stdout
    html = (out / "report.html").read_text()
    assert demo.TINY_BANNER in html
    data = json.loads(re.search(r'id="vsc-data">(.*?)</script>', html, re.S).group(1))  # type: ignore[union-attr]
    assert len(data["items"]) == 12
    assert {it["setting"] for it in data["items"]} <= set(demo.DEMO_SETTINGS)
    assert all(it["lab"].get("local") for it in data["items"] if it["st"] == "ok")
    assert "data:image/jpeg;base64," in html  # rendered typography/FigStep thumbnails
    with Store(default_store_path()) as st:  # the default store, where `vscbench runs` looks
        info = st.get_run(demo.RUN_ID)
        assert info.manifest["banner"] == demo.TINY_BANNER
        assert info.manifest[demo.MADE_BY_KEY] == demo.MADE_BY
        assert st.judges(demo.RUN_ID) == ["local"]
        assert st.counts(demo.RUN_ID)["items"] == 12
    assert not (out / "demo.sqlite").exists()
    # the local checkpoint is named by folder and config hash in reports; its path stays in the manifest only
    tiny = str(out / "tiny-vlm")
    assert info.model == f"hf/{tiny}"
    label = "hf/tiny-vlm@" + hashlib.sha256((out / "tiny-vlm" / "config.json").read_bytes()).hexdigest()[:8]
    assert label in html and tiny not in html and "hf//" not in html


@pytest.mark.torch
@pytest.mark.slow
def test_make_demo_then_runs_then_report_with_no_flag(
    metadata_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make demo && vscbench runs && vscbench report --run demo` on a fresh clone; a second demo replaces the
    first demo's run and nothing else."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    monkeypatch.delenv(demo.MODEL_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VSCBENCH_STORE")  # the real default: ./vscbench_runs/vscbench.sqlite
    with Store(default_store_path()) as st:  # a run of the user's own, which the demo must keep
        st.create_run("mine", kind="generation", model="openai/gpt-x", manifest={}, items=[])
    small = ["--metadata", str(metadata_dir), "--max-tokens", "4"]
    assert demo.main([*small, "--limit", "12"]) == 0
    demo_out = capsys.readouterr().out
    assert "vscbench_runs/vscbench.sqlite (try: vscbench runs; vscbench report --run demo --format md)" in demo_out
    assert main(["runs"]) == 0
    listing = capsys.readouterr().out
    assert listing.startswith("runs in vscbench_runs/vscbench.sqlite\n")
    assert "hf/tiny-vlm@" in listing and "mine" in listing and str(tmp_path) not in listing
    assert main(["report", "--run", "demo", "--format", "md"]) == 0
    md = capsys.readouterr().out
    assert "hf/tiny-vlm@" in md and str(tmp_path) not in md
    assert demo.main([*small, "--limit", "6"]) == 0
    capsys.readouterr()
    with Store(default_store_path()) as st:
        assert {r.run_id for r in st.list_runs()} == {"mine", "demo"}
        assert st.counts("demo")["items"] == 6  # replaced, not resumed or extended
        assert st.has_run("mine")


def test_a_run_named_demo_that_the_demo_did_not_make_is_kept(
    metadata_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Store(default_store_path()) as st:
        st.create_run(demo.RUN_ID, kind="generation", model="openai/gpt-x", manifest={}, items=[])
    out = tmp_path / "out"
    assert demo.main(["--out", str(out), "--metadata", str(metadata_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds a run 'demo' that the demo did not make" in err
    assert "--store FILE" in err and not out.exists()
    with Store(default_store_path()) as st:
        assert st.get_run(demo.RUN_ID).model == "openai/gpt-x"
