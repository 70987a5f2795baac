"""vscbench: measure whether a vision-language model is safety-calibrated (VSCBench)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vscbench")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+local"

__all__ = ["__version__"]
