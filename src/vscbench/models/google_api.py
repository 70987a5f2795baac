"""``google/<model>``: Gemini's ``generateContent`` over the google-genai SDK (async client, no SDK retries).

Status mapping: ``prompt_feedback.block_reason`` set (the prompt was blocked), or a candidate whose
``finish_reason`` is a filter reason (SAFETY, PROHIBITED_CONTENT, BLOCKLIST, SPII, IMAGE_SAFETY, RECITATION,
...) -> ``blocked``; no text -> ``empty``; errors as for every API provider. Images go as ``inline_data``
parts before the text of their turn; the system prompt as ``system_instruction``. The API's default safety
settings are left as they are (they are part of what a user of the API gets).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from vscbench.errors import require
from vscbench.models._common import (
    answer_status,
    env_key,
    missing_key,
    read_image,
    redact,
    short,
    status_error,
    url_host,
)
from vscbench.models.base import PermanentError, ProviderError, TransientError
from vscbench.types import Request, Response, Status

KEY_ENV = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
#: Gemini takes these inline; GIF/BMP/unknown are re-encoded as PNG.
GOOGLE_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})
#: Candidate finish reasons that mean a provider-side filter ended the answer (not the model's own words).
BLOCK_FINISH_REASONS = frozenset(
    {
        "SAFETY",
        "PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "RECITATION",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
    }
)


def google_contents(request: Request) -> list[dict[str, Any]]:
    """The ``contents`` list: user turns as ``user``, assistant turns as ``model``, images first."""
    contents: list[dict[str, Any]] = []
    for turn in request.turns:
        parts: list[dict[str, Any]] = []
        if turn.role == "user":
            for path in turn.images:
                mime, data = read_image(path, GOOGLE_IMAGE_TYPES)
                parts.append({"inline_data": {"mime_type": mime, "data": data}})
        parts.append({"text": turn.text})
        contents.append({"role": "user" if turn.role == "user" else "model", "parts": parts})
    return contents


def _enum_name(v: Any) -> str | None:
    if v is None:
        return None
    name = getattr(v, "name", None) or getattr(v, "value", None) or str(v)
    return str(name)


class GoogleProvider:
    images_in_history = True
    supports_activations = False

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float | None = None,
        max_connections: int | None = None,
    ) -> None:
        genai = require("google.genai", "google")
        self._genai = genai
        self._types = require("google.genai.types", "google")
        self._errors = require("google.genai.errors", "google")
        self.model = model
        self.spec = f"google/{model}"
        key = api_key or env_key(KEY_ENV)
        if not key:
            raise missing_key("google", KEY_ENV)
        self._secrets = (key,)
        self.base_url = base_url
        http: dict[str, Any] = {}
        if base_url:
            http["base_url"] = base_url
        if timeout is not None:
            http["timeout"] = int(timeout * 1000)  # milliseconds in this SDK
        self._client = genai.Client(
            api_key=key, http_options=self._types.HttpOptions(**http) if http else None
        )

    def describe(self) -> dict[str, object]:
        return {
            "provider": "google",
            "model": self.model,
            "base_url_host": url_host(self.base_url or "https://generativelanguage.googleapis.com"),
            "sdk": f"google-genai {getattr(self._genai, '__version__', '?')}",
        }

    def params(self, request: Request) -> dict[str, Any]:
        cfg = request.config
        config: dict[str, Any] = {"temperature": cfg.temperature, "max_output_tokens": cfg.max_tokens}
        if cfg.seed is not None:
            config["seed"] = cfg.seed
        if cfg.top_p is not None:
            config["top_p"] = cfg.top_p
        if request.system:
            config["system_instruction"] = request.system
        return {"model": self.model, "contents": google_contents(request), "config": config}

    async def generate(self, request: Request) -> Response:
        params = self.params(request)
        params["config"] = self._types.GenerateContentConfig(**params["config"])
        try:
            resp = await self._client.aio.models.generate_content(**params)
        except Exception as exc:
            raise self._map_error(exc) from None
        return self._to_response(request, resp)

    def _to_response(self, request: Request, resp: Any) -> Response:
        usage = getattr(resp, "usage_metadata", None)
        common: dict[str, Any] = {
            "item_id": request.item_id,
            "input_tokens": getattr(usage, "prompt_token_count", None),
            "output_tokens": getattr(usage, "candidates_token_count", None),
            "model": getattr(resp, "model_version", None) or self.model,
        }
        feedback = getattr(resp, "prompt_feedback", None)
        block = _enum_name(getattr(feedback, "block_reason", None))
        if block and block != "BLOCKED_REASON_UNSPECIFIED":
            return Response(status=Status.BLOCKED, finish_reason=f"prompt_blocked:{block}", **common)
        candidates = getattr(resp, "candidates", None) or []
        if not candidates:
            return Response(status=Status.EMPTY, finish_reason=None, **common)
        cand = candidates[0]
        finish = _enum_name(getattr(cand, "finish_reason", None))
        content = getattr(cand, "content", None)
        parts = getattr(content, "parts", None) or []
        text = "".join(p.text for p in parts if getattr(p, "text", None) and not getattr(p, "thought", False))
        status = answer_status(text, blocked=finish in BLOCK_FINISH_REASONS)
        return Response(status=status, text=text, finish_reason=finish, **common)

    def _map_error(self, exc: Exception) -> ProviderError:
        msg = redact(short(getattr(exc, "message", None) or exc), self._secrets)
        if isinstance(exc, self._errors.APIError):
            code = int(getattr(exc, "code", 0) or 0)
            resp = getattr(exc, "response", None)
            headers = getattr(resp, "headers", None)
            if code:
                return status_error(msg, code, headers)
            return TransientError(f"API error without status: {msg}")
        if isinstance(exc, TimeoutError | asyncio.TimeoutError):
            return TransientError("request timed out")
        if isinstance(exc, json.JSONDecodeError):
            return PermanentError(f"malformed answer (JSONDecodeError: {msg})")
        if isinstance(exc, ConnectionError | OSError) or _is_transport_error(exc):
            return TransientError(f"connection error ({type(exc).__name__}: {msg})")
        return PermanentError(f"{type(exc).__name__}: {msg}")

    async def aclose(self) -> None:
        aclose = getattr(self._client.aio, "aclose", None)
        if aclose is not None:
            await aclose()


def _is_transport_error(exc: BaseException) -> bool:
    """aiohttp / httpx transport failures (connection refused, reset, server disconnected, read errors)."""
    for cls in type(exc).__mro__:
        mod = cls.__module__.split(".", 1)[0]
        if mod == "aiohttp" and cls.__name__ in ("ClientConnectionError", "ClientPayloadError"):
            return True
        if mod.startswith("httpx") and cls.__name__ in ("TransportError", "TimeoutException"):
            return True
    return False
