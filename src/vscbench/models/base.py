"""The provider interface. Providers make one attempt per call; the runner owns the retry policy.

A provider turns a :class:`~vscbench.types.Request` into a :class:`~vscbench.types.Response` with status
``ok``, ``blocked`` or ``empty``, or raises:

- :class:`TransientError` for what is worth retrying (429, 5xx, timeouts, dropped connections), with the
  server's ``Retry-After`` in seconds when it sent one;
- :class:`PermanentError` for what is not (other 4xx, malformed answers the provider cannot read).

The runner turns an exhausted or permanent failure into ``Status.ERROR`` with the last message; it is never
a refusal and never an answer. Messages must never contain an API key.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from vscbench.errors import VscbenchError
from vscbench.types import Request, Response

PROVIDERS: tuple[str, ...] = ("openai", "openai-compatible", "anthropic", "google", "hf", "vllm")


class ProviderError(Exception):
    """A failed model call (not a user error)."""

    def __init__(
        self, message: str, *, status_code: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after


class TransientError(ProviderError):
    """Worth retrying: rate limit, server error, timeout, connection reset."""


class PermanentError(ProviderError):
    """Not worth retrying: bad request, auth failure, unreadable answer."""


@runtime_checkable
class Provider(Protocol):
    """One model behind one async call."""

    #: ``provider/model`` as given on the command line.
    spec: str
    #: Whether earlier turns may carry images (few-shot demonstrations with images).
    images_in_history: bool
    #: Whether activation methods (steering hooks) can be applied.
    supports_activations: bool

    async def generate(self, request: Request) -> Response:
        """Make one attempt. Return ok/blocked/empty, or raise TransientError/PermanentError."""
        ...

    def describe(self) -> dict[str, object]:
        """What goes into the run manifest: provider, model, base-URL host, ... and never a key."""
        ...

    async def aclose(self) -> None: ...


def parse_model_spec(spec: str) -> tuple[str, str]:
    """Split ``provider/model`` (the model part may itself contain ``/``)."""
    provider, sep, model = spec.partition("/")
    if not sep or not model:
        raise VscbenchError(
            f"model '{spec}' must be PROVIDER/MODEL with PROVIDER one of {', '.join(PROVIDERS)} (e.g. openai/gpt-4o-mini)"
        )
    if provider not in PROVIDERS:
        raise VscbenchError(f"unknown provider '{provider}' in '{spec}': use one of {', '.join(PROVIDERS)}")
    return provider, model
