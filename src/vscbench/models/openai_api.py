"""``openai/<model>`` and ``openai-compatible/<model>``: the Chat Completions API over the async OpenAI SDK.

One attempt per call (the SDK's own retries are off); the runner owns retries. Status mapping:

- ``finish_reason == "content_filter"``, or a 400 whose error code is ``content_filter`` (Azure's prompt
  filter) -> ``blocked``;
- no text (null or blank content, no ``refusal`` field) -> ``empty``; a ``refusal`` field is the model's own
  answer -> ``ok`` with that text;
- 429/408/409/5xx, timeouts and dropped connections -> :class:`TransientError` (with Retry-After);
- other 4xx, malformed JSON, an answer without choices -> :class:`PermanentError`.

Images go as ``image_url`` parts holding ``data:`` URLs, images before the text of their turn.
"""

from __future__ import annotations

from typing import Any

from vscbench.errors import require
from vscbench.models._common import (
    answer_status,
    b64,
    env_key,
    map_sdk_error,
    missing_key,
    read_image,
    redact,
    sdk_client_kwargs,
    short,
    url_host,
)
from vscbench.models.base import PermanentError
from vscbench.types import Request, Response, Status

KEY_ENV = ("OPENAI_API_KEY",)
#: What ``openai-compatible`` sends when no key is set (local servers ignore it).
DUMMY_KEY = "EMPTY"


def openai_messages(request: Request) -> list[dict[str, Any]]:
    """The Chat Completions ``messages`` for a request: system first, then every turn in order."""
    msgs: list[dict[str, Any]] = []
    if request.system:
        msgs.append({"role": "system", "content": request.system})
    for turn in request.turns:
        if turn.role == "user" and turn.images:
            parts: list[dict[str, Any]] = []
            for path in turn.images:
                mime, data = read_image(path)
                parts.append({"type": "image_url", "image_url": {"url": f"data:{mime};base64,{b64(data)}"}})
            parts.append({"type": "text", "text": turn.text})
            msgs.append({"role": "user", "content": parts})
        else:
            msgs.append({"role": turn.role, "content": turn.text})
    return msgs


class OpenAIProvider:
    """The OpenAI API, or any server that speaks it (``compatible=True``: vLLM, SGLang, Ollama, TGI, ...)."""

    images_in_history = True
    supports_activations = False

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        compatible: bool = False,
        api_key: str | None = None,
        max_connections: int | None = None,
        timeout: float | None = None,
    ) -> None:
        openai = require("openai", "openai")
        self._openai = openai
        self.model = model
        self.compatible = compatible
        self.spec = f"{'openai-compatible' if compatible else 'openai'}/{model}"
        key = api_key or env_key(KEY_ENV)
        if not key:
            if not compatible:
                raise missing_key("openai", KEY_ENV)
            key = DUMMY_KEY
        self._secrets = (key,)
        self.base_url = base_url
        self._client = openai.AsyncOpenAI(
            **sdk_client_kwargs(openai, key, base_url, timeout, max_connections)
        )

    def describe(self) -> dict[str, object]:
        return {
            "provider": "openai-compatible" if self.compatible else "openai",
            "model": self.model,
            "base_url_host": url_host(str(self._client.base_url)),
            "sdk": f"openai {getattr(self._openai, '__version__', '?')}",
        }

    def params(self, request: Request) -> dict[str, Any]:
        """The keyword arguments of ``chat.completions.create`` for this request."""
        cfg = request.config
        p: dict[str, Any] = {
            "model": self.model,
            "messages": openai_messages(request),
            "temperature": cfg.temperature,
        }
        # OpenAI's own API wants max_completion_tokens (its reasoning models reject max_tokens);
        # servers that merely speak the API know max_tokens.
        p["max_tokens" if self.compatible else "max_completion_tokens"] = cfg.max_tokens
        if cfg.seed is not None:
            p["seed"] = cfg.seed
        if cfg.top_p is not None:
            p["top_p"] = cfg.top_p
        return p

    async def generate(self, request: Request) -> Response:
        params = self.params(request)
        try:
            resp = await self._client.chat.completions.create(**params)
        except Exception as exc:
            blocked = self._blocked_by_error(request, exc)
            if blocked is not None:
                return blocked
            raise map_sdk_error(exc, self._openai, self._secrets) from None
        return self._to_response(request, resp)

    def _to_response(self, request: Request, resp: Any) -> Response:
        if isinstance(resp, str) or not hasattr(resp, "choices"):
            raise PermanentError(f"answer is not a chat completion: {short(resp, 120)}")
        if not resp.choices:
            raise PermanentError("answer has no choices")
        choice = resp.choices[0]
        msg = choice.message
        text = (getattr(msg, "content", None) or "") if msg is not None else ""
        refusal = getattr(msg, "refusal", None) if msg is not None else None
        if not text.strip() and refusal:
            text = str(refusal)
        finish = choice.finish_reason
        status = answer_status(text, blocked=finish == "content_filter")
        usage = getattr(resp, "usage", None)
        return Response(
            item_id=request.item_id,
            status=status,
            text=text,
            finish_reason=finish,
            input_tokens=getattr(usage, "prompt_tokens", None),
            output_tokens=getattr(usage, "completion_tokens", None),
            model=getattr(resp, "model", None) or self.model,
            raw=({"id": getattr(resp, "id", None), "refusal": refusal} if refusal else {})
            | ({"system_fingerprint": fp} if (fp := getattr(resp, "system_fingerprint", None)) else {}),
        )

    def _blocked_by_error(self, request: Request, exc: Exception) -> Response | None:
        """Azure-style prompt filter: a 400 with error code ``content_filter`` is a block, not an error."""
        if isinstance(exc, self._openai.BadRequestError) and getattr(exc, "code", None) == "content_filter":
            return Response(
                item_id=request.item_id,
                status=Status.BLOCKED,
                finish_reason="content_filter",
                error=redact(short(getattr(exc, "message", exc)), self._secrets),
                model=self.model,
            )
        return None

    async def aclose(self) -> None:
        await self._client.close()
