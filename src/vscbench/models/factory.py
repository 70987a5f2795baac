"""``provider/model`` -> a :class:`~vscbench.models.base.Provider`. The one place providers are named.

Keys come from each SDK's usual environment variable (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``,
``GEMINI_API_KEY``/``GOOGLE_API_KEY``); ``openai-compatible`` works without one. SDKs are imported only when
their provider is asked for, so a missing extra is one line naming the ``pip install``.

Options (all optional, ``None`` means "the provider's default"):

- API providers: ``api_key``, ``max_connections`` (keep-alive pool size, e.g. the runner's concurrency),
  ``timeout`` (seconds, the SDK's own; the runner has its own per-request timeout on top);
- ``hf``: ``device`` (``cpu``/``cuda``/``auto``), ``batch_size``, ``dtype``.
- ``vllm/<checkpoint>``: a vLLM server (:mod:`vscbench.models.vllm_server`) asked over the OpenAI-compatible
  API; ``base_url`` is the server's (the suite starts one, or a rubric judge does for the time it judges).

Options that do not apply to the chosen provider are ignored, so the CLI can pass them all.
"""

from __future__ import annotations

import importlib
from typing import Any

from vscbench.errors import VscbenchError
from vscbench.models.base import Provider, parse_model_spec

_API_OPTIONS = ("api_key", "max_connections", "timeout")
_HF_OPTIONS = ("device", "batch_size", "dtype")


def _pick(options: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {k: options[k] for k in names if options.get(k) is not None}


def check_spec(spec: str, *, base_url: str | None = None, api_key: str | None = None) -> tuple[str, str]:
    """The cheap checks of :func:`make_provider`, without importing any SDK or loading any model: the spec's
    shape, ``--base-url`` where it is needed or meaningless, and an API key in the environment.
    Returns ``(provider, model)``; raises :class:`VscbenchError` naming what is missing."""
    provider, model = parse_model_spec(spec)
    if provider == "hf":
        if base_url:
            raise VscbenchError(f"--base-url is for API providers; '{spec}' runs in this process")
        return provider, model
    if provider == "vllm":
        return provider, model  # no base URL: the caller starts a server (vscbench.models.vllm_server)
    if provider == "openai-compatible" and not base_url:
        raise VscbenchError(
            f"'{spec}' needs --base-url (e.g. http://localhost:8000/v1 for a vLLM or SGLang server)"
        )
    if api_key:
        return provider, model
    from vscbench.models import _common, anthropic_api, google_api, openai_api

    names = {"openai": openai_api.KEY_ENV, "anthropic": anthropic_api.KEY_ENV, "google": google_api.KEY_ENV}
    if provider in names and not _common.env_key(names[provider]):
        raise _common.missing_key(provider, names[provider])
    return provider, model


def make_provider(spec: str, *, base_url: str | None = None, **options: Any) -> Provider:
    """Build the provider named by ``spec`` (e.g. ``openai/gpt-4o-mini``, ``hf/llava-hf/llava-1.5-7b-hf``)."""
    provider, model = check_spec(spec, base_url=base_url, api_key=options.get("api_key"))
    if provider == "hf":
        try:
            mod = importlib.import_module("vscbench.models.hf")
        except ModuleNotFoundError as exc:
            if exc.name in ("vscbench.models.hf",):
                raise VscbenchError("the hf/ provider is not available in this build of vscbench") from exc
            raise
        hf_provider: Provider = mod.HFProvider(model, **_pick(options, _HF_OPTIONS))
        return hf_provider
    api = _pick(options, _API_OPTIONS)
    if provider == "vllm":
        if not base_url:
            raise VscbenchError(
                f"'{spec}' needs a running vLLM server: the suite starts one (pytest --model={spec}); "
                f"elsewhere start 'vllm serve {model}' and use openai-compatible/{model} --base-url"
            )
        from vscbench.models.vllm_server import VllmProvider

        return VllmProvider(model, base_url=base_url, **api)
    if provider in ("openai", "openai-compatible"):
        from vscbench.models.openai_api import OpenAIProvider

        return OpenAIProvider(model, base_url=base_url, compatible=provider == "openai-compatible", **api)
    if provider == "anthropic":
        from vscbench.models.anthropic_api import AnthropicProvider

        return AnthropicProvider(model, base_url=base_url, **api)
    if provider == "google":
        from vscbench.models.google_api import GoogleProvider

        return GoogleProvider(model, base_url=base_url, **api)
    raise VscbenchError(f"unknown provider '{provider}' in '{spec}'")  # pragma: no cover - parse_model_spec
