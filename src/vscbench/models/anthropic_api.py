"""``anthropic/<model>``: the Messages API over the async Anthropic SDK (its own retries off).

Status mapping: ``stop_reason == "refusal"`` (the API's safety classifier stopped the answer) -> ``blocked``;
no text -> ``empty``; errors as for every API provider (429/5xx/529/timeouts/dropped connections transient,
other 4xx and unreadable answers permanent). Images go as base64 ``image`` content blocks before the text of
their turn; the system prompt goes in ``system``. Anthropic has no seed parameter, and the Messages API
version that SDK 2.x speaks (2026-10-21) rejects ``temperature``/``top_p`` outright; they are sent only when the
installed SDK still takes them, and :meth:`AnthropicProvider.describe` records which (the run manifest keeps it).
"""

from __future__ import annotations

import inspect
from typing import Any

from vscbench.errors import require
from vscbench.models._common import (
    answer_status,
    b64,
    env_key,
    map_sdk_error,
    missing_key,
    read_image,
    sdk_client_kwargs,
    short,
    url_host,
)
from vscbench.models.base import PermanentError
from vscbench.types import Request, Response

KEY_ENV = ("ANTHROPIC_API_KEY",)
#: Stop reasons that mean the provider's own filter ended the answer.
BLOCK_STOP_REASONS = frozenset({"refusal"})


def anthropic_messages(request: Request) -> list[dict[str, Any]]:
    """The Messages API ``messages``: every turn in order, images as base64 blocks before the text."""
    msgs: list[dict[str, Any]] = []
    for turn in request.turns:
        blocks: list[dict[str, Any]] = []
        if turn.role == "user":
            for path in turn.images:
                mime, data = read_image(path)
                blocks.append(
                    {"type": "image", "source": {"type": "base64", "media_type": mime, "data": b64(data)}}
                )
        blocks.append({"type": "text", "text": turn.text})
        msgs.append({"role": turn.role, "content": blocks})
    return msgs


class AnthropicProvider:
    images_in_history = True
    supports_activations = False

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        max_connections: int | None = None,
        timeout: float | None = None,
    ) -> None:
        anthropic = require("anthropic", "anthropic")
        self._anthropic = anthropic
        self.model = model
        self.spec = f"anthropic/{model}"
        key = api_key or env_key(KEY_ENV)
        if not key:
            raise missing_key("anthropic", KEY_ENV)
        self._secrets = (key,)
        self._client = anthropic.AsyncAnthropic(
            **sdk_client_kwargs(anthropic, key, base_url, timeout, max_connections)
        )
        try:
            accepted = set(inspect.signature(self._client.messages.create).parameters)
        except (TypeError, ValueError):  # pragma: no cover - an SDK without a readable signature
            accepted = set()
        #: Whether this SDK (and so the API version it speaks) takes sampling parameters.
        self.sampling_params = "temperature" in accepted

    def describe(self) -> dict[str, object]:
        return {
            "provider": "anthropic",
            "model": self.model,
            "base_url_host": url_host(str(self._client.base_url)),
            "sdk": f"anthropic {getattr(self._anthropic, '__version__', '?')}",
            "sampling_params_sent": self.sampling_params,
        }

    def params(self, request: Request) -> dict[str, Any]:
        cfg = request.config
        p: dict[str, Any] = {
            "model": self.model,
            "messages": anthropic_messages(request),
            "max_tokens": cfg.max_tokens,
        }
        if request.system:
            p["system"] = request.system
        if self.sampling_params:
            p["temperature"] = cfg.temperature
            if cfg.top_p is not None:
                p["top_p"] = cfg.top_p
        return p

    async def generate(self, request: Request) -> Response:
        params = self.params(request)
        try:
            resp = await self._client.messages.create(**params)
        except Exception as exc:
            raise map_sdk_error(exc, self._anthropic, self._secrets) from None
        if isinstance(resp, str) or not hasattr(resp, "content"):
            raise PermanentError(f"answer is not a message: {short(resp, 120)}")
        text = "".join(
            getattr(b, "text", "") or "" for b in (resp.content or []) if getattr(b, "type", "") == "text"
        )
        stop = getattr(resp, "stop_reason", None)
        status = answer_status(text, blocked=stop in BLOCK_STOP_REASONS)
        usage = getattr(resp, "usage", None)
        return Response(
            item_id=request.item_id,
            status=status,
            text=text,
            finish_reason=stop,
            input_tokens=getattr(usage, "input_tokens", None),
            output_tokens=getattr(usage, "output_tokens", None),
            model=getattr(resp, "model", None) or self.model,
        )

    async def aclose(self) -> None:
        await self._client.close()
