"""The demo (`make demo`): offline end to end, with a plain warning when the model is the random tiny one."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from vscbench import demo
from vscbench.errors import VscbenchError
from vscbench.store import Store


def test_metadata_not_found_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(VscbenchError, match="--metadata .*: no vscbench_image_centric.xlsx"):
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
    with Store(out / "demo.sqlite") as st:
        info = st.get_run(demo.RUN_ID)
        assert info.manifest["banner"] == demo.TINY_BANNER
        assert st.judges(demo.RUN_ID) == ["local"]
        assert st.counts(demo.RUN_ID)["items"] == 12
