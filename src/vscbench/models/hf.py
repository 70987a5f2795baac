"""``hf/<hub-id-or-local-path>``: a transformers vision-language model run in process (CPU or CUDA).

The model is loaded with ``AutoModelForImageTextToText`` + ``AutoProcessor``; prompts are built with the
processor's own chat template (system turn, demonstration turns, the item's user turn with its image).

Invariants:
- Temperature 0 means greedy decoding (``do_sample=False``); the answer is then a function of the request
  alone: a request batched with others gets exactly the text it gets alone (left padding + attention mask).
- Concurrent :meth:`HFProvider.generate` calls are gathered by a small micro-batcher into batches of at most
  ``batch_size`` requests that share generation config and steering spec; one batch runs at a time, in a
  worker thread, so the event loop stays free.
- A local path never touches the network (``local_files_only``).
- Activation steering (``Request.extra["steering"]``, see :mod:`vscbench.calibration.steering`) is applied
  through a forward hook that is installed for one batch and always removed afterwards.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vscbench.calibration.steering import HookState, cached_direction, check_layer, make_hook
from vscbench.errors import VscbenchError, require
from vscbench.models.base import PermanentError
from vscbench.types import GenConfig, Request, Response, Status

log = logging.getLogger(__name__)

_DTYPES = ("auto", "float32", "bfloat16", "float16")
#: A hub id: ``name`` or ``org/name`` (anything else that is not an existing folder is a missing folder).
_HUB_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)?")


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; anything else is passed to torch as is.

    An explicit ``cuda`` (or ``cuda:N``) on a machine where torch sees no GPU is a :class:`VscbenchError`
    (one line, raised before any model is loaded) rather than torch's assertion deep inside ``model.to``.
    """
    torch = require("torch", "hf")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        why = "built without CUDA" if torch.version.cuda is None else "no GPU visible"
        raise VscbenchError(
            f"--device {device}: CUDA is not available on this machine (torch {torch.__version__}, {why})"
        )
    return device


def resolve_dtype(dtype: str | None, device: str) -> str:
    """``None`` -> float32 on CPU (exact, portable), bfloat16 on CUDA (what the models are trained in)."""
    if dtype is None:
        return "float32" if device == "cpu" else "bfloat16"
    if dtype not in _DTYPES:
        raise VscbenchError(f"--dtype '{dtype}': use one of {', '.join(_DTYPES)}")
    return dtype


def decoder_layers(model: Any) -> Any:
    """The language model's decoder layers (a ``ModuleList``): layer ``L``'s output is the residual stream
    after block ``L`` (0-based)."""
    candidates: list[Any] = []
    get_decoder = getattr(model, "get_decoder", None)
    if callable(get_decoder):
        try:
            candidates.append(get_decoder())
        except (AttributeError, NotImplementedError):
            pass
    inner = getattr(model, "model", None)
    for obj in (inner, model):
        if obj is not None:
            candidates.append(getattr(obj, "language_model", None))
    for c in candidates:
        layers = getattr(c, "layers", None)
        if layers is not None and len(layers) > 0:
            return layers
    raise PermanentError(f"cannot find the decoder layers of {type(model).__name__} for activation methods")


def _load_processor(tf: Any, source: str, kw: dict[str, Any]) -> Any:
    """``AutoProcessor.from_pretrained``; without torchvision, the model's processor less its video processor.

    transformers 5 builds video processors (Qwen2-VL's, Qwen2.5-VL's, ...) with torchvision only, so
    ``AutoProcessor`` fails on those models where torchvision is missing, although the engine sends images
    only. The fallback loads the same processor class with its ``video_processor`` attribute left out (its
    ``__call__`` skips what it lacks); any other failure is raised as it was.
    """
    try:
        return tf.AutoProcessor.from_pretrained(source, **kw)
    except ImportError as exc:
        if "torchvision" not in str(exc).lower():
            raise
        from transformers.models.auto.processing_auto import PROCESSOR_MAPPING

        cls: Any = PROCESSOR_MAPPING.get(type(tf.AutoConfig.from_pretrained(source, **kw)), None)
        if cls is None or "video_processor" not in cls.get_attributes():
            raise
        full = cls.get_attributes()
        image_only: Any = type(
            cls.__name__,
            (cls,),
            {"get_attributes": classmethod(lambda _c: [a for a in full if a != "video_processor"])},
        )
        log.info("torchvision is not installed: %s loaded without its video processor", cls.__name__)
        return image_only.from_pretrained(source, **kw)


@dataclass
class _Pending:
    request: Request
    future: asyncio.Future[Response]
    key: str
    started: float


@dataclass
class _Batcher:
    """Collects concurrent requests into batches; runs one batch at a time through ``run`` in a thread."""

    run: Callable[[list[Request]], list[Response | BaseException]]
    batch_size: int
    pending: list[_Pending] = field(default_factory=list)
    task: asyncio.Task[None] | None = None
    loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, request: Request) -> Response:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Response] = loop.create_future()
        self.pending.append(_Pending(request, fut, _batch_key(request), time.perf_counter()))
        if self.task is None or self.task.done() or self.loop is not loop:
            self.loop = loop
            self.task = loop.create_task(self._drain())
        return await fut

    def _take(self) -> list[_Pending]:
        self.pending = [p for p in self.pending if not p.future.done()]  # drop cancelled callers
        if not self.pending:
            return []
        key = self.pending[0].key
        batch: list[_Pending] = []
        rest: list[_Pending] = []
        for p in self.pending:
            (batch if p.key == key and len(batch) < self.batch_size else rest).append(p)
        self.pending = rest
        return batch

    async def _drain(self) -> None:
        while True:
            # let callers started in the same tick join the batch
            for _ in range(4):
                if len(self.pending) >= self.batch_size:
                    break
                await asyncio.sleep(0)
            batch = self._take()
            if not batch:
                return
            try:
                results = await asyncio.to_thread(self.run, [p.request for p in batch])
            except asyncio.CancelledError:
                for p in batch:
                    p.future.cancel()
                raise
            except Exception as exc:  # handed to every caller of the batch
                results = [exc] * len(batch)
            done = time.perf_counter()
            for p, res in zip(batch, results, strict=True):
                if p.future.done():
                    continue
                if isinstance(res, BaseException):
                    p.future.set_exception(res)
                else:
                    res.latency_s = round(done - p.started, 4)
                    p.future.set_result(res)


def _batch_key(request: Request) -> str:
    """Requests batch together only when generation config and steering spec are identical."""
    return json.dumps(
        {"config": request.config.to_dict(), "steering": request.extra.get("steering")},
        sort_keys=True,
        default=str,
    )


class HFProvider:
    """A transformers image-text-to-text model behind the async :class:`~vscbench.models.base.Provider` call."""

    images_in_history = True
    supports_activations = True

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        batch_size: int = 1,
        dtype: str | None = None,
        **_: Any,
    ) -> None:
        self.torch = require("torch", "hf")
        require("transformers", "hf")
        self.model_name = model
        self.spec = f"hf/{model}"
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        if int(batch_size) < 1:
            raise VscbenchError(f"--batch-size {batch_size}: must be at least 1")
        self.batch_size = int(batch_size)
        local = Path(model).expanduser()
        self.local_path: Path | None = local.resolve() if local.exists() else None
        self.model, self.processor = self._load()
        self._lock = threading.Lock()  # one torch job at a time (generation, activations)
        self._batcher = _Batcher(self._run_batch, self.batch_size)

    # -- loading ------------------------------------------------------------------------------------
    def _load(self) -> tuple[Any, Any]:
        tf = require("transformers", "hf")

        if self.local_path is None and not _HUB_ID.fullmatch(self.model_name):
            raise VscbenchError(
                f"model 'hf/{self.model_name}': no such local folder, and not a hub id of the form ORG/NAME"
            )
        source = str(self.local_path) if self.local_path is not None else self.model_name
        kw: dict[str, Any] = {"local_files_only": True} if self.local_path is not None else {}
        torch_dtype = "auto" if self.dtype == "auto" else getattr(self.torch, self.dtype)
        try:
            processor = _load_processor(tf, source, kw)
            model = tf.AutoModelForImageTextToText.from_pretrained(source, dtype=torch_dtype, **kw)
        except (OSError, ValueError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise VscbenchError(f"cannot load model 'hf/{self.model_name}': {first}") from exc
        model.to(self.device).eval()
        tok = getattr(processor, "tokenizer", processor)
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        return model, processor

    @property
    def tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", self.processor)

    @property
    def num_layers(self) -> int:
        return len(decoder_layers(self.model))

    @property
    def hidden_size(self) -> int:
        cfg = self.model.config
        text_cfg = getattr(cfg, "text_config", None) or cfg
        return int(text_cfg.hidden_size)

    def describe(self) -> dict[str, object]:
        import transformers

        cfg = self.model.config
        return {
            "provider": "hf",
            "model": self.model_name,
            "local_path": str(self.local_path) if self.local_path else None,
            "model_class": type(self.model).__name__,
            "model_type": getattr(cfg, "model_type", None),
            "revision": getattr(cfg, "_commit_hash", None),
            "device": self.device,
            "dtype": self.dtype,
            "batch_size": self.batch_size,
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "torch": self.torch.__version__,
            "transformers": transformers.__version__,
        }

    async def aclose(self) -> None:
        """Drop the weights (after any batch in flight); later calls raise PermanentError."""

        def release() -> None:
            with self._lock:
                self.model = None
                if self.device.startswith("cuda"):
                    self.torch.cuda.empty_cache()

        await asyncio.to_thread(release)

    # -- prompts ------------------------------------------------------------------------------------
    def messages(self, request: Request) -> list[dict[str, Any]]:
        """The conversation in the chat-template format: an image part before the text of its turn."""
        msgs: list[dict[str, Any]] = []
        if request.system:
            msgs.append({"role": "system", "content": [{"type": "text", "text": request.system}]})
        for t in request.turns:
            parts: list[dict[str, Any]] = [{"type": "image"} for _ in t.images]
            parts.append({"type": "text", "text": t.text})
            msgs.append({"role": t.role, "content": parts})
        return msgs

    def prompt(self, request: Request) -> str:
        """The prompt text. A template that rejects a system turn gets it folded into the first user turn."""
        msgs = self.messages(request)
        try:
            text: str = self.processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        except Exception as exc:  # jinja TemplateError: e.g. "System role not supported"
            if not request.system:
                raise PermanentError(f"chat template failed: {exc}") from exc
            msgs = msgs[1:]
            first = msgs[0]["content"]
            idx = next(i for i, p in enumerate(first) if p["type"] == "text")
            first[idx] = {"type": "text", "text": f"{request.system}\n\n{first[idx]['text']}"}
            text = self.processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        return text

    @staticmethod
    def _images(request: Request) -> list[Any]:
        from PIL import Image

        out = []
        for t in request.turns:
            for path in t.images:
                try:
                    with Image.open(path) as im:
                        out.append(im.convert("RGB"))
                except (OSError, ValueError) as exc:
                    raise PermanentError(f"cannot read image {path}: {exc}") from exc
        return out

    def encode(self, requests: Sequence[Request], images: Sequence[list[Any]] | None = None) -> Any:
        """Tokenise a batch (left padded) with its images (read from the turns unless given), on the device."""
        texts = [self.prompt(r) for r in requests]
        per_request = images if images is not None else [self._images(r) for r in requests]
        flat = [im for ims in per_request for im in ims]
        inputs = self.processor(text=texts, images=flat or None, return_tensors="pt", padding=True)
        return inputs.to(self.device)

    # -- generation ---------------------------------------------------------------------------------
    async def generate(self, request: Request) -> Response:
        if self.model is None:
            raise PermanentError("the model was closed")
        return await self._batcher.submit(request)

    def generate_batch(
        self, requests: Sequence[Request], images: Sequence[list[Any]] | None = None
    ) -> list[Response]:
        """Generate for requests sharing one config and steering spec, synchronously (one forward batch)."""
        torch = self.torch
        cfg: GenConfig = requests[0].config
        steering = requests[0].extra.get("steering")
        with self._lock, torch.inference_mode():
            inputs = self.encode(requests, images)
            prompt_len = int(inputs["input_ids"].shape[1])
            kw: dict[str, Any] = {
                "max_new_tokens": int(cfg.max_tokens),
                "pad_token_id": self.tokenizer.pad_token_id,
            }
            if cfg.temperature and cfg.temperature > 0:
                kw.update(do_sample=True, temperature=float(cfg.temperature))
                if cfg.top_p is not None:
                    kw["top_p"] = float(cfg.top_p)
                if cfg.seed is not None:
                    torch.manual_seed(int(cfg.seed))
            else:
                kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            state = None
            if steering:
                with steering_hook(self, steering) as state:
                    out = self.model.generate(**inputs, **kw)
            else:
                out = self.model.generate(**inputs, **kw)
        new = out[:, prompt_len:].cpu()
        eos = self._eos_ids()
        responses: list[Response] = []
        for i, req in enumerate(requests):
            ids = new[i].tolist()
            n, finish = len(ids), "length"
            for j, tid in enumerate(ids):
                if tid in eos:
                    n, finish = j + 1, "stop"
                    break
            text = self.tokenizer.decode(ids[:n], skip_special_tokens=True).strip()
            raw: dict[str, Any] = {}
            if state is not None:
                raw["steering"] = state.record(i)
            responses.append(
                Response(
                    item_id=req.item_id,
                    status=Status.OK if text else Status.EMPTY,
                    text=text,
                    finish_reason=finish,
                    input_tokens=int(inputs["attention_mask"][i].sum()),
                    output_tokens=n,
                    model=self.spec,
                    raw=raw,
                )
            )
        return responses

    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        return ids

    def _run_batch(self, requests: list[Request]) -> list[Response | BaseException]:
        """Batch runner for the micro-batcher: a request whose images cannot be read fails alone."""
        results: list[Response | BaseException | None] = [None] * len(requests)
        good: list[int] = []
        images: list[list[Any]] = []
        for i, r in enumerate(requests):
            try:
                images.append(self._images(r))
                good.append(i)
            except PermanentError as exc:
                results[i] = exc
        if good:
            try:
                outs: Sequence[Response | BaseException] = self.generate_batch(
                    [requests[i] for i in good], images
                )
            except PermanentError as exc:
                outs = [exc] * len(good)
            except VscbenchError as exc:  # e.g. a steering spec that does not fit this model
                outs = [PermanentError(str(exc))] * len(good)
            except Exception as exc:  # torch/transformers failure: not worth retrying the same input
                log.exception("hf generation failed")
                err = PermanentError(f"{type(exc).__name__}: {exc}")
                outs = [err] * len(good)
            for i, o in zip(good, outs, strict=True):
                results[i] = o
        return [r if r is not None else PermanentError("no result") for r in results]

    # -- activations --------------------------------------------------------------------------------
    def last_token_activations(self, requests: Sequence[Request], layer: int) -> Any:
        """Output of decoder layer ``layer`` at the last prompt token (where the answer starts), one row per
        request, as a float32 numpy array ``[len(requests), hidden_size]``. Batched by ``batch_size``."""
        import numpy as np

        torch = self.torch
        layers = decoder_layers(self.model)
        check_layer(layer, len(layers))
        rows: list[Any] = []
        captured: list[Any] = []

        def hook(_m: Any, _a: Any, output: Any) -> None:
            hs = output[0] if isinstance(output, tuple) else output
            captured.append(hs[:, -1, :].detach().float().cpu())

        with self._lock, torch.inference_mode():
            for start in range(0, len(requests), self.batch_size):
                chunk = requests[start : start + self.batch_size]
                inputs = self.encode(chunk)
                handle = layers[layer].register_forward_hook(hook)
                try:
                    self.model(**inputs, use_cache=False)
                finally:
                    handle.remove()
                rows.append(captured.pop().numpy())
        if not rows:
            return np.zeros((0, self.hidden_size), dtype=np.float32)
        return np.concatenate(rows, axis=0).astype(np.float32)


@contextmanager
def steering_hook(provider: HFProvider, spec: dict[str, Any]) -> Iterator[HookState]:
    """Install the forward hook ``spec`` describes (see :func:`vscbench.calibration.steering.make_hook`) on
    the provider's decoder layer for the duration of the block; it is removed however the block ends."""
    layers = decoder_layers(provider.model)
    layer = int(spec["layer"])
    check_layer(layer, len(layers))
    device = next(provider.model.parameters()).device
    hook, state = make_hook(spec, provider.hidden_size, device)
    fitted_on = _cached_provenance(spec).get("model_resolved")
    here = str(provider.local_path or provider.model_name)
    if fitted_on not in (None, here):
        log.warning("direction %s was fitted on %s, not on %s", spec["direction"], fitted_on, here)
    handle = layers[layer].register_forward_hook(hook)
    try:
        yield state
    finally:
        handle.remove()


def _cached_provenance(spec: dict[str, Any]) -> dict[str, Any]:
    return cached_direction(str(spec["direction"]), str(spec["sha256"])).provenance
