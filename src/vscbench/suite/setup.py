"""The suite's model setup from its flags and the model alias's options (a flag wins over the alias), and the
checks of those flags that need no request. pytest-free: the plugin passes the flags' values by dest name."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from vscbench.errors import VscbenchError
from vscbench.runner.core import Limits, RetryPolicy
from vscbench.runner.run import ModelSetup
from vscbench.types import GenConfig

#: the flags (pytest option dests) a model setup reads
SETUP_FLAGS = (
    "vsc_temperature", "vsc_max_tokens", "vsc_seed", "vsc_concurrency", "vsc_max_attempts", "vsc_rpm",
    "vsc_timeout", "vsc_device", "vsc_dtype", "vsc_batch_size", "vsc_calibration",
)  # fmt: skip


def check_sample(sample: int | None) -> None:
    if sample is not None and sample < 1:
        raise VscbenchError(f"--vsc-sample {sample}: must be at least 1")


def check_base_url_model(base_url: str | None, given: str, spec: str) -> None:
    """``--vsc-base-url`` is only for an OpenAI-compatible model."""
    if base_url and not spec.startswith("openai-compatible/"):
        raise VscbenchError(f"--vsc-base-url is for an OpenAI-compatible model; --model {given} is {spec}")


def model_setup(
    spec: str,
    base_url: str | None,
    flags: Mapping[str, Any],
    alias: Mapping[str, Any],
    worker_gpu: Callable[[], str] | None = None,
) -> ModelSetup:
    """The setup the session answers with: generation config (temperature 0, 512 tokens unless given),
    limits (16 in flight), retry policy, and for an in-process model its device, dtype and batch size. On an
    xdist worker (``worker_gpu``) a plain ``cuda`` from the alias becomes that worker's GPU."""

    def pick(flag: str, key: str) -> Any:
        v = flags.get(flag)
        return v if v is not None else alias.get(key)

    gen = GenConfig(
        temperature=float(pick("vsc_temperature", "temperature") or 0.0),
        max_tokens=int(pick("vsc_max_tokens", "max_tokens") or 512),
        seed=flags.get("vsc_seed"),
    )
    concurrency = pick("vsc_concurrency", "concurrency")
    attempts = flags.get("vsc_max_attempts")
    limits = Limits(concurrency=int(16 if concurrency is None else concurrency), rpm=pick("vsc_rpm", "rpm"))
    policy = RetryPolicy.for_model(
        spec, RetryPolicy().max_attempts if attempts is None else attempts, flags.get("vsc_timeout")
    )
    hf = spec.startswith("hf/")
    device = pick("vsc_device", "device") if hf else None
    if worker_gpu is not None and device and str(device) == "cuda" and flags.get("vsc_device") is None:
        device = worker_gpu()
    return ModelSetup(
        model=spec,
        base_url=base_url,
        config=gen,
        calibrations=tuple(flags.get("vsc_calibration") or ()),
        device=device,
        dtype=pick("vsc_dtype", "dtype") if hf else None,
        batch_size=pick("vsc_batch_size", "batch_size") if hf else None,
        limits=limits,
        policy=policy,
    )
