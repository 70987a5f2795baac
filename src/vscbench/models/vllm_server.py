"""``vllm/<checkpoint or hub id>``: a vLLM server this process starts, talks to, and stops.

The model is served by ``vllm serve MODEL --host 127.0.0.1 --port P --served-model-name NAME
[--tensor-parallel-size T] [--data-parallel-size D] [args]`` and asked through the OpenAI-compatible provider
(:class:`VllmProvider`: images as ``data:`` URLs, the runner's concurrency).

- **Start**: a free port (a taken one is never used: another is picked, also when the server itself reports
  the address in use); its own process group and session; output to a log file; ``GET /health`` is polled
  until it answers 200, with a time-out (default :data:`DEFAULT_TIMEOUT_S`) and a progress line showing the
  log's last line.
- **Stop**: TERM to the process group, a grace period, then KILL to the group. Never a server left behind:
  :class:`VllmServer` is a context manager, every live server is also stopped at exit (``atexit``) and on
  SIGTERM/SIGHUP, and the child gets a parent-death signal (Linux), so a killed parent (an xdist worker that
  dies) takes its server with it.
- **Errors**, one :class:`~vscbench.errors.VscbenchError` line each, nothing left running: ``vllm`` not
  installed (the pip command), the server exits during start-up (the log's last lines), not healthy within
  the time-out, a model vLLM does not support (its message, shortened).
- **GPUs**: :func:`visible_gpus` (``CUDA_VISIBLE_DEVICES`` or ``nvidia-smi -L``), :func:`worker_gpus` (a
  disjoint share per xdist worker) and :func:`parallel_sizes` (TP and DP default to the visible GPUs:
  TP 1 and DP = GPUs / TP; one server with data parallelism is the recommended way).

Nothing here imports vLLM: the server is a separate program, found on ``PATH``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vscbench.errors import VscbenchError
from vscbench.models.openai_api import OpenAIProvider

EXECUTABLE = "vllm"
PIP = "pip install vllm"
DEFAULT_TIMEOUT_S = 900.0
HOST = "127.0.0.1"
#: Lines of the log shown when the server exits during start-up.
LOG_TAIL = 20
#: Seconds between TERM and KILL.
GRACE_S = 20.0
#: Attempts at a free port when the server reports its address in use (another process took it first).
PORT_ATTEMPTS = 3
#: Flags that set a parallel size; given in the arguments, they win over the computed defaults.
TP_FLAGS = ("--tensor-parallel-size", "-tp")
DP_FLAGS = ("--data-parallel-size", "-dp")
#: Flags that spread one server over several machines (Ray): the local GPU count then says nothing of DP.
MULTINODE_FLAGS = ("--pipeline-parallel-size", "-pp", "--distributed-executor-backend")

_UNSUPPORTED = re.compile(
    r"(?:architectures?\b.*\bnot supported|not supported\b.*\bmodel|model\b.*\bnot supported|"
    r"unsupported model|no model architecture|is not a supported)",
    re.IGNORECASE,
)
_ADDRESS_IN_USE = re.compile(r"address already in use|errno 98\b", re.IGNORECASE)


def _flag_given(args: Sequence[str], flags: Sequence[str]) -> bool:
    return any(a in flags or any(a.startswith(f + "=") for f in flags) for a in args)


# -- GPUs ----------------------------------------------------------------------------------------------------


def visible_gpus(env: Mapping[str, str] | None = None) -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` (an empty value: none), else the indices
    ``nvidia-smi -L`` lists, else none."""
    env = os.environ if env is None else env
    cvd = env.get("CUDA_VISIBLE_DEVICES")
    if cvd is not None:
        return [g.strip() for g in cvd.split(",") if g.strip() and g.strip() != "-1"]
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(k) for k, line in enumerate(ln for ln in out.splitlines() if line_is_gpu(ln))]


def line_is_gpu(line: str) -> bool:
    return line.strip().startswith("GPU ")


def worker_gpus(visible: Sequence[str], worker: int, workers: int) -> list[str]:
    """Worker ``worker`` of ``workers`` (xdist ``gwN``, N = worker): a disjoint, contiguous share of the visible
    GPUs (the leftovers of an uneven split go to the first workers). No GPUs: none each (a CPU server).
    Fewer GPUs than workers is one error line: each worker runs its own server on its own GPUs."""
    if workers < 1 or not 0 <= worker < workers:
        raise VscbenchError(f"worker {worker} of {workers}: not a worker of this session")
    if not visible:
        return []
    if len(visible) < workers:
        raise VscbenchError(
            f"-n {workers} with vllm needs at least {workers} visible GPUs (each worker runs its own server), "
            f"{len(visible)} visible: drop -n and let one server use them all with data parallelism"
        )
    per, extra = divmod(len(visible), workers)
    start = worker * per + min(worker, extra)
    return list(visible[start : start + per + (1 if worker < extra else 0)])


def _flag_value(args: Sequence[str], flags: Sequence[str]) -> int | None:
    """The integer value of the last of ``flags`` in ``args`` (``--f N`` or ``--f=N``), else None."""
    found: int | None = None
    for k, a in enumerate(args):
        raw = None
        if a in flags and k + 1 < len(args):
            raw = args[k + 1]
        elif "=" in a and a.split("=", 1)[0] in flags:
            raw = a.split("=", 1)[1]
        if raw is not None:
            with contextlib.suppress(ValueError):
                found = int(raw)
    return found


def parallel_sizes(
    gpus: int, tp: int | None = None, dp: int | None = None, args: Sequence[str] = ()
) -> tuple[int | None, int | None]:
    """``(tensor parallel, data parallel)`` to pass (None: pass nothing). With GPUs visible, TP defaults to 1
    and DP to ``gpus // TP``: every visible GPU is used, by one server. Sizes already in ``args`` win (not
    passed twice); with multi-node flags in ``args`` (pipeline parallelism, Ray) the local GPUs do not bound
    the sizes and DP is passed only when given. No GPUs: only what was given."""
    for name, v in (("--vsc-tp", tp), ("--vsc-dp", dp)):
        if v is not None and v < 1:
            raise VscbenchError(f"{name} {v}: must be at least 1")
    tp_in_args, dp_in_args = _flag_given(args, TP_FLAGS), _flag_given(args, DP_FLAGS)
    multinode = _flag_given(args, MULTINODE_FLAGS)
    if tp_in_args:
        tp = None
    if dp_in_args:
        dp = None
    if gpus <= 0 or multinode:
        return tp, dp
    t = tp or _flag_value(args, TP_FLAGS) or 1
    d = dp or _flag_value(args, DP_FLAGS)
    if d is None:
        if t > gpus:
            raise VscbenchError(f"tensor parallel {t} needs {t} GPUs, {gpus} visible")
        d = gpus // t
        dp = None if dp_in_args else d
    elif t * d > gpus:
        raise VscbenchError(f"tensor parallel {t} x data parallel {d} needs {t * d} GPUs, {gpus} visible")
    return (None if tp_in_args else t), (None if dp_in_args else dp or d)


# -- the server ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSpec:
    """What to serve and how. ``model``: a checkpoint folder or hub id; ``served_name``: the name requests
    use (default: ``model``); ``env``: variables set for the server (e.g. ``CUDA_VISIBLE_DEVICES``)."""

    model: str
    served_name: str = ""
    tensor_parallel: int | None = None
    data_parallel: int | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = DEFAULT_TIMEOUT_S
    log_path: Path | None = None
    port: int | None = None  # preferred; a taken one is replaced by a free one

    @property
    def name(self) -> str:
        return self.served_name or self.model


def serve_argv(spec: ServerSpec, port: int, executable: str = EXECUTABLE, host: str = HOST) -> list[str]:
    """The exact command line of the server."""
    argv = [executable, "serve", spec.model, "--host", host, "--port", str(port), "--served-model-name", spec.name]
    if spec.tensor_parallel is not None:
        argv += ["--tensor-parallel-size", str(spec.tensor_parallel)]
    if spec.data_parallel is not None:
        argv += ["--data-parallel-size", str(spec.data_parallel)]
    return argv + list(spec.args)


def session_server_spec(
    model: str,
    *,
    args: Sequence[str] = (),
    tp: int | None = None,
    dp: int | None = None,
    timeout_s: float | None = None,
    log_path: Path | None = None,
    worker: tuple[int, int] | None = None,
    env: Mapping[str, str] | None = None,
) -> ServerSpec:
    """The server of one suite session, or of xdist worker ``worker = (index, count)``: the visible GPUs (the
    worker's disjoint share, set as its ``CUDA_VISIBLE_DEVICES``), TP and DP from them (:func:`parallel_sizes`),
    the arguments in order (``models.yaml``'s ``vllm_args`` then ``--vsc-vllm-arg``)."""
    visible = visible_gpus(env)
    gpus = worker_gpus(visible, *worker) if worker is not None else visible
    tp_, dp_ = parallel_sizes(len(gpus), tp, dp, args)
    extra = {"CUDA_VISIBLE_DEVICES": ",".join(gpus)} if worker is not None and gpus else {}
    return ServerSpec(
        model, tensor_parallel=tp_, data_parallel=dp_, args=tuple(str(a) for a in args), env=extra,
        timeout_s=DEFAULT_TIMEOUT_S if timeout_s is None else float(timeout_s), log_path=log_path,
    )  # fmt: skip


def require_vllm(executable: str = EXECUTABLE) -> str:
    """The path of the ``vllm`` executable, or the one error line naming the pip command."""
    exe = shutil.which(executable)
    if exe is None:
        raise VscbenchError(
            f"vllm is not installed ('{executable}' is not on PATH): {PIP} (Linux with a CUDA GPU), or "
            "attach to a running server with --model=openai-compatible/NAME --vsc-base-url=URL"
        )
    return exe


def port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def log_tail(path: Path | None, n: int = LOG_TAIL) -> list[str]:
    if path is None:
        return []
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [ln.rstrip() for ln in text.splitlines() if ln.strip()][-n:]


def unsupported_message(lines: Sequence[str], limit: int = 200) -> str | None:
    """vLLM's own words for a model it does not support (the last such line, without the list of supported
    architectures that follows it), or None."""
    for line in reversed(lines):
        if _UNSUPPORTED.search(line):
            msg = re.split(r"\.?\s*Supported architectures", line.strip(), maxsplit=1)[0]
            return msg if len(msg) <= limit else msg[: limit - 1] + "…"
    return None


_LIVE: dict[int, VllmServer] = {}
_HOOKED: list[bool] = []


def live_servers() -> list[VllmServer]:
    return list(_LIVE.values())


def server_for(base_url: str | None) -> VllmServer | None:
    """The live server behind ``base_url`` (this process started it), else None."""
    for srv in _LIVE.values():
        if base_url and srv.base_url.rstrip("/") == base_url.rstrip("/"):
            return srv
    return None


def stop_all() -> None:
    for srv in list(_LIVE.values()):
        srv.stop()


def _on_signal(signum: int, frame: Any) -> None:
    stop_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_cleanup() -> None:
    """Once per process: stop every live server at exit and on SIGTERM/SIGHUP (when nobody else handles them)."""
    if _HOOKED:
        return
    _HOOKED.append(True)
    atexit.register(stop_all)
    with contextlib.suppress(ValueError):  # not the main thread: atexit and the context manager remain
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) in (signal.SIG_DFL, None):
                signal.signal(sig, _on_signal)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the server gets SIGTERM when the process that started it dies (even by SIGKILL). The signal is
    tied to the starting *thread*: start servers from a thread that lives as long as they should (the main one)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except Exception:
        pass


class VllmServer:
    """One ``vllm serve`` process (see the module docstring). ``with VllmServer(spec) as srv: srv.base_url``."""

    def __init__(
        self,
        spec: ServerSpec,
        *,
        executable: str = EXECUTABLE,
        host: str = HOST,
        progress: Callable[[str], None] | None = None,
        progress_every_s: float = 10.0,
        grace_s: float = GRACE_S,
    ) -> None:
        self.spec = spec
        self.executable = executable
        self.host = host
        self.progress = progress
        self.progress_every_s = progress_every_s
        self.grace_s = grace_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.last_pid: int | None = None  # the server's pid once stopped
        self.port: int | None = None
        self.argv: list[str] = []
        self.version: str | None = None
        self.started_s: float | None = None
        self.log_path = spec.log_path

    # -- facts -------------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def info(self) -> dict[str, Any]:
        """What the run manifest records: the server's version and arguments (no secrets: the arguments are
        the user's own flags), its parallel sizes and GPUs."""
        return {
            "engine": "vllm",
            "version": self.version,
            "model": self.spec.model,
            "served_model_name": self.spec.name,
            "argv": self.argv[1:],  # without the executable's path
            "tensor_parallel_size": self.spec.tensor_parallel,
            "data_parallel_size": self.spec.data_parallel,
            "cuda_visible_devices": self.spec.env.get("CUDA_VISIBLE_DEVICES"),
            "startup_s": None if self.started_s is None else round(self.started_s, 1),
        }

    # -- lifecycle -------------------------------------------------------------------------------------
    def __enter__(self) -> VllmServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> VllmServer:
        exe = require_vllm(self.executable)
        _install_cleanup()
        log = self.log_path or Path("vscbench_runs") / "logs" / f"vllm-{os.getpid()}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log
        t0 = time.monotonic()
        for attempt in range(PORT_ATTEMPTS):
            preferred = self.spec.port if attempt == 0 else None
            self.port = preferred if preferred is not None and port_is_free(preferred, self.host) else free_port(self.host)
            if self._launch(exe, log, attempt):
                self.started_s = time.monotonic() - t0
                self.version = self._get_version()
                return self
        raise VscbenchError(  # pragma: no cover - three ports taken in a row between check and bind
            f"vllm serve {self.spec.model}: no free port after {PORT_ATTEMPTS} attempts (log: {log})"
        )

    def _launch(self, exe: str, log: Path, attempt: int) -> bool:
        """Start the process and wait until healthy: True; the address was taken under it: False (stopped);
        any other failure raises (stopped)."""
        assert self.port is not None
        self.argv = serve_argv(self.spec, self.port, exe, self.host)
        env = {**os.environ, **self.spec.env}
        with open(log, "ab" if attempt else "wb") as fh:
            fh.write(f"# {' '.join(self.argv)}\n".encode())
            fh.flush()
            self.proc = subprocess.Popen(
                self.argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True, preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )  # fmt: skip
        _LIVE[id(self)] = self
        try:
            return self._wait_healthy(log)
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self, log: Path) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + self.spec.timeout_s
        t0 = time.monotonic()
        next_note = t0 + self.progress_every_s
        delay = 0.1
        while True:
            code = self.proc.poll()
            if code is not None:
                tail = log_tail(log)
                if any(_ADDRESS_IN_USE.search(ln) for ln in tail[-5:]):
                    self.stop()
                    return False
                self.stop()
                why = unsupported_message(tail)
                if why is not None:
                    raise VscbenchError(f"vllm does not support model {self.spec.model}: {why} (log: {log})")
                shown = "\n".join("    " + ln for ln in tail) or "    (the log is empty)"
                raise VscbenchError(
                    f"vllm serve {self.spec.model} exited with code {code} during start-up (log: {log}); "
                    f"its last {min(LOG_TAIL, len(tail))} lines:\n{shown}"
                )
            if self._healthy():
                return True
            now = time.monotonic()
            if now >= deadline:
                last = (log_tail(log, 1) or ["(the log is empty)"])[-1]
                self.stop()
                raise VscbenchError(
                    f"vllm serve {self.spec.model}: not healthy after {self.spec.timeout_s:g} s (raise "
                    f"--vsc-vllm-timeout; log: {log}; last line: {last[:200]})"
                )
            if self.progress is not None and now >= next_note:
                last = (log_tail(log, 1) or [""])[-1]
                self.progress(f"vllm: starting {self.spec.model} ({now - t0:.0f} s): {last[:160]}")
                next_note = now + self.progress_every_s
            time.sleep(delay)
            delay = min(1.0, delay * 1.5)

    def _get(self, path: str, timeout: float = 2.0) -> bytes | None:
        url = f"http://{self.host}:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback http only
                return bytes(resp.read()) if resp.status == 200 else None
        except (OSError, urllib.error.URLError, ValueError):
            return None

    def _healthy(self) -> bool:
        return self._get("/health") is not None

    def _get_version(self) -> str | None:
        body = self._get("/version")
        if body is None:
            return None
        try:
            v = json.loads(body).get("version")
        except (ValueError, AttributeError):
            return None
        return str(v) if v else None

    def stop(self) -> None:
        """TERM to the process group, wait up to ``grace_s``, then KILL to the group (its children too)."""
        proc, self.proc = self.proc, None  # once: a second stop never signals a group id the system reused
        _LIVE.pop(id(self), None)
        if proc is None:
            return
        self.last_pid = proc.pid
        pgid = proc.pid  # start_new_session: the server leads its own group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=self.grace_s)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


# -- the provider -------------------------------------------------------------------------------------------


class VllmProvider(OpenAIProvider):
    """``vllm/<checkpoint>`` at ``base_url``: the OpenAI-compatible provider under the served name (the
    checkpoint), described as vLLM with the server's version and arguments when this process started it.
    The port is left out of ``base_url_host``: each session's server gets a new one, and a resumed run must
    still match."""

    def __init__(self, model: str, *, base_url: str, **options: Any) -> None:
        super().__init__(model, base_url=base_url, compatible=True, **options)
        self.spec = f"vllm/{model}"

    def describe(self) -> dict[str, object]:
        info = dict(super().describe())
        srv = server_for(self.base_url)
        info["provider"] = "vllm"
        info["base_url_host"] = "vllm-local" if srv is not None else info.get("base_url_host")
        if srv is not None:
            info["server"] = srv.info()
        return info
