"""Helpers shared by the API providers: images, Retry-After, status classes, key redaction, SDK clients.

No SDK imports: functions that need an SDK take its module as an argument.
"""

from __future__ import annotations

import base64
import email.utils
import importlib
import io
import json
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from vscbench.data.images import sniff_mime
from vscbench.errors import VscbenchError
from vscbench.models.base import PermanentError, ProviderError, TransientError
from vscbench.types import Status

#: What every API we call takes as is; anything else (BMP, unknown) is re-encoded as PNG first.
COMMON_IMAGE_TYPES: frozenset[str] = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})


def read_image(path: str, accepted: frozenset[str] = COMMON_IMAGE_TYPES) -> tuple[str, bytes]:
    """The image's MIME type, from its bytes (never its name), and the bytes to send.

    A format the API does not take is converted to PNG with Pillow. A file that cannot be read or decoded
    raises :class:`PermanentError` naming the path (retrying would not help).
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise PermanentError(f"image {path}: cannot read it ({exc.strerror or exc})") from exc
    mime = sniff_mime(data)
    if mime in accepted:
        assert mime is not None
        return mime, data
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            buf = io.BytesIO()
            im.convert("RGBA" if im.mode in ("RGBA", "LA", "P") else "RGB").save(buf, format="PNG")
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise PermanentError(f"image {path}: not an image format we can send ({mime or 'unknown'})") from exc
    return "image/png", buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds the server asked us to wait: ``retry-after-ms``, or ``retry-after`` as seconds or HTTP date."""
    if not headers:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000.0)
        ra = headers.get("retry-after")
        if ra is None:
            return None
        try:
            return max(0.0, float(ra))
        except ValueError:
            when = email.utils.parsedate_to_datetime(ra)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def is_transient_status(code: int) -> bool:
    """429, 408, 409 (conflict/lock) and every 5xx (incl. Anthropic's 529 overloaded) are worth retrying."""
    return code in (408, 409, 429) or code >= 500


def status_error(message: str, code: int, headers: Mapping[str, str] | None) -> ProviderError:
    """A Transient/PermanentError for an HTTP error status, carrying the code and Retry-After."""
    cls = TransientError if is_transient_status(code) else PermanentError
    return cls(f"HTTP {code}: {message}", status_code=code, retry_after=parse_retry_after(headers))


def answer_status(text: str, blocked: bool) -> Status:
    """``blocked`` when a provider-side filter ended the answer; else ``empty`` when the text is blank; else ``ok``."""
    if blocked:
        return Status.BLOCKED
    return Status.OK if text.strip() else Status.EMPTY


def redact(message: str, secrets: Iterable[str | None]) -> str:
    """``message`` with every secret (longer than 3 characters) replaced by ``***``."""
    for s in secrets:
        if s and len(s) > 3:
            message = message.replace(s, "***")
    return message


def env_key(names: Iterable[str]) -> str | None:
    """The first non-empty environment variable among ``names``."""
    for n in names:
        v = os.environ.get(n)
        if v:
            return v
    return None


def missing_key(provider: str, names: Iterable[str]) -> VscbenchError:
    return VscbenchError(f"{provider}: no API key; set {' or '.join(names)} in the environment")


def url_host(url: str | None) -> str | None:
    """Host (and port) of a base URL, without scheme, path, user or password: what a manifest may record."""
    if not url:
        return None
    parts = urlsplit(url if "//" in url else "//" + url)
    host = parts.hostname or ""
    return f"{host}:{parts.port}" if parts.port else host or None


def short(text: object, limit: int = 300) -> str:
    """One line of at most ``limit`` characters."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def sdk_client_kwargs(
    sdk: Any, key: str, base_url: str | None, timeout: float | None, max_connections: int | None
) -> dict[str, Any]:
    """Keyword arguments for an OpenAI-style SDK's async client (``openai`` and ``anthropic`` share the shape).

    The SDK's own retries are off (``max_retries=0``: the runner owns retries); ``base_url``, ``timeout`` and a
    pooled ``http_client`` are passed only when set.
    """
    kwargs: dict[str, Any] = {"api_key": key, "max_retries": 0}
    if base_url:
        kwargs["base_url"] = base_url
    if timeout is not None:
        kwargs["timeout"] = timeout
    if max_connections:
        client = sdk_http_client(sdk, max_connections, timeout)
        if client is not None:
            kwargs["http_client"] = client
    return kwargs


def sdk_http_client(sdk: Any, max_connections: int, timeout: float | None) -> Any:
    """An SDK http client whose keep-alive pool holds ``max_connections`` (the SDK keeps only 100)."""
    limits_cls = _limits_class(sdk)
    if limits_cls is None:
        return None
    limits = limits_cls(max_connections=max(1000, max_connections), max_keepalive_connections=max_connections)
    kwargs: dict[str, Any] = {"limits": limits}
    if timeout is not None:
        kwargs["timeout"] = timeout
    return sdk.DefaultAsyncHttpxClient(**kwargs)


def _limits_class(sdk: Any) -> Any:
    """``Limits`` of whichever httpx the SDK's client is built on (``httpx`` or ``httpx2``)."""
    for cls in sdk.DefaultAsyncHttpxClient.__mro__:
        top = cls.__module__.split(".", 1)[0]
        if top.startswith("httpx"):
            limits = getattr(importlib.import_module(top), "Limits", None)
            if limits is not None:
                return limits
    return None


def map_sdk_error(exc: Exception, sdk: Any, secrets: Iterable[str | None]) -> ProviderError:
    """The Transient/PermanentError for an exception raised by an OpenAI-style SDK (``openai``, ``anthropic``).

    Timeouts and dropped connections are transient; HTTP statuses go through :func:`status_error`; malformed
    answers and anything else are permanent. Every secret is redacted from the message.
    """
    secrets = tuple(secrets)
    msg = redact(short(getattr(exc, "message", None) or exc), secrets)
    if isinstance(exc, sdk.APITimeoutError):
        return TransientError("request timed out")
    if isinstance(exc, sdk.APIConnectionError):
        cause = exc.__cause__ or exc.__context__
        detail = f"{type(cause).__name__}: {cause}" if cause else msg
        return TransientError(f"connection error ({redact(short(detail), secrets)})")
    if isinstance(exc, sdk.APIStatusError):
        return status_error(msg, int(exc.status_code), exc.response.headers)
    if isinstance(exc, json.JSONDecodeError | sdk.APIResponseValidationError):
        return PermanentError(f"malformed answer ({type(exc).__name__}: {msg})")
    return PermanentError(f"{type(exc).__name__}: {msg}")
