"""A local checkpoint is named in reports by folder name and config hash; its path stays in the manifest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from report_store import OUTCOMES, build_store
from vscbench.cli import main
from vscbench.report import build_report, render
from vscbench.report.names import model_label
from vscbench.store import Store


def checkpoint(folder: Path, cfg: dict[str, object]) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def short(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:8]


def test_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = checkpoint(tmp_path / "a" / "tiny-vlm", {"model_type": "llava", "hidden": 8})
    b = checkpoint(tmp_path / "b" / "tiny-vlm", {"model_type": "llava", "hidden": 16})
    la, lb = model_label(f"hf/{a}"), model_label(f"hf/{b}/")
    assert la == f"hf/tiny-vlm@{short(a / 'config.json')}" and lb == f"hf/tiny-vlm@{short(b / 'config.json')}"
    assert la != lb  # same folder name, different checkpoints
    assert model_label(f"hf/{tmp_path}/gone") == f"hf/gone@{hashlib.sha256(str(tmp_path / 'gone').encode()).hexdigest()[:8]}"
    # hub ids and API models are shown as given; so is a name that only looks odd
    for spec in ("hf/HuggingFaceTB/SmolVLM-256M-Instruct", "openai/gpt-4o", "external", "x/<b>m</b>"):
        assert model_label(spec) == spec
    monkeypatch.chdir(tmp_path / "a")
    assert model_label("hf/tiny-vlm") == la  # a relative folder that exists here is local too


def test_html_and_markdown_never_show_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ck = checkpoint(tmp_path / "secret-home" / "ckpt", {"model_type": "llava"})
    store = build_store(tmp_path / "s.sqlite", {"a": OUTCOMES}, models={"a": f"hf/{ck}"})
    with Store(store) as st:
        rep = build_report(st, ["a"])
        assert st.get_run("a").model == f"hf/{ck}"  # the store and manifest keep the full spec
    label = f"hf/ckpt@{short(ck / 'config.json')}"
    for fmt in ("html", "md", "table", "latex", "csv", "json"):
        out = render(rep, fmt)
        assert "secret-home" not in out and "hf//" not in out, fmt
    assert label in render(rep, "html") and label in render(rep, "md")
    assert main(["runs", "--store", str(store)]) == 0
    listing = capsys.readouterr().out
    assert label in listing and "secret-home" not in listing.split("\n", 1)[1]
