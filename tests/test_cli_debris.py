"""Bad input never leaves debris: a rejected command creates no store file, side file or folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vscbench.cli import main
from vscbench.store import Store

RUN = ["run", "-m", "openai-compatible/m", "--base-url", "http://127.0.0.1:9/v1"]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize(
    "bad",
    [
        ["--items", "no-such-ids.txt"],
        ["--items", "ids.txt"],  # an id that is no item
        ["--run-id", "bad id"],
        ["--calibration", "nonsense"],
    ],
)
def test_rejected_run_leaves_no_store(
    bad: list[str], metadata_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ids.txt").write_text("zz/nope\n")
    store = tmp_path / "runs" / "s.sqlite"
    assert main([*RUN, "--metadata", str(metadata_dir), "--store", str(store), *bad]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "runs").exists(), leftovers(tmp_path / "runs")


def test_rejected_input_keeps_an_existing_store(
    metadata_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "s.sqlite"
    with Store(store) as st:
        st.create_run("mine", kind="generation", model="openai/x", manifest={}, items=[])
    assert main([*RUN, "--metadata", str(metadata_dir), "--store", str(store), "--items", "absent.txt"]) == 2
    with Store(store) as st:
        assert st.has_run("mine")


def test_rejected_utility_and_score_leave_no_store(
    metadata_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "runs" / "s.sqlite"
    bad = tmp_path / "u.jsonl"
    bad.write_text("{oops\n")
    code = main(["utility", "-m", "openai-compatible/m", "--base-url", "http://127.0.0.1:9/v1", "--data", str(bad),
                 "--store", str(store)])  # fmt: skip
    assert code == 2 and not (tmp_path / "runs").exists()
    f = tmp_path / "r.jsonl"
    f.write_text(json.dumps({"item_id": "tc/000/figstep", "response": "ok"}) + "\n{bad\n")
    assert main(["score", str(f), "--metadata", str(metadata_dir), "--store", str(store)]) == 2
    assert not (tmp_path / "runs").exists()
