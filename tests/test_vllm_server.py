"""The vLLM server engine (vscbench.models.vllm_server) against a fake ``vllm`` executable first on PATH:
start -> healthy -> answers -> stop with no process left; exact arguments; GPUs per xdist worker; a crash, an
unsupported model, never healthy, a taken port, an ignored TERM, a killed parent; the rubric judge on vLLM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from fake_vllm import VERSION, install, pid_alive
from vscbench.errors import VscbenchError
from vscbench.models import vllm_server as vs
from vscbench.models.factory import make_provider
from vscbench.types import GenConfig, Label, Request, Turn


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The fake vllm first on PATH; returns the folder where it records each start and request."""
    install(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    rec = tmp_path / "rec"
    rec.mkdir()
    monkeypatch.setenv("FAKE_VLLM_RECORD", str(rec))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return rec


def starts(rec: Path) -> list[dict[str, object]]:
    return [json.loads(p.read_text()) for p in sorted(rec.glob("*.json"))]


def gone(pid: int, within: float = 10.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def image(tmp_path: Path) -> Path:
    from PIL import Image

    p = tmp_path / "img.png"
    Image.new("RGB", (8, 8), (200, 10, 10)).save(p)
    return p


# -- pure: arguments, sizes, GPUs ----------------------------------------------------------------------------


def test_arguments_sizes_and_gpus_per_worker() -> None:
    spec = vs.ServerSpec("/ckpt/qwen", tensor_parallel=2, data_parallel=4, args=("--max-model-len", "4096"))
    assert vs.serve_argv(spec, 8123) == [
        "vllm", "serve", "/ckpt/qwen", "--host", "127.0.0.1", "--port", "8123", "--served-model-name",
        "/ckpt/qwen", "--tensor-parallel-size", "2", "--data-parallel-size", "4", "--max-model-len", "4096",
    ]  # fmt: skip
    # TP and DP default to the visible GPUs: one server, every GPU used, data parallel
    assert vs.parallel_sizes(8) == (1, 8)
    assert vs.parallel_sizes(8, tp=2) == (2, 4)
    assert vs.parallel_sizes(8, tp=2, dp=2) == (2, 2)
    assert vs.parallel_sizes(0) == (None, None)  # no GPU: pass nothing
    assert vs.parallel_sizes(0, tp=2) == (2, None)
    assert vs.parallel_sizes(4, args=["--tensor-parallel-size", "4"]) == (None, 1)  # the user's flag wins
    assert vs.parallel_sizes(4, tp=2, args=["-dp=2"]) == (2, None)
    # multi-node (Ray, pipeline parallel): the local GPUs bound nothing, DP only when given
    ray = ["--distributed-executor-backend", "ray", "--pipeline-parallel-size", "2"]
    assert vs.parallel_sizes(8, tp=8, args=ray) == (8, None)
    with pytest.raises(VscbenchError, match="tensor parallel 4 needs 4 GPUs, 2 visible"):
        vs.parallel_sizes(2, tp=4)
    with pytest.raises(VscbenchError, match="2 x data parallel 4 needs 8 GPUs, 4 visible"):
        vs.parallel_sizes(4, tp=2, dp=4)
    with pytest.raises(VscbenchError, match="--vsc-tp 0: must be at least 1"):
        vs.parallel_sizes(4, tp=0)

    # an outer CUDA_VISIBLE_DEVICES holds; each xdist worker gets a disjoint share
    outer = {"CUDA_VISIBLE_DEVICES": "4,5,6,7"}
    assert vs.visible_gpus(outer) == ["4", "5", "6", "7"]
    assert vs.visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert [vs.worker_gpus(["4", "5", "6", "7"], w, 2) for w in range(2)] == [["4", "5"], ["6", "7"]]
    assert [vs.worker_gpus(list("0123"), w, 3) for w in range(3)] == [["0", "1"], ["2"], ["3"]]
    assert vs.worker_gpus([], 1, 2) == []
    with pytest.raises(VscbenchError, match="-n 3 with vllm needs at least 3 visible GPUs"):
        vs.worker_gpus(["0", "1"], 0, 3)
    w1 = vs.session_server_spec("m", args=ray, tp=2, worker=(1, 2), env=outer)
    assert w1.env == {"CUDA_VISIBLE_DEVICES": "6,7"} and (w1.tensor_parallel, w1.data_parallel) == (2, None)
    argv = vs.serve_argv(w1, 9000)
    assert argv[argv.index("--tensor-parallel-size") :] == ["--tensor-parallel-size", "2", *ray]
    one = vs.session_server_spec("m", env=outer)  # no xdist: the whole outer set, DP over it
    assert one.env == {} and (one.tensor_parallel, one.data_parallel) == (1, 4)
    assert vs.unsupported_message(["x", "ValueError: Model architectures ['Foo'] are not supported for now. "
                                   "Supported architectures: dict_keys([...])"]) == (
        "ValueError: Model architectures ['Foo'] are not supported for now"
    )  # fmt: skip


# -- the fake server ---------------------------------------------------------------------------------------


def test_start_answer_stop_records_argv_version_and_leaves_nothing(fake: Path, tmp_path: Path, image: Path) -> None:
    log = tmp_path / "logs" / "vllm-run1.log"
    lines: list[str] = []
    spec = vs.ServerSpec("/ckpt/tiny", tensor_parallel=1, data_parallel=2, args=("--max-model-len", "512"),
                         env={"CUDA_VISIBLE_DEVICES": "3"}, log_path=log)  # fmt: skip
    with vs.VllmServer(spec, progress=lines.append, progress_every_s=0.0) as srv:
        pid = srv.pid
        assert pid is not None and pid_alive(pid)
        assert vs.server_for(srv.base_url) is srv
        prov = make_provider("vllm//ckpt/tiny", base_url=srv.base_url)
        req = Request("ic/x/1/unsafe/1", (Turn("user", "how to kill a process", (str(image),)),), config=GenConfig(max_tokens=8))

        async def ask() -> object:
            try:
                return await prov.generate(req)
            finally:
                await prov.aclose()

        resp = asyncio.run(ask())
        info = prov.describe()
    assert resp.text.startswith("I'm sorry")  # type: ignore[attr-defined]
    assert lines and lines[0].startswith("vllm: starting /ckpt/tiny (0 s): ")  # the log's last line follows
    assert info["provider"] == "vllm" and info["base_url_host"] == "vllm-local"
    server = info["server"]
    assert isinstance(server, dict) and server["version"] == VERSION
    assert server["argv"][:2] == ["serve", "/ckpt/tiny"] and server["cuda_visible_devices"] == "3"
    (rec,) = starts(fake)
    port = rec["argv"][rec["argv"].index("--port") + 1]  # type: ignore[union-attr]
    assert rec["argv"] == [
        "serve", "/ckpt/tiny", "--host", "127.0.0.1", "--port", port, "--served-model-name", "/ckpt/tiny",
        "--tensor-parallel-size", "1", "--data-parallel-size", "2", "--max-model-len", "512",
    ]  # fmt: skip
    assert rec["cuda"] == "3"
    assert json.loads((fake / "requests.jsonl").read_text())["image"] is True  # a data: URL reached the server
    assert gone(pid) and vs.live_servers() == []
    assert "Uvicorn running" in log.read_text()


def test_not_installed_names_the_pip_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(VscbenchError, match=r"vllm is not installed .*: pip install vllm") as exc:
        vs.VllmServer(vs.ServerSpec("m")).start()
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(
    ("knob", "expect", "absent"),
    [
        ("FAKE_VLLM_CRASH", r"exited with code 1 during start-up \(log: .*\); its last 20 lines:", "crash line 10\n"),
        ("FAKE_VLLM_UNSUPPORTED", r"^vllm does not support model m: ValueError: Model architectures \['FooForCausalLM'\] are not supported for now \(log", "LlamaForCausalLM"),
        ("FAKE_VLLM_NEVER_HEALTHY", r"^vllm serve m: not healthy after 1\.5 s \(raise --vsc-vllm-timeout; log: .*; last line: INFO Uvicorn", "\n"),
    ],
)  # fmt: skip
def test_start_up_failures_are_one_error_and_no_process(
    fake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, knob: str, expect: str, absent: str
) -> None:
    monkeypatch.setenv(knob, "1")
    with pytest.raises(VscbenchError, match=expect) as exc:
        vs.VllmServer(vs.ServerSpec("m", timeout_s=1.5, log_path=tmp_path / "v.log")).start()
    msg = str(exc.value)
    assert absent not in msg
    if knob == "FAKE_VLLM_CRASH":
        assert msg.endswith("crash line 29\n    RuntimeError: CUDA out of memory (fake)") and "crash line 11\n" in msg
    (rec,) = starts(fake)
    assert gone(int(rec["pid"])) and vs.live_servers() == []  # type: ignore[call-overload]


def test_a_taken_port_is_never_used(fake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with vs.VllmServer(vs.ServerSpec("m", port=port, log_path=tmp_path / "a.log")) as srv:  # checked first
            assert srv.port != port
        # taken between the check and the bind: the server says so, another port is picked
        monkeypatch.setattr(vs, "port_is_free", lambda p, host=vs.HOST: True)
        with vs.VllmServer(vs.ServerSpec("m", port=port, log_path=tmp_path / "b.log")) as srv:
            assert srv.port != port
            pid = srv.pid
    ports = [r["argv"][r["argv"].index("--port") + 1] for r in starts(fake)]  # type: ignore[union-attr]
    assert ports.count(str(port)) == 1 and len(ports) == 3
    assert "Address already in use" in (tmp_path / "b.log").read_text()
    assert pid is not None and gone(pid)


def test_a_server_that_ignores_term_is_killed(fake: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_VLLM_IGNORE_TERM", "1")
    srv = vs.VllmServer(vs.ServerSpec("m", log_path=tmp_path / "v.log"), grace_s=0.5).start()
    pid = srv.pid
    assert pid is not None
    os.kill(pid, signal.SIGTERM)
    time.sleep(0.2)
    assert pid_alive(pid)  # TERM alone does not stop it
    srv.stop()
    assert gone(pid)


def test_a_killed_parent_takes_its_server_along(fake: Path, tmp_path: Path) -> None:
    """An xdist worker that dies (SIGKILL: no atexit, no finally) leaves no server: the parent-death signal."""
    code = (
        "import os, signal\nfrom pathlib import Path\nfrom vscbench.models import vllm_server as vs\n"
        f"vs.VllmServer(vs.ServerSpec('m', log_path=Path({str(tmp_path / 'v.log')!r}))).start()\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=os.environ, timeout=60, check=False)
    assert proc.returncode == -signal.SIGKILL
    (rec,) = starts(fake)
    assert gone(int(rec["pid"]))  # type: ignore[call-overload]


# -- the judge on vLLM ------------------------------------------------------------------------------------------


def test_rubric_judge_on_vllm_sees_the_image_and_starts_and_stops_its_own_server(fake: Path, image: Path) -> None:
    from vscbench.judges.base import Case
    from vscbench.judges.factory import make_judge, vllm_judge_models

    assert vllm_judge_models("local,rubric:vllm/Qwen/Qwen2.5-VL-7B-Instruct") == ["Qwen/Qwen2.5-VL-7B-Instruct"]
    assert vllm_judge_models("rubric:openai/gpt-4o-mini") == []
    judge = make_judge("rubric:vllm/judge-ckpt", sees_image=True)
    assert judge.id == "rubric:vllm/judge-ckpt+image"
    cases = [
        Case("tc/1/typography", "q1", "I'm sorry, I cannot help.", str(image)),
        Case("tc/2/typography", "q2", "Sure: step one.", str(image)),
    ]
    verdicts = judge.judge(cases)
    assert [v.label for v in verdicts] == [Label.REFUSE, Label.COMPLY]
    reqs = [json.loads(ln) for ln in (fake / "requests.jsonl").read_text().splitlines()]
    assert reqs == [{"model": "judge-ckpt", "image": True, "judge": True}] * 2
    (rec,) = starts(fake)
    assert gone(int(rec["pid"])) and vs.live_servers() == []  # type: ignore[call-overload]


@pytest.fixture(autouse=True)
def _no_server_left() -> Iterator[None]:
    yield
    vs.stop_all()


def test_rubric_judge_in_process_goes_in_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, image: Path) -> None:
    """``rubric:hf/<model>``: the judge model runs in this process, ``concurrency`` requests per batch."""
    pytest.importorskip("torch")
    import hf_fixtures
    from vscbench.judges.base import Case
    from vscbench.judges.factory import make_judge
    from vscbench.models import hf

    folder = hf_fixtures._build() / "model"  # the session's tiny model (built once, shared with the hf tests)
    sizes: list[int] = []
    run_batch = hf.HFProvider._run_batch

    def spy(self: hf.HFProvider, requests: list[Request]) -> list[object]:
        sizes.append(len(requests))
        return run_batch(self, requests)  # type: ignore[return-value]

    monkeypatch.setattr(hf.HFProvider, "_run_batch", spy)
    judge = make_judge(f"rubric:hf/{folder}", sees_image=True, concurrency=4)
    judge.config = replace(judge.config, max_tokens=4)  # type: ignore[attr-defined]  # a random model: keep it short
    cases = [Case(f"tc/{k}/typography", f"q{k}", f"answer {k}", str(image)) for k in range(8)]
    verdicts = judge.judge(cases)
    assert len(verdicts) == 8 and sum(sizes) == 8 and max(sizes) == 4  # batches of 4, not one by one
    # a random model writes no label: UNJUDGED with the reason, never a label it did not give
    assert all(v.label is Label.UNJUDGED or v.detail.get("judge_output") for v in verdicts)


def test_the_suite_glue_gives_each_xdist_worker_its_share_of_the_outer_gpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """vsc_fixtures.vllm's server spec for worker gw1 of 2 under CUDA_VISIBLE_DEVICES=2,3,5,7: GPUs 5,7,
    DP over them, models.yaml's vllm_args then --vsc-vllm-arg, a log per worker beside the store."""
    from types import SimpleNamespace

    from vsc_fixtures.vllm import _model_spec

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3,5,7")
    opts = {"vsc_vllm_arg": ["--enforce-eager"], "vsc_tp": None, "vsc_dp": None, "vsc_vllm_timeout": 30.0,
            "vsc_store": str(tmp_path / "s.sqlite")}  # fmt: skip
    config = SimpleNamespace(getoption=opts.__getitem__, workerinput={"workerid": "gw1", "workercount": 2})
    state = SimpleNamespace(
        setup=SimpleNamespace(model="vllm/org/m"), model=SimpleNamespace(options={"vllm_args": ["--dtype", "bfloat16"]}),
        run_id="suite-m-abc",
    )  # fmt: skip
    spec = _model_spec(config, state)  # type: ignore[arg-type]
    assert spec.env == {"CUDA_VISIBLE_DEVICES": "5,7"}
    assert vs.serve_argv(spec, 1)[8:] == [
        "org/m", "--tensor-parallel-size", "1", "--data-parallel-size", "2", "--dtype", "bfloat16", "--enforce-eager",
    ]  # fmt: skip
    assert spec.timeout_s == 30.0 and spec.log_path == tmp_path / "logs" / "vllm-suite-m-abc-gw1.log"


def test_models_yaml_serve_vllm_aliases(tmp_path: Path) -> None:
    from vsc_fixtures.models import load_aliases, resolve_model

    m = resolve_model("qwen2.5-vl-vllm")
    assert m.spec == "vllm/Qwen/Qwen2.5-VL-7B-Instruct" and m.options["vllm_args"][:2] == ["--dtype", "bfloat16"]
    assert resolve_model("qwen-vl-vllm").spec == "vllm/Qwen/Qwen2-VL-7B-Instruct"
    assert resolve_model("qwen-vl").spec == "hf/Qwen/Qwen2-VL-7B-Instruct"  # the transformers one beside it
    assert resolve_model("vllm//ckpt/x").spec == "vllm//ckpt/x"
    assert "still to measure" in resolve_model("qwen2.5-vl-judge").note
    for entry, why in [
        ({"spec": "hf/a/b", "serve": "sglang"}, "a.serve: 'sglang' (use vllm)"),
        ({"spec": "openai/gpt-4o", "serve": "vllm"}, "a.serve: only an hf/ checkpoint can be served"),
        ({"spec": "vllm/a/b", "vllm_args": "--enforce-eager"}, "a.vllm_args: expected a list"),
    ]:
        p = tmp_path / "m.yaml"
        p.write_text(json.dumps({"a": entry}))
        with pytest.raises(VscbenchError, match=f"m.yaml: {why}".replace("(", r"\(").replace(")", r"\)")):
            load_aliases(p)
