"""The safety suite on vLLM, with a fake ``vllm`` executable first on PATH (tests/fake_vllm.py), run by pytester
in a subprocess: the suite starts one server (shared by the model and the judge that sees the image), answers
through it, records it in the run manifest and stops it; bad starts are one usage-error line (exit 4); Ctrl-C
during the run leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import METADATA, suite_checkout
from fake_vllm import VERSION, install, pid_alive

SCOPES = {"benchmark": {"max_under_safety": 1.0, "max_over_safety": 1.0}}


@pytest.fixture
def suite(pytester: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    install(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    rec = tmp_path / "rec"
    rec.mkdir()
    monkeypatch.setenv("FAKE_VLLM_RECORD", str(rec))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # two "GPUs": DP defaults to 2
    (tmp_path / "t.yaml").write_text(yaml.safe_dump({"version": 1, "defaults": {"min_n": 1}, "scopes": SCOPES}))
    return suite_checkout(pytester)


def args(tmp_path: Path, *extra: str) -> list[str]:
    return [
        f"--vsc-metadata={METADATA}", f"--vsc-data-root={tmp_path / 'root'}", f"--vsc-store={tmp_path / 's.sqlite'}",
        f"--vsc-thresholds={tmp_path / 't.yaml'}", f"--vsc-json={tmp_path / 'gate.json'}", "-p", "no:randomly",
        "-p", "no:cacheprovider", *extra,
    ]  # fmt: skip


def starts(tmp_path: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted((tmp_path / "rec").glob("*.json"))]


def gone(pid: int, within: float = 10.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_the_suite_starts_uses_and_stops_one_server_for_model_and_judge(suite: pytest.Pytester, tmp_path: Path) -> None:
    res = suite.runpytest_subprocess(
        *args(tmp_path), "--model=vllm/fake-org/fake-vl", "--judge=rubric:vllm/fake-org/fake-vl",
        "--judge-sees-image", "--vsc-vllm-arg=--max-model-len=4096", "--vsc-vllm-arg=--enforce-eager",
        "--vsc-vllm-timeout=60", "-m", "baseline or typography", "--vsc-sample=8",
    )  # fmt: skip
    out = res.stdout.str()
    assert res.ret == 0, out
    (rec,) = starts(tmp_path)  # one server: the judge is the same checkpoint, it shares the model's
    argv = rec["argv"]
    assert isinstance(argv, list)
    port = argv[argv.index("--port") + 1]
    assert argv == [
        "serve", "fake-org/fake-vl", "--host", "127.0.0.1", "--port", port, "--served-model-name",
        "fake-org/fake-vl", "--tensor-parallel-size", "1", "--data-parallel-size", "2", "--max-model-len=4096",
        "--enforce-eager",
    ]  # fmt: skip
    assert rec["cuda"] == "0,1"  # one process: the outer set, as it was
    assert gone(int(rec["pid"]))  # type: ignore[call-overload]
    assert f"vllm: serving fake-org/fake-vl at http://127.0.0.1:{port}/v1" in out
    assert "vllm: the judge shares the model's server" in out
    assert "judge rubric:vllm/fake-org/fake-vl+image" in out
    reqs = [json.loads(ln) for ln in (tmp_path / "rec" / "requests.jsonl").read_text().splitlines()]
    answers, judged = [r for r in reqs if not r["judge"]], [r for r in reqs if r["judge"]]
    assert len(answers) == 8 and len(judged) == 8
    assert any(r["image"] for r in judged) and any(r["image"] for r in answers)  # typography: the image is sent
    gate = json.loads((tmp_path / "gate.json").read_text())
    assert gate["spec"] == "vllm/fake-org/fake-vl" and gate["status"] == "PASS"
    with sqlite3.connect(tmp_path / "s.sqlite") as db:
        (manifest,) = db.execute("SELECT manifest FROM runs").fetchone()
        labels = dict(db.execute("SELECT judge_id, COUNT(*) FROM labels GROUP BY judge_id").fetchall())
    info = json.loads(manifest)["provider_info"]
    assert info["provider"] == "vllm" and info["server"]["version"] == VERSION
    assert info["server"]["argv"][-2:] == ["--max-model-len=4096", "--enforce-eager"]
    assert labels == {"rubric:vllm/fake-org/fake-vl+image": 8}
    logs = list((tmp_path / "logs").glob("vllm-suite-fake-vl-*.log"))
    assert len(logs) == 1 and "Uvicorn running" in logs[0].read_text()

    # the same session again: a new server on another port, the same run resumed, nothing sent again
    res = suite.runpytest_subprocess(
        *args(tmp_path), "--model=vllm/fake-org/fake-vl", "--judge=rubric:vllm/fake-org/fake-vl",
        "--judge-sees-image", "-m", "baseline or typography", "--vsc-sample=8",
    )  # fmt: skip
    assert res.ret == 0, res.stdout.str()
    assert len((tmp_path / "rec" / "requests.jsonl").read_text().splitlines()) == 16
    assert all(gone(int(r["pid"])) for r in starts(tmp_path))  # type: ignore[call-overload]


def test_under_xdist_each_worker_serves_on_its_own_gpus(suite: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,4,6,7")  # an outer set: the workers split it, the controller serves none
    res = suite.runpytest_subprocess(
        *args(tmp_path), "--model=vllm/m", "--judge=keyword", "-m", "baseline", "--vsc-sample=8", "-n", "2", "--vsc-no-gate"
    )
    assert res.ret == 0, res.stdout.str()
    recs = starts(tmp_path)
    assert sorted(str(r["cuda"]) for r in recs) == ["3,4", "6,7"]
    for r in recs:
        argv = r["argv"]
        assert isinstance(argv, list) and argv[argv.index("--data-parallel-size") + 1] == "2"
        assert gone(int(r["pid"]))  # type: ignore[call-overload]
    logs = sorted(p.name[-8:] for p in (tmp_path / "logs").glob("vllm-*.log"))
    assert logs == ["-gw0.log", "-gw1.log"]
    assert len((tmp_path / "rec" / "requests.jsonl").read_text().splitlines()) == 8  # each item asked once


@pytest.mark.parametrize(
    ("env", "flags", "line"),
    [
        ({"FAKE_VLLM_CRASH": "1"}, [], "exited with code 1 during start-up"),
        ({"FAKE_VLLM_NEVER_HEALTHY": "1"}, ["--vsc-vllm-timeout=1"], "not healthy after 1 s"),
        ({}, ["--vsc-tp=4"], "ERROR: tensor parallel 4 needs 4 GPUs, 2 visible"),
        ({}, ["--model=openai-compatible/x", "--vsc-base-url=http://127.0.0.1:9/v1", "--vsc-tp=2"],
         "ERROR: --vsc-tp: for a vllm/ model; --model is openai-compatible/x"),
    ],
)  # fmt: skip
def test_a_bad_start_is_one_usage_error_and_no_process(
    suite: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], flags: list[str], line: str
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    model = [] if any(f.startswith("--model") for f in flags) else ["--model=vllm/m"]
    res = suite.runpytest_subprocess(*args(tmp_path), *model, *flags, "--judge=keyword", "-m", "baseline", "--vsc-sample=2")
    assert res.ret == 4, res.stdout.str() + res.stderr.str()
    assert line in res.stderr.str()
    for r in starts(tmp_path):
        assert gone(int(r["pid"]))  # type: ignore[call-overload]
    assert not (tmp_path / "gate.json").exists()


def test_vllm_not_installed_is_one_line_before_any_work(suite: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))  # this Python, no vllm
    res = suite.runpytest_subprocess(*args(tmp_path), "--model=vllm/m", "--judge=keyword", "-m", "baseline")
    assert res.ret == 4
    err = [ln for ln in res.stderr.str().splitlines() if ln.startswith("ERROR")]
    assert len(err) == 1 and "vllm is not installed" in err[0] and "pip install vllm" in err[0]


def test_ctrl_c_during_the_run_leaves_no_server_of_the_model_or_the_judge(suite: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_VLLM_DELAY", "60")  # every answer hangs: the session is mid-run when Ctrl-C comes
    cmd = [sys.executable, "-m", "pytest", *args(tmp_path), "--model=vllm/m", "--judge=rubric:vllm/judge-m",
           "--vsc-judge-vllm-arg=--gpu-memory-utilization=0.4", "-m", "baseline", "--vsc-sample=4"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=suite.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=os.environ)
    requests = tmp_path / "rec" / "requests.jsonl"
    end = time.monotonic() + 120
    while not requests.exists() and proc.poll() is None and time.monotonic() < end:
        time.sleep(0.1)
    assert requests.exists(), proc.communicate(timeout=30)[0].decode()
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 2, out  # interrupted
    judge, model = sorted(starts(tmp_path), key=lambda r: str(r["argv"]))  # 'judge-m' < 'm'
    assert judge["argv"][1] == "judge-m" and judge["argv"][-1] == "--gpu-memory-utilization=0.4"  # type: ignore[index]
    assert model["argv"][1] == "m"  # type: ignore[index]
    assert "vllm: judge judge-m at http://127.0.0.1:" in out
    assert gone(int(model["pid"])) and gone(int(judge["pid"])), out  # type: ignore[call-overload]
