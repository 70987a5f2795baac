"""The ``hf/`` provider on a tiny randomly initialised LLaVA-class model built in the test (no hub)."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from hf_fixtures import sample_requests, tiny_images, tiny_model_dir
from vscbench.errors import VscbenchError
from vscbench.models.base import PermanentError, Provider
from vscbench.models.hf import HFProvider
from vscbench.models.tiny import build_tiny_vlm
from vscbench.types import GenConfig, Request, Response, Status, Turn

__all__ = ["tiny_images", "tiny_model_dir"]  # fixtures, imported for pytest


@pytest.fixture(scope="module")
def single(tiny_model_dir: Path) -> HFProvider:
    return HFProvider(str(tiny_model_dir), device="cpu", batch_size=1)


@pytest.fixture(scope="module")
def batched(tiny_model_dir: Path) -> HFProvider:
    return HFProvider(str(tiny_model_dir), device="cpu", batch_size=4)


def _gather(provider: HFProvider, requests: list[Request]) -> list[Response]:
    async def go() -> list[Response]:
        return list(await asyncio.gather(*(provider.generate(r) for r in requests)))

    return asyncio.run(go())


def _one_by_one(provider: HFProvider, requests: list[Request]) -> list[Response]:
    async def go() -> list[Response]:
        return [await provider.generate(r) for r in requests]

    return asyncio.run(go())


def test_tiny_model_is_deterministic_from_its_seed(tmp_path: Path) -> None:
    a = build_tiny_vlm(tmp_path / "a", seed=3)
    b = build_tiny_vlm(tmp_path / "b", seed=3)
    c = build_tiny_vlm(tmp_path / "c", seed=4)
    weights = [(p / "model.safetensors").read_bytes() for p in (a, b, c)]
    assert weights[0] == weights[1]
    assert weights[0] != weights[2]
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()


def test_provider_protocol_and_describe(single: HFProvider, tiny_model_dir: Path) -> None:
    assert isinstance(single, Provider)
    assert single.supports_activations and single.images_in_history
    d = single.describe()
    assert d["provider"] == "hf" and d["device"] == "cpu" and d["dtype"] == "float32"
    assert d["local_path"] == str(tiny_model_dir.resolve())
    assert d["num_layers"] == 2 and d["hidden_size"] == 64
    assert single.spec == f"hf/{tiny_model_dir}"


def test_generate_with_image_and_text_only(single: HFProvider, tiny_images: dict[str, Path]) -> None:
    reqs = sample_requests(tiny_images, max_tokens=6)
    out = _one_by_one(single, reqs[:2])
    for req, resp in zip(reqs[:2], out, strict=True):
        assert resp.item_id == req.item_id
        assert resp.status in (Status.OK, Status.EMPTY)
        assert resp.status is Status.OK or resp.text == ""
        assert resp.output_tokens is not None and 1 <= resp.output_tokens <= 6
        assert resp.finish_reason in ("stop", "length")
        assert resp.input_tokens is not None and resp.latency_s is not None
    # the image request carries 16 image tokens (64x64 image, 16x16 patches) on top of its text
    assert out[0].input_tokens is not None and out[0].input_tokens > 16
    # greedy: asking again gives the same answer
    again = _one_by_one(single, reqs[:1])
    assert again[0].text == out[0].text


def test_prompt_uses_the_chat_template(single: HFProvider, tiny_images: dict[str, Path]) -> None:
    reqs = sample_requests(tiny_images)
    p = single.prompt(reqs[3])
    assert p.count("<image>") == 2 and p.endswith("<|assistant|>")
    assert p.index("What colour") < p.index("Blue.") < p.index("And this one")
    assert "Be helpful." in single.prompt(reqs[1])


def test_batched_equals_one_by_one(
    single: HFProvider, batched: HFProvider, tiny_images: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    reqs = sample_requests(tiny_images, max_tokens=10)
    alone = _one_by_one(single, reqs)
    sizes: list[int] = []
    real = batched.generate_batch

    def spy(requests: Any, images: Any = None) -> list[Response]:
        sizes.append(len(requests))
        return real(requests, images)

    monkeypatch.setattr(batched, "generate_batch", spy)
    together = _gather(batched, reqs)
    assert sizes == [4, 1]  # five concurrent calls, batch size 4: the micro-batcher really batched
    assert [r.item_id for r in together] == [r.item_id for r in reqs]
    assert [r.text for r in together] == [r.text for r in alone]
    assert [r.output_tokens for r in together] == [r.output_tokens for r in alone]
    assert [r.input_tokens for r in together] == [r.input_tokens for r in alone]
    assert len({r.text for r in alone}) > 1  # the requests really differ


def test_only_identical_configs_share_a_batch(
    batched: HFProvider, single: HFProvider, tiny_images: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    reqs = sample_requests(tiny_images, max_tokens=4)
    reqs[1] = dataclasses.replace(reqs[1], config=GenConfig(max_tokens=7))
    sizes: list[int] = []
    real = batched.generate_batch

    def spy(requests: Any, images: Any = None) -> list[Response]:
        sizes.append(len(requests))
        assert len({r.config for r in requests}) == 1
        return real(requests, images)

    monkeypatch.setattr(batched, "generate_batch", spy)
    together = _gather(batched, reqs)
    assert sorted(sizes) == [1, 4]
    assert [r.text for r in together] == [r.text for r in _one_by_one(single, reqs)]


def test_unreadable_image_fails_alone(batched: HFProvider, tiny_images: dict[str, Path]) -> None:
    reqs = sample_requests(tiny_images)[:3]
    bad = Request(
        "bad", (Turn("user", "what is this?", (str(tiny_images["broken"]),)),), config=reqs[0].config
    )

    async def go() -> list[Response | BaseException]:
        return list(
            await asyncio.gather(*(batched.generate(r) for r in [*reqs, bad]), return_exceptions=True)
        )

    out = asyncio.run(go())
    assert all(isinstance(r, Response) for r in out[:3])
    assert isinstance(out[3], PermanentError) and "broken.png" in str(out[3])


def test_missing_local_model_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(VscbenchError, match="no such local folder"):
        HFProvider(str(tmp_path / "nope"), device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VscbenchError, match="cannot load model"):
        HFProvider(str(tmp_path / "empty"), device="cpu")


@pytest.mark.parametrize("size", [0, -3])
def test_batch_size_below_one_is_refused_not_bent(tiny_model_dir: Path, size: int) -> None:
    with pytest.raises(VscbenchError, match=f"--batch-size {size}: must be at least 1"):
        HFProvider(str(tiny_model_dir), device="cpu", batch_size=size)


def test_factory_builds_the_hf_provider(tiny_model_dir: Path) -> None:
    from vscbench.models.factory import make_provider

    p = make_provider(f"hf/{tiny_model_dir}", device="cpu", batch_size=2, dtype="float32")
    assert isinstance(p, HFProvider) and p.batch_size == 2
    asyncio.run(p.aclose())


def test_local_model_loads_without_any_connection(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    def refuse(*_: Any, **__: Any) -> None:
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    p = HFProvider(str(tiny_model_dir), device="cpu")
    assert p.describe()["local_path"] == str(tiny_model_dir.resolve())


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make torch report no GPU, whatever this machine has; loading a model would be a bug."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def no_load(self: HFProvider) -> None:
        raise AssertionError("the model was loaded before the device was checked")

    monkeypatch.setattr(HFProvider, "_load", no_load)


@pytest.mark.usefixtures("no_cuda")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_is_one_line_before_loading(tiny_model_dir: Path, device: str) -> None:
    with pytest.raises(VscbenchError, match=rf"^--device {device}: CUDA is not available on this machine \(torch "):
        HFProvider(str(tiny_model_dir), device=device)


@pytest.mark.usefixtures("no_cuda")
@pytest.mark.parametrize(
    "argv",
    [
        ["run", "-m", "hf/{m}", "--metadata", "{meta}", "--root", "{root}", "--setting", "text", "--limit", "2"],
        ["calibrate", "fit", "-m", "hf/{m}", "--layer", "1", "--metadata", "{meta}"]
        + ["--root", "{root}", "--setting", "text"],
        ["utility", "-m", "hf/{m}", "--data", "{data}"],
    ],
    ids=["run", "calibrate-fit", "utility"],
)
def test_cli_device_cuda_without_a_gpu_exits_2_with_one_line(
    tiny_model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
) -> None:
    from conftest import METADATA
    from vscbench.cli import main
    from vscbench.utility.synthetic import make_synthetic

    monkeypatch.chdir(tmp_path)
    data = make_synthetic(tmp_path / "u", 2)
    fill = {"m": str(tiny_model_dir), "meta": str(METADATA), "data": str(data), "root": str(tmp_path / "root")}
    args = [a.format(**fill) for a in argv] + ["--device", "cuda"]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "--device cuda: CUDA is not available on this machine (torch " in err
