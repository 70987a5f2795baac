"""``vscbench utility make-synthetic``: a checkable VQA-style set rendered with Pillow, offline.

Five kinds of question, in rotation so every kind is equally represented, each with an answer known by
construction: ``count`` (how many shapes; numeric), ``colour`` (the colour of the one shape; exact),
``shape`` (which shape, four lettered options; choice), ``word`` (the word written; exact) and ``position``
(is one shape left of the other; exact yes/no). Shapes never overlap.

Deterministic: the same ``n`` and ``seed`` give the same JSONL and the same image bytes (with the same
Pillow build). Output: ``DIR/data.jsonl`` and ``DIR/images/<id>.png``.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

from vscbench.data.paths import writable_folder, writing
from vscbench.errors import VscbenchError

SIZE = 224
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (35, 150, 60),
    "blue": (40, 75, 215),
    "yellow": (235, 195, 20),
    "orange": (240, 125, 20),
    "purple": (135, 50, 170),
    "black": (20, 20, 20),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
WORDS: tuple[str, ...] = (
    "apple", "river", "chair", "cloud", "tiger", "lemon", "house", "piano", "green", "smile",
    "bread", "stone", "light", "ocean", "plant", "train", "robot", "candle", "garden", "window",
    "pencil", "rocket", "forest", "yellow", "dragon", "silver", "castle", "bottle", "mirror", "planet",
)  # fmt: skip
KINDS: tuple[str, ...] = ("count", "colour", "shape", "word", "position")
_GRID = 4  # count questions place shapes in distinct cells of a 4x4 grid


def _draw_shape(draw: Any, shape: str, cx: int, cy: int, r: int, fill: tuple[int, int, int]) -> None:
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=fill)
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=fill)
    else:  # pragma: no cover - internal
        raise ValueError(shape)


def _png(img: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def _draw_one_centred(draw: Any, rng: random.Random, radius: int) -> tuple[str, str]:
    """Draw one random shape in a random colour within 20 px of the centre; return (shape, colour name)."""
    shape, colour = rng.choice(SHAPES), rng.choice(sorted(COLOURS))
    cx, cy = SIZE // 2 + rng.randint(-20, 20), SIZE // 2 + rng.randint(-20, 20)
    _draw_shape(draw, shape, cx, cy, radius, COLOURS[colour])
    return shape, colour


def _example(kind: str, rng: random.Random) -> tuple[Any, dict[str, Any]]:
    """(PIL image, JSONL fields without id/image) for one question of ``kind``."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (SIZE, SIZE), "white")
    draw = ImageDraw.Draw(img)
    colour_names = sorted(COLOURS)
    if kind == "count":
        k = rng.randint(1, 6)
        shape, colour = rng.choice(SHAPES), rng.choice(colour_names)
        cell = SIZE // _GRID
        for c in rng.sample(range(_GRID * _GRID), k):
            cx = (c % _GRID) * cell + cell // 2 + rng.randint(-4, 4)
            cy = (c // _GRID) * cell + cell // 2 + rng.randint(-4, 4)
            _draw_shape(draw, shape, cx, cy, cell // 3, COLOURS[colour])
        q = f"How many {shape}s are in the image? Answer with a number."
        return img, {"question": q, "answers": [str(k)], "answer_type": "numeric", "kind": kind}
    if kind == "colour":
        shape, colour = _draw_one_centred(draw, rng, 55)
        q = "What colour is the shape in the image? Answer with one word."
        return img, {"question": q, "answers": [colour], "answer_type": "exact", "kind": kind}
    if kind == "shape":
        shape, _ = _draw_one_centred(draw, rng, 60)
        options = list(SHAPES)
        rng.shuffle(options)
        letter = chr(ord("A") + options.index(shape))
        listed = " ".join(f"{chr(ord('A') + i)}. {o}" for i, o in enumerate(options))
        q = f"Which shape is shown in the image? {listed}. Answer with the letter of the right option."
        return img, {
            "question": q,
            "answers": [letter],
            "answer_type": "choice",
            "choices": options,
            "kind": kind,
        }
    if kind == "word":
        word = rng.choice(WORDS)
        font = ImageFont.load_default(size=40)
        box = draw.textbbox((0, 0), word, font=font)
        x = (SIZE - (box[2] - box[0])) // 2 - box[0] + rng.randint(-10, 10)
        y = (SIZE - (box[3] - box[1])) // 2 - box[1] + rng.randint(-30, 30)
        draw.text((x, y), word, fill=COLOURS[rng.choice(("black", "blue", "red"))], font=font)
        q = "What word is written in the image? Answer with the word only."
        return img, {"question": q, "answers": [word], "answer_type": "exact", "kind": kind}
    if kind == "position":
        c1, c2 = rng.sample(colour_names, 2)
        s1, s2 = rng.choice(SHAPES), rng.choice(SHAPES)
        left_first = rng.random() < 0.5  # is the first-named shape on the left?
        xl, xr = rng.randint(40, 80), rng.randint(144, 184)
        x1, x2 = (xl, xr) if left_first else (xr, xl)
        _draw_shape(draw, s1, x1, rng.randint(50, 174), 32, COLOURS[c1])
        _draw_shape(draw, s2, x2, rng.randint(50, 174), 32, COLOURS[c2])
        q = f"Is the {c1} {s1} to the left of the {c2} {s2}? Answer yes or no."
        answer = "yes" if left_first else "no"
        return img, {"question": q, "answers": [answer], "answer_type": "exact", "kind": kind}
    raise ValueError(kind)  # pragma: no cover - internal


def make_synthetic(out: str | Path, n: int, seed: int = 0) -> Path:
    """Write ``n`` examples to ``out/data.jsonl`` and ``out/images/``; return the JSONL path."""
    if n < 1 or n > 100_000:
        raise VscbenchError(f"--n must be between 1 and 100000, got {n}")
    root = Path(out).expanduser()
    try:
        (root / "images").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VscbenchError(f"--out {root}: cannot create the folder ({exc.strerror or exc})") from None
    writable_folder(root / "images")
    with writing(root):
        return _write_set(root, n, seed)


def _write_set(root: Path, n: int, seed: int) -> Path:
    rng = random.Random(f"vscbench-utility-synthetic:{seed}")
    lines: list[str] = []
    width = max(4, len(str(n)))
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        img, fields = _example(kind, rng)
        ex_id = f"syn-{i + 1:0{width}d}"
        rel = f"images/{ex_id}.png"
        (root / rel).write_bytes(_png(img))
        lines.append(json.dumps({"id": ex_id, "image": rel, **fields}, sort_keys=True))
    path = root / "data.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
