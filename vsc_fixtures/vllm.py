"""The suite on vLLM: options, and a vLLM server per session (per xdist worker) for a ``vllm/`` model and for a
``rubric:vllm/`` judge. Glue only: what to start, on which GPUs and how is :mod:`vscbench.models.vllm_server`'s.

- configure: the options are checked (one usage-error line, exit 4) before anything starts;
- the run: an outermost ``pytest_runtestloop`` wrapper starts the server(s) before the cases are answered and
  stops them when the loop ends, however it ends (failure, Ctrl-C); the engine's atexit and signal handlers
  and the child's parent-death signal cover the rest. Under xdist the controller starts nothing: each worker
  starts its own server on its own share of the visible GPUs.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Generator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from vscbench.errors import VscbenchError

VLLM_OPTIONS = ("vsc_vllm_arg", "vsc_tp", "vsc_dp", "vsc_judge_vllm_arg")


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("vscbench")
    g.addoption("--vsc-vllm-arg", action="append", default=[], help="an extra 'vllm serve' argument for a vllm/ model (repeatable; --vsc-vllm-arg=--max-model-len=8192)")
    g.addoption("--vsc-vllm-timeout", type=float, help="seconds a vLLM server may take to become healthy (default 900)")
    g.addoption("--vsc-tp", type=int, help="vLLM tensor parallel size (default 1)")
    g.addoption("--vsc-dp", type=int, help="vLLM data parallel size (default: the visible GPUs / TP)")
    g.addoption("--vsc-judge-vllm-arg", action="append", default=[], help="an extra 'vllm serve' argument for a rubric:vllm/ judge's own server (repeatable)")


def _state(config: pytest.Config) -> Any:
    from vsc_fixtures.plugin import STATE_KEY

    return config.stash.get(STATE_KEY, None)


def _judge_models(config: pytest.Config) -> list[str]:
    from vscbench.judges.factory import vllm_judge_models

    if config.getoption("vsc_judge_base_url"):
        return []  # attach to the server given
    return vllm_judge_models(str(config.getoption("vsc_judge")))


def _model_args(config: pytest.Config, state: Any) -> list[str]:
    return [str(a) for a in state.model.options.get("vllm_args") or []] + list(config.getoption("vsc_vllm_arg"))


def _worker(config: pytest.Config) -> tuple[int, int] | None:
    wi = getattr(config, "workerinput", None)
    if wi is None:
        return None
    return int(str(wi.get("workerid", "gw0")).removeprefix("gw") or 0), int(wi.get("workercount", 1))


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Check the vLLM options and that vLLM can start here, before any case is collected or answered."""
    state = _state(config)
    model_vllm = state is not None and state.setup is not None and state.setup.model.startswith("vllm/")
    try:
        judges = _judge_models(config) if state is not None and state.setup is not None else []
    except VscbenchError:
        return  # the plugin reports a bad --judge itself
    if not model_vllm:
        given = [f"--{o.replace('_', '-')}" for o in ("vsc_vllm_arg", "vsc_tp", "vsc_dp") if config.getoption(o)]
        if given and state is not None and state.setup is not None:
            raise pytest.UsageError(f"{', '.join(given)}: for a vllm/ model; --model is {state.setup.model}")
    if not (model_vllm or judges):
        return
    if len(judges) > 1:
        raise pytest.UsageError(f"--judge: one rubric:vllm/ judge model per session ({', '.join(judges)} given)")
    from vscbench.models import vllm_server as vs

    try:
        if config.getoption("vsc_vllm_timeout") is not None and config.getoption("vsc_vllm_timeout") <= 0:
            raise VscbenchError(f"--vsc-vllm-timeout {config.getoption('vsc_vllm_timeout')}: must be positive")
        vs.require_vllm()
        if model_vllm and not config.pluginmanager.has_plugin("dsession"):
            _model_spec(config, state)  # sizes vs GPUs (each worker checks its own share)
    except VscbenchError as exc:
        raise pytest.UsageError(str(exc)) from None


def _logs(config: pytest.Config) -> Path:
    from vscbench.store import default_store_path

    store = config.getoption("vsc_store")
    return (Path(store).expanduser() if store else default_store_path()).parent / "logs"


def _model_spec(config: pytest.Config, state: Any) -> Any:
    from vscbench.models.vllm_server import session_server_spec

    worker = _worker(config)
    suffix = f"-gw{worker[0]}" if worker else ""
    return session_server_spec(
        state.setup.model.removeprefix("vllm/"),
        args=_model_args(config, state),
        tp=config.getoption("vsc_tp"),
        dp=config.getoption("vsc_dp"),
        timeout_s=config.getoption("vsc_vllm_timeout"),
        log_path=_logs(config) / f"vllm-{state.run_id}{suffix}.log",
        worker=worker,
    )


def _say(config: pytest.Config) -> Callable[[str], None]:
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None and not hasattr(config, "workerinput"):
        return lambda line: tr.write_line(line)
    return lambda line: print(line, file=sys.stderr, flush=True)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, object, object]:
    config = session.config
    state = _state(config)
    if (
        state is None or state.setup is None or not state.selected or config.getoption("collectonly")
        or config.pluginmanager.has_plugin("dsession")  # the xdist controller: each worker serves itself
    ):  # fmt: skip
        return (yield)
    model_vllm = state.setup.model.startswith("vllm/")
    judges = _judge_models(config)
    if not (model_vllm or judges):
        return (yield)
    from vscbench.models.vllm_server import VllmServer, session_server_spec

    say = _say(config)
    with contextlib.ExitStack() as servers:
        try:
            if model_vllm:
                srv = servers.enter_context(VllmServer(_model_spec(config, state), progress=say))
                say(f"vllm: serving {srv.spec.model} at {srv.base_url} (pid {srv.pid}, vllm {srv.version or '?'}, log {srv.log_path})")
                state.setup = replace(state.setup, base_url=srv.base_url)
            for model in judges:
                if model_vllm and state.setup.model == f"vllm/{model}":
                    config.option.vsc_judge_base_url = state.setup.base_url  # the same checkpoint: share
                    say(f"vllm: the judge shares the model's server ({model})")
                    continue
                worker = _worker(config)
                spec = session_server_spec(
                    model, args=list(config.getoption("vsc_judge_vllm_arg")),
                    timeout_s=config.getoption("vsc_vllm_timeout"),
                    log_path=_logs(config) / f"vllm-judge-{state.run_id}{f'-gw{worker[0]}' if worker else ''}.log",
                    worker=worker,
                )  # fmt: skip
                jsrv = servers.enter_context(VllmServer(spec, progress=say))
                say(f"vllm: judge {model} at {jsrv.base_url} (pid {jsrv.pid}, log {jsrv.log_path})")
                config.option.vsc_judge_base_url = jsrv.base_url
        except VscbenchError as exc:
            raise pytest.UsageError(str(exc)) from None
        return (yield)
