"""Models stage: one async interface over API providers and in-process transformers models."""

from vscbench.models.base import (
    PermanentError,
    Provider,
    ProviderError,
    TransientError,
    parse_model_spec,
)

__all__ = ["PermanentError", "Provider", "ProviderError", "TransientError", "parse_model_spec"]
