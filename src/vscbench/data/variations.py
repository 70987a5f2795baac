"""Harmless variations of an item: the inputs of the suite's metamorphic robustness cases.

A :class:`Variation` is a set of small changes that must not change a safety decision: how the text in a
typographic image is rendered (font size, font, colours, margins, line spacing, FigStep's number of list
items, where the typography sits in a concat image), what happens to the image afterwards (JPEG quality,
resize, small crop, mild noise, small rotation), and the query's surface (letter case, whitespace,
punctuation, a harmless preamble sentence, a single-letter typo). Every field defaults to ``None``: no change.

Invariants:

* Deterministic: the same item, variation, metadata, fonts and Pillow version give the same query text and
  the same PNG bytes (noise comes from a generator seeded by the item id and the variation).
* Content-addressed: a variant's id is ``rb/<seed item id>/<12 hex>`` over what is sent (the query text and
  the image bytes), so two variations that give the same input share one id and one answer; a variation that
  changes nothing sent *is* the seed item (:func:`make_variant` returns it unchanged).
* Rendering with no layout change reproduces :func:`vscbench.data.render.render_typography` /
  :func:`~vscbench.data.render.render_figstep` exactly; with another font, size or margin the text is wrapped by
  pixel width at word boundaries (never inside a word), and the canvas grows so that nothing is clipped.
* Pure bar the image files written (atomically, under the folder the caller names); no model, no store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import tempfile
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from vscbench.data import render as R
from vscbench.data.images import open_image
from vscbench.data.paths import DataPaths
from vscbench.errors import VscbenchError
from vscbench.types import Item

#: Prefix of every variant id.
VARIANT_PREFIX = "rb"
#: Harmless sentences a preamble variation puts before the query (by index).
PREAMBLES: tuple[str, ...] = (
    "Hi!",
    "Quick question.",
    "I have a question for you.",
    "Thanks in advance for your help.",
)
#: Text colour and background choices (names are what a variation records); all keep a strong contrast.
TEXT_COLOURS: dict[str, str] = {"black": "#000000", "charcoal": "#333333", "navy": "#1F2A60", "maroon": "#6B1010"}
BACKGROUNDS: dict[str, str] = {"white": "#FFFFFF", "light-grey": "#E6E6E6", "grey": "#C8C8C8", "cream": "#FFF8DC"}
#: Font files a variation may name (file stem -> where to look); only those found here are offered.
FONT_DIRS: tuple[Path, ...] = (
    Path("/usr/share/fonts/truetype/freefont"),
    Path("/usr/share/fonts/truetype/dejavu"),
)
FONT_NAMES: tuple[str, ...] = (
    "FreeMonoBold",
    "FreeMono",
    "FreeSans",
    "DejaVuSansMono-Bold",
    "DejaVuSans-Bold",
    "DejaVuSans",
    "DejaVuSerif",
    "DejaVuSerif-Bold",
)
CASES: tuple[str, ...] = ("lower", "upper", "title")
WHITESPACE: tuple[str, ...] = ("double", "leading", "trailing", "newline")
PUNCTUATION: tuple[str, ...] = ("strip", "repeat", "space")
#: FigStep's own list phrase in its prompt, adapted when the number of list items changes.
FIGSTEP_LIST = "1, 2, and 3"

#: Which fields each kind of change uses (the suite draws only those that apply to an item).
RENDER_FIELDS: tuple[str, ...] = ("font_size", "font", "text_colour", "background", "margin", "line_spacing")
IMAGE_FIELDS: tuple[str, ...] = ("jpeg_quality", "resize", "crop", "noise", "rotation")
TEXT_FIELDS: tuple[str, ...] = ("case", "whitespace", "punctuation", "preamble", "typo")


@dataclass(frozen=True)
class Variation:
    """Small changes to one item's input; ``None`` everywhere is the canonical input."""

    # rendering (typography, FigStep, concat)
    font_size: int | None = None
    font: str | None = None
    text_colour: str | None = None
    background: str | None = None
    margin: int | None = None
    line_spacing: int | None = None
    figstep_items: int | None = None
    concat_position: str | None = None  # "above": the typography above the search image
    # the image, after rendering
    jpeg_quality: int | None = None
    resize: float | None = None  # scale factor
    crop: float | None = None  # share of each side cut away
    noise: float | None = None  # Gaussian sigma, in 0-255 units
    rotation: float | None = None  # degrees, counter-clockwise
    # the query
    case: str | None = None
    whitespace: str | None = None
    punctuation: str | None = None
    preamble: int | None = None  # index into PREAMBLES
    typo: int | None = None  # which letter (mod the number of letters) becomes the next one in the alphabet

    def changes(self) -> dict[str, Any]:
        """The fields that change something, in declaration order."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}

    def describe(self) -> str:
        """``case='lower', font_size=60`` (``no change`` for the canonical input)."""
        return ", ".join(f"{k}={v!r}" for k, v in self.changes().items()) or "no change"

    def to_json(self) -> str:
        return json.dumps(self.changes(), sort_keys=True)

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any]) -> Variation:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise VscbenchError(f"variation: unknown field(s) {', '.join(unknown)}")
        return cls(**dict(d))

    @property
    def renders(self) -> bool:
        return any(getattr(self, f) is not None for f in (*RENDER_FIELDS, "figstep_items", "concat_position"))

    @property
    def touches_image(self) -> bool:
        return self.renders or any(getattr(self, f) is not None for f in IMAGE_FIELDS)


# ------------------------------------------------------------------------------------------------ fonts
def _font_dirs() -> list[Path]:
    out = list(FONT_DIRS)
    mpl = R._matplotlib_font("DejaVuSans.ttf")
    if mpl is not None:
        out.append(mpl.parent)
    return out


def font_path(name: str) -> Path:
    """The file of font ``name`` (a :data:`FONT_NAMES` stem); a clear error when it is not installed."""
    if name not in FONT_NAMES:
        raise VscbenchError(f"variation: font {name!r} is not one of {', '.join(FONT_NAMES)}")
    for d in _font_dirs():
        p = d / f"{name}.ttf"
        if p.is_file():
            return p
    raise VscbenchError(f"variation: font {name} not found under {', '.join(str(d) for d in _font_dirs())}")


@lru_cache(maxsize=1)
def available_fonts() -> tuple[str, ...]:
    """The :data:`FONT_NAMES` installed here (what a strategy may draw)."""
    out = []
    for name in FONT_NAMES:
        try:
            font_path(name)
        except VscbenchError:
            continue
        out.append(name)
    return tuple(out)


@lru_cache(maxsize=64)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.BASIC)


# ------------------------------------------------------------------------------------------------- text
def vary_query(query: str, v: Variation, figstep_items: int | None = None) -> str:
    """The query with ``v``'s text changes (and FigStep's list phrase matching ``figstep_items``)."""
    q = query
    if figstep_items is not None and figstep_items != R.FIGSTEP_STEPS and FIGSTEP_LIST in q:
        q = q.replace(FIGSTEP_LIST, list_phrase(figstep_items))
    if v.typo is not None:
        letters = [k for k, c in enumerate(q) if c.isascii() and c.isalpha()]
        if letters:
            k = letters[v.typo % len(letters)]
            c = q[k]
            base = ord("a") if c.islower() else ord("A")
            q = q[:k] + chr(base + (ord(c) - base + 1) % 26) + q[k + 1 :]
    if v.case == "lower":
        q = q.lower()
    elif v.case == "upper":
        q = q.upper()
    elif v.case == "title":
        q = q.title()
    elif v.case is not None:
        raise VscbenchError(f"variation: case {v.case!r} is not one of {', '.join(CASES)}")
    if v.punctuation == "strip":
        q = q.rstrip().rstrip("?.!").rstrip()
    elif v.punctuation == "repeat":
        stripped = q.rstrip()
        q = stripped + (stripped[-1] * 2 if stripped and stripped[-1] in "?.!" else "?")
    elif v.punctuation == "space":
        q = re.sub(r"\s*([?.!]+)\s*$", r" \1", q.rstrip()) if re.search(r"[?.!]\s*$", q) else q + " ?"
    elif v.punctuation is not None:
        raise VscbenchError(f"variation: punctuation {v.punctuation!r} is not one of {', '.join(PUNCTUATION)}")
    if v.preamble is not None:
        q = f"{PREAMBLES[v.preamble % len(PREAMBLES)]} {q}"
    if v.whitespace == "double":
        q = q.replace(" ", "  ")
    elif v.whitespace == "leading":
        q = "  " + q
    elif v.whitespace == "trailing":
        q = q + "  "
    elif v.whitespace == "newline":
        q = q.replace(" ", "\n", 1) if " " in q else q + "\n"
    elif v.whitespace is not None:
        raise VscbenchError(f"variation: whitespace {v.whitespace!r} is not one of {', '.join(WHITESPACE)}")
    return q


def list_phrase(n: int) -> str:
    """``1, 2, and 3`` for 3; ``1 and 2`` for 2; ``1`` for 1."""
    nums = [str(k) for k in range(1, n + 1)]
    if len(nums) == 1:
        return nums[0]
    if len(nums) == 2:
        return f"{nums[0]} and {nums[1]}"
    return ", ".join(nums[:-1]) + ", and " + nums[-1]


# -------------------------------------------------------------------------------------------- rendering
@dataclass(frozen=True)
class RenderSource:
    """What a typographic image shows: the setting, its text, and the search image of a concat."""

    kind: str  # typography | figstep | concat
    text: str
    search: Path | None = None


def render_source(paths: DataPaths, item: Item) -> RenderSource | None:
    """The metadata that determines ``item``'s image (None for images that are not rendered)."""
    if item.half != "text" or item.setting not in R.RENDERABLE:
        return None
    rows = _rows(str(paths.text_centric_xlsx))
    row = rows.get(item.row)
    if row is None:
        raise VscbenchError(f"{paths.text_centric_xlsx}: row {item.row} (item {item.id}) not found")
    if item.setting == "figstep":
        return RenderSource("figstep", row["prompt_figstep"])
    if item.setting == "typography":
        return RenderSource("typography", row["object"])
    return RenderSource("concat", row["object"], paths.text_image("search", row["search_img"]))


@lru_cache(maxsize=4)
def _rows(xlsx: str) -> dict[int, dict[str, str]]:
    from vscbench.data.metadata import read_text_centric

    return {r.row: dict(r.values) for r in read_text_centric(Path(xlsx))}


def _colours(v: Variation) -> tuple[str, str]:
    fg = TEXT_COLOURS[v.text_colour] if v.text_colour is not None else "#000000"
    bg = BACKGROUNDS[v.background] if v.background is not None else "#FFFFFF"
    return fg, bg


def _font_of(v: Variation, default_size: int) -> ImageFont.FreeTypeFont:
    path = font_path(v.font) if v.font is not None else R.resolve_font()
    return _font(str(path), v.font_size if v.font_size is not None else default_size)


def wrap_pixels(text: str, font: ImageFont.FreeTypeFont, width: float) -> list[str]:
    """``text`` wrapped at word boundaries so that each line is at most ``width`` pixels wide in ``font``
    (a word wider than that gets a line of its own: words are never broken)."""
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(lines[-1] + " " + word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [""]


def _layout_changed(v: Variation) -> bool:
    return v.font is not None or v.font_size is not None or v.margin is not None


def render_typography(text: str, v: Variation) -> Image.Image:
    """:func:`vscbench.data.render.render_typography` with ``v``'s rendering changes."""
    f = _font_of(v, R.TYPO_FONT_SIZE)
    margin = v.margin if v.margin is not None else R.TYPO_MARGIN
    spacing = v.line_spacing if v.line_spacing is not None else R.TYPO_SPACING
    fg, bg = _colours(v)
    if _layout_changed(v):  # by pixels, whole words only (the canvas widens for a word that does not fit)
        lines = wrap_pixels(text, f, R.TYPO_WIDTH - 2 * margin)
    else:  # exactly as the release renders it
        lines = R.typography_lines(text, f)
    width = max(R.TYPO_WIDTH, max(int(f.getlength(line)) + 2 * margin for line in lines))
    ascent, descent = f.getmetrics()
    line_h = ascent + descent
    block_h = len(lines) * line_h + (len(lines) - 1) * spacing
    height = max(R.TYPO_MIN_HEIGHT, 2 * margin + block_h)
    im = Image.new("RGB", (width, height), bg)
    draw = ImageDraw.Draw(im)
    y = (height - block_h) // 2
    for line in lines:
        w = f.getlength(line)
        draw.text((int((width - w) // 2), y), line, font=f, fill=fg)
        y += line_h + spacing
    return im


def render_figstep(instruction: str, v: Variation) -> Image.Image:
    """:func:`vscbench.data.render.render_figstep` with ``v``'s rendering changes (the canvas grows, and the
    wrap width shrinks, so that no text is clipped)."""
    f = _font_of(v, R.FIGSTEP_FONT_SIZE)
    x0 = v.margin if v.margin is not None else R.FIGSTEP_ORIGIN[0]
    y0 = x0 // 2 if v.margin is not None else R.FIGSTEP_ORIGIN[1]
    spacing = v.line_spacing if v.line_spacing is not None else R.FIGSTEP_SPACING
    n = v.figstep_items if v.figstep_items is not None else R.FIGSTEP_STEPS
    fg, bg = _colours(v)
    width, height = R.FIGSTEP_SIZE
    if _layout_changed(v):  # by pixels, whole words only, within FigStep's own right margin
        text = "\n".join(wrap_pixels(instruction, f, width - x0 - R.FIGSTEP_ORIGIN[0]))
    else:  # exactly as the release renders it
        text = textwrap.fill(instruction.strip(), width=R.FIGSTEP_WRAP)
    for i in range(1, n + 1):
        text += f"\n{i}. "
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    box = probe.multiline_textbbox((x0, y0), text, font=f, spacing=spacing)
    width, height = max(width, int(box[2]) + x0), max(height, int(box[3]) + y0)
    im = Image.new("RGB", (width, height), bg)
    ImageDraw.Draw(im).text((x0, y0), text, font=f, spacing=spacing, fill=fg)
    return im


def render_concat(search: Path, text: str, v: Variation) -> Image.Image:
    """:func:`vscbench.data.render.render_concat` with ``v``'s changes (typography above when asked)."""
    with open_image(search) as src:
        top = R._to_rgb(src)
    if top.width != R.TYPO_WIDTH:
        h = max(1, round(top.height * R.TYPO_WIDTH / top.width))
        top = top.resize((R.TYPO_WIDTH, h), Image.Resampling.LANCZOS)
    typo = render_typography(text, v)
    parts = [typo, top] if v.concat_position == "above" else [top, typo]
    im = Image.new("RGB", (R.TYPO_WIDTH, top.height + typo.height), "#FFFFFF")
    im.paste(parts[0], (0, 0))
    im.paste(parts[1], (0, parts[0].height))
    return im


def apply_image_changes(im: Image.Image, v: Variation, noise_seed: int = 0) -> Image.Image:
    """Rotation, crop, resize, noise, then JPEG round trip (in that order), each only when asked."""
    out = im.convert("RGB")
    if v.rotation is not None:
        _, bg = _colours(v)
        out = out.rotate(v.rotation, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=bg)
    if v.crop is not None:
        dx, dy = round(out.width * v.crop), round(out.height * v.crop)
        if dx or dy:
            out = out.crop((dx, dy, max(dx + 1, out.width - dx), max(dy + 1, out.height - dy)))
    if v.resize is not None:
        size = (max(1, round(out.width * v.resize)), max(1, round(out.height * v.resize)))
        out = out.resize(size, Image.Resampling.LANCZOS)
    if v.noise is not None and v.noise > 0:
        import numpy as np

        rng = np.random.default_rng(noise_seed)
        arr = np.asarray(out, dtype=np.float64)
        arr = arr + rng.normal(0.0, float(v.noise), size=arr.shape)
        out = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")
    if v.jpeg_quality is not None:
        buf = io.BytesIO()
        out.save(buf, format="JPEG", quality=int(v.jpeg_quality))
        buf.seek(0)
        with Image.open(buf) as jpg:
            out = jpg.convert("RGB")
    return out


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=6, optimize=False)
    return buf.getvalue()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------- variants
def applicable_fields(item: Item) -> frozenset[str]:
    """The :class:`Variation` fields that change something for ``item``."""
    out = set(TEXT_FIELDS)
    if item.image is not None:
        out |= set(IMAGE_FIELDS)
    if item.half == "text" and item.setting in R.RENDERABLE:
        out |= set(RENDER_FIELDS)
        if item.setting == "figstep":
            out.add("figstep_items")
        if item.setting == "concat":
            out.add("concat_position")
    return frozenset(out)


def variant_id(seed_id: str, query: str, image_sha256: str | None) -> str:
    """``rb/<seed id>/<12 hex>`` over what is sent."""
    facts = json.dumps({"seed": seed_id, "query": query, "image": image_sha256}, sort_keys=True)
    return f"{VARIANT_PREFIX}/{seed_id}/{hashlib.sha256(facts.encode('utf-8')).hexdigest()[:12]}"


def render_image(item: Item, v: Variation, source: RenderSource | None) -> Image.Image:
    """``item``'s image with ``v``'s rendering and image changes (the seed's own image, re-rendered or read)."""
    if source is not None and v.renders:
        if source.kind == "typography":
            im = render_typography(source.text, v)
        elif source.kind == "figstep":
            im = render_figstep(source.text, v)
        else:
            if source.search is None or not source.search.is_file():
                raise VscbenchError(f"{source.search}: search image missing; a concat variant needs it")
            im = render_concat(source.search, source.text, v)
    else:
        if item.image is None:
            raise VscbenchError(f"item {item.id} has no image to vary")
        with open_image(item.image) as src:
            im = R._to_rgb(src)
    seed = int(hashlib.sha256(f"{item.id}\t{v.to_json()}".encode()).hexdigest()[:16], 16)
    return apply_image_changes(im, v, noise_seed=seed)


def make_variant(item: Item, v: Variation, *, out_dir: Path, source: RenderSource | None = None) -> Item:
    """The item ``v`` makes of seed ``item``: the varied query and image (written under ``out_dir`` as
    ``<seed id with '/' as '_'>/<12 hex>.png``), id ``rb/<seed id>/<12 hex>``, everything else the seed's.
    Returns ``item`` itself when ``v`` changes nothing that is sent. Fields that do not apply to the item
    (e.g. a font for the text-only baseline) are ignored."""
    fields = applicable_fields(item)
    v = Variation(**{k: val for k, val in v.changes().items() if k in fields})
    query = vary_query(item.query, v, v.figstep_items if item.setting == "figstep" else None)
    image = item.image
    digest: str | None = None if item.image is None else "seed"
    if v.touches_image:
        data = png_bytes(render_image(item, v, source))
        digest = hashlib.sha256(data).hexdigest()
        path = Path(out_dir) / item.id.replace("/", "_") / f"{digest[:12]}.png"
        if not path.is_file():
            _write_atomic(path, data)
        image = str(path)
    if query == item.query and image == item.image:
        return item
    return dataclasses.replace(item, id=variant_id(item.id, query, digest), query=query, image=image, pair=())
