"""The tiny randomly initialised VLM, built once per test session, and helpers for the ``hf/`` tests.

Import the fixtures into a test module (``from hf_fixtures import tiny_model_dir, ...``). The model is built
by :func:`vscbench.models.tiny.build_tiny_vlm` into a temporary folder the first time it is asked for (well
under a second, plus the transformers import) and reused by every module; nothing is downloaded.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("torch")
pytest.importorskip("transformers")

from vscbench.models.tiny import build_tiny_vlm  # noqa: E402
from vscbench.types import GenConfig, Request, Turn  # noqa: E402


@functools.cache
def _build() -> Path:
    tmp = Path(tempfile.mkdtemp(prefix="vscbench-tiny-vlm-"))
    atexit.register(shutil.rmtree, tmp, True)
    build_tiny_vlm(tmp / "model", seed=0)
    for name, colour, size in (("red", (220, 20, 20), (80, 60)), ("blue", (20, 20, 220), (64, 64))):
        Image.new("RGB", size, colour).save(tmp / f"{name}.png")
    (tmp / "broken.png").write_bytes(b"not an image at all")
    return tmp


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """A saved tiny LLaVA-class model (seed 0): ``AutoModelForImageTextToText.from_pretrained`` loads it."""
    return _build() / "model"


@pytest.fixture(scope="session")
def tiny_images() -> dict[str, Path]:
    """Two small PNGs of different sizes and one file that is not an image."""
    root = _build()
    return {n: root / f"{n}.png" for n in ("red", "blue", "broken")}


def sample_requests(images: dict[str, Path], max_tokens: int = 8) -> list[Request]:
    """Varied requests: image + text, text only with a system prompt, two images in history, longer text."""
    cfg = GenConfig(max_tokens=max_tokens)
    red, blue = str(images["red"]), str(images["blue"])
    return [
        Request("a", (Turn("user", "What is in the image?", (red,)),), config=cfg),
        Request(
            "b",
            (Turn("user", "How do I bake bread at home, step by step?"),),
            system="Be helpful.",
            config=cfg,
        ),
        Request("c", (Turn("user", "describe", (blue,)),), config=cfg),
        Request(
            "d",
            (
                Turn("user", "What colour is this?", (blue,)),
                Turn("assistant", "Blue."),
                Turn("user", "And this one, in one word?", (red,)),
            ),
            config=cfg,
        ),
        Request("e", (Turn("user", "Where can I buy a can of coke near the station tonight?"),), config=cfg),
    ]
