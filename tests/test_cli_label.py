"""``vscbench label``: parse, find the tasks the suite left, serve the page (issue 21)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vscbench.cli import main
from vscbench.suite.auditcases import tasks_file, write_tasks
from vscbench.suite.labelpage import LabelSession, LabelTask
from vscbench.suite.labels import fingerprint


def test_label_serves_the_tasks_the_suite_left_with_the_flags_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "runs" / "v.sqlite"
    labels = tmp_path / "snap" / "audit-labels.jsonl"
    tasks = [LabelTask(f"tc/00{k}/text", f"q{k}", f"r{k}", fingerprint(f"q{k}", None, f"r{k}"), None, "COMPLY", "unsafe")
             for k in range(3)]  # fmt: skip
    write_tasks(tasks_file(store, "openai-compatible_x-06d141e8"), "openai-compatible_x-06d141e8", labels, tasks, "t")
    served: list[tuple[LabelSession, dict[str, Any]]] = []
    monkeypatch.setattr("vscbench.suite.labelpage.serve", lambda s, **kw: served.append((s, kw)))
    argv = ["label", "--model", "openai-compatible/x", "--store", str(store), "--labeller", "bo", "--second-of", "ana",
            "--port", "8765", "--no-browser"]  # fmt: skip
    assert main(argv) == 0
    (session, kw), = served
    assert session.tasks == tasks and session.path == labels.resolve()
    assert session.labeller == "bo" and session.compare_with == "ana"
    assert kw == {"port": 8765, "open_browser": False}


def test_label_without_tasks_or_with_a_bad_port_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["label", "--model", "qwen-vl", "--store", str(tmp_path / "v.sqlite")]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no labelling tasks for model qwen-vl" in err and "pytest --model=qwen-vl" in err
    with pytest.raises(SystemExit) as exc:
        main(["label", "--model", "qwen-vl", "--port", "70000"])
    assert exc.value.code == 2 and "--port" in capsys.readouterr().err
