"""Build the images that the metadata alone determines: FigStep, typography and concat.

Invariants:

* Deterministic: the same metadata, font file and Pillow version give the same bytes on every run
  (fixed canvas, fixed layout engine, fixed PNG parameters, no metadata chunks, no timestamps).
* Faithful: FigStep images follow FigStep's own recipe (FreeMonoBold 80, text at (20, 10), 11 px line
  spacing, 760x760 white canvas, wrapped at 15 characters, then ``1. / 2. / 3.``); the test suite holds
  ≥ 0.999 identical pixels against the 50 official FigStep images.
* Files appear atomically (written beside the target, then renamed): an interrupted render never leaves a
  half-written PNG under a release name.
* Only search images and the image half come from the official archive; everything else can be rebuilt here.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal

from PIL import Image, ImageDraw, ImageFont

from vscbench.data.images import open_image
from vscbench.data.metadata import MetaRow, read_text_centric
from vscbench.data.paths import DataPaths, writable_folder, writing
from vscbench.errors import VscbenchError
from vscbench.types import Item

#: FigStep's font and the fallback used when FreeMono is not installed.
FREEMONO_BOLD = Path("/usr/share/fonts/truetype/freefont/FreeMonoBold.ttf")
DEJAVU_MONO_BOLD = "DejaVuSansMono-Bold.ttf"
#: Environment variable naming a .ttf to use instead (for systems that keep fonts elsewhere).
FONT_ENV = "VSCBENCH_FONT"

FIGSTEP_SIZE = (760, 760)
FIGSTEP_FONT_SIZE = 80
FIGSTEP_ORIGIN = (20, 10)
FIGSTEP_SPACING = 11
FIGSTEP_WRAP = 15
FIGSTEP_STEPS = 3

TYPO_WIDTH = 1024
TYPO_FONT_SIZE = 90
TYPO_MARGIN = 40
TYPO_SPACING = 16
TYPO_MIN_HEIGHT = 256

#: Fixed PNG parameters: zlib level 6 and no optimisation pass, no text/time chunks.
_PNG_PARAMS: dict[str, object] = {"format": "PNG", "compress_level": 6, "optimize": False}

RenderKind = Literal["figstep", "typography", "concat"]
#: Settings this module can build.
RENDERABLE: tuple[str, ...] = ("typography", "figstep", "concat")


# ---------------------------------------------------------------------------------------------- fonts
def _matplotlib_font(name: str) -> Path | None:
    """A font bundled with matplotlib, found without importing matplotlib."""
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        return None
    for base in spec.submodule_search_locations:
        p = Path(base) / "mpl-data" / "fonts" / "ttf" / name
        if p.is_file():
            return p
    return None


def _font_candidates() -> list[tuple[Path, bool]]:
    """(path, is_figstep_font) in order of preference."""
    out: list[tuple[Path, bool]] = []
    env = os.environ.get(FONT_ENV)
    if env:
        out.append((Path(env).expanduser(), True))
    out.append((FREEMONO_BOLD, True))
    out.append((Path("/usr/share/fonts/truetype/dejavu") / DEJAVU_MONO_BOLD, False))
    mpl = _matplotlib_font(DEJAVU_MONO_BOLD)
    if mpl is not None:
        out.append((mpl, False))
    return out


@lru_cache(maxsize=1)
def resolve_font() -> Path:
    """The font file to render with: ``$VSCBENCH_FONT``, FreeMonoBold, else DejaVu Sans Mono Bold.

    Falling back prints one warning line on stderr (FigStep images then differ from the official ones).
    """
    for path, faithful in _font_candidates():
        if path.is_file():
            if not faithful:
                sys.stderr.write(
                    f"vscbench: warning: FreeMonoBold not found at {FREEMONO_BOLD}; rendering with {path} "
                    "(install Debian fonts-freefont-ttf for FigStep-faithful images)\n"
                )
            return path
    raise VscbenchError(
        f"no font to render with: install Debian fonts-freefont-ttf ({FREEMONO_BOLD}) or matplotlib, "
        f"or set ${FONT_ENV} to a .ttf file"
    )


@lru_cache(maxsize=8)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    # BASIC layout: available everywhere, so the output does not depend on whether libraqm is installed.
    return ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.BASIC)


# ------------------------------------------------------------------------------------------ renderers
def figstep_text(instruction: str) -> str:
    """FigStep's text: the instruction wrapped at 15 characters, then empty numbered lines 1-3."""
    text = textwrap.fill(instruction.strip(), width=FIGSTEP_WRAP)
    for i in range(1, FIGSTEP_STEPS + 1):
        text += f"\n{i}. "
    return text


def render_figstep(instruction: str, font: Path | None = None) -> Image.Image:
    """FigStep's typographic image of ``instruction`` (760x760 RGB, black on white)."""
    f = _font(str(font or resolve_font()), FIGSTEP_FONT_SIZE)
    im = Image.new("RGB", FIGSTEP_SIZE, "#FFFFFF")
    ImageDraw.Draw(im).text(
        FIGSTEP_ORIGIN, figstep_text(instruction), font=f, spacing=FIGSTEP_SPACING, fill="#000000"
    )
    return im


def typography_lines(text: str, font: ImageFont.FreeTypeFont, width: int = TYPO_WIDTH) -> list[str]:
    """``text`` wrapped so that each line fits ``width`` minus the margins (monospace: by characters)."""
    advance = max(1.0, font.getlength("M"))
    per_line = max(1, int((width - 2 * TYPO_MARGIN) // advance))
    return textwrap.wrap(" ".join(text.split()), width=per_line, break_long_words=True) or [""]


def render_typography(text: str, font: Path | None = None) -> Image.Image:
    """``text`` in bold black monospace, each line centred, on a white canvas 1024 px wide.

    Height grows with the number of lines (at least 256 px) so that long objects are never clipped.
    """
    f = _font(str(font or resolve_font()), TYPO_FONT_SIZE)
    lines = typography_lines(text, f)
    ascent, descent = f.getmetrics()
    line_h = ascent + descent
    height = max(TYPO_MIN_HEIGHT, 2 * TYPO_MARGIN + len(lines) * line_h + (len(lines) - 1) * TYPO_SPACING)
    im = Image.new("RGB", (TYPO_WIDTH, height), "#FFFFFF")
    draw = ImageDraw.Draw(im)
    block_h = len(lines) * line_h + (len(lines) - 1) * TYPO_SPACING
    y = (height - block_h) // 2
    for line in lines:
        w = f.getlength(line)
        draw.text((int((TYPO_WIDTH - w) // 2), y), line, font=f, fill="#000000")
        y += line_h + TYPO_SPACING
    return im


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB, with any transparency composited onto white (so transparent pixels do not turn black)."""
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    return im.convert("RGB")


def render_concat(search_image: Path, text: str, font: Path | None = None) -> Image.Image:
    """The search image scaled to 1024 px wide, above the typography of ``text`` (same width)."""
    with open_image(search_image) as src:
        top = _to_rgb(src)
    if top.width != TYPO_WIDTH:
        h = max(1, round(top.height * TYPO_WIDTH / top.width))
        top = top.resize((TYPO_WIDTH, h), Image.Resampling.LANCZOS)
    bottom = render_typography(text, font)
    im = Image.new("RGB", (TYPO_WIDTH, top.height + bottom.height), "#FFFFFF")
    im.paste(top, (0, 0))
    im.paste(bottom, (0, top.height))
    return im


def save_png(im: Image.Image, path: Path) -> None:
    """Write ``im`` as PNG with fixed parameters, atomically (temp file in the same folder, then rename)."""
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                im.save(fh, **_PNG_PARAMS)  # type: ignore[arg-type]
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


# ------------------------------------------------------------------------------------------------ jobs
@dataclass(frozen=True)
class RenderJob:
    """One image to build. ``text`` is the FigStep instruction or the typography object."""

    kind: RenderKind
    out: Path
    text: str
    font: Path
    search: Path | None = None


def run_job(job: RenderJob) -> Path:
    """Build one image and write it; returns its path. Pure function of the job (safe in a worker)."""
    if job.kind == "figstep":
        im = render_figstep(job.text, job.font)
    elif job.kind == "typography":
        im = render_typography(job.text, job.font)
    else:
        assert job.search is not None
        im = render_concat(job.search, job.text, job.font)
    save_png(im, job.out)
    return job.out


def default_jobs() -> int:
    """Worker processes to use: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def run_jobs(jobs: Sequence[RenderJob], workers: int | None = None) -> list[Path]:
    """Run ``jobs`` across processes (in-process when there are few jobs or one worker); job order kept.

    Every output folder is created and proved writable first, so an unwritable ``--out`` or root is one
    :class:`VscbenchError` naming the folder before any image is rendered."""
    for folder in sorted({j.out.parent for j in jobs}):
        writable_folder(folder)
    n = workers or default_jobs()
    if n <= 1 or len(jobs) < 8:
        return [run_job(j) for j in jobs]
    chunk = max(1, len(jobs) // (n * 4))
    with ProcessPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run_job, jobs, chunksize=chunk))


# --------------------------------------------------------------------------------------- release level
@dataclass
class RenderSummary:
    """What ``render_release`` did, per setting."""

    written: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)
    skipped_no_search: list[str] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    font: Path | None = None
    out: Path | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "out": str(self.out) if self.out else None,
            "font": str(self.font) if self.font else None,
            "written": dict(self.written),
            "kept": dict(self.kept),
            "concat_skipped_no_search_image": len(self.skipped_no_search),
        }


def _row_index(paths: DataPaths) -> dict[int, MetaRow]:
    return {r.row: r for r in read_text_centric(paths.text_centric_xlsx)}


def _job_for(setting: str, row: MetaRow, out_paths: DataPaths, src_paths: DataPaths, font: Path) -> RenderJob:
    v = row.values
    col = {"figstep": "figstep_img", "typography": "typography_img", "concat": "concat_img"}[setting]
    out = out_paths.text_image(setting, v[col])
    if setting == "figstep":
        return RenderJob("figstep", out, v["prompt_figstep"], font)
    if setting == "typography":
        return RenderJob("typography", out, v["object"], font)
    return RenderJob("concat", out, v["object"], font, src_paths.text_image("search", v["search_img"]))


def render_release(
    paths: DataPaths,
    out: Path | None = None,
    force: bool = False,
    workers: int | None = None,
    settings: Sequence[str] = RENDERABLE,
) -> RenderSummary:
    """Render every typography and FigStep image of the metadata, and concat where the search image exists.

    Images go to ``out`` (default: the root) in the release layout. Existing files are kept unless
    ``force``. Search images are read from the root.
    """
    out_paths = DataPaths(root=(out or paths.root).resolve(), metadata=paths.metadata)
    rows = list(_row_index(paths).values())
    font = resolve_font()
    summary = RenderSummary(font=font, out=out_paths.root)
    jobs: list[RenderJob] = []
    for setting in settings:
        summary.written[setting] = 0
        summary.kept[setting] = 0
        for r in rows:
            job = _job_for(setting, r, out_paths, paths, font)
            if job.kind == "concat" and (job.search is None or not job.search.is_file()):
                summary.skipped_no_search.append(r.values["search_img"])
                continue
            if job.out.exists() and not force:
                summary.kept[setting] += 1
                continue
            jobs.append(job)
            summary.written[setting] += 1
    summary.paths = run_jobs(jobs, workers)
    return summary


def ensure_images(paths: DataPaths, items: Sequence[Item], workers: int | None = None) -> list[Path]:
    """Make sure every image the ``items`` need exists; render the missing ones that metadata determines.

    Typography and FigStep images are rendered from the metadata; concat images when their search image
    exists. A missing image that cannot be built here (image half, search, or a concat whose search image
    is absent) raises :class:`VscbenchError` naming the file, before anything is rendered.
    Returns the paths rendered (empty when everything was present).
    """
    missing_unbuildable: list[Path] = []
    wanted: list[Item] = []
    for it in items:
        if it.image is None:
            continue
        p = Path(it.image)
        if p.exists():
            continue
        if it.half == "text" and it.setting in RENDERABLE:
            wanted.append(it)
        else:
            missing_unbuildable.append(p)
    rows: dict[int, MetaRow] = _row_index(paths) if wanted else {}
    jobs: list[RenderJob] = []
    seen: set[Path] = set()
    font = resolve_font() if wanted else FREEMONO_BOLD
    for it in wanted:
        row = rows.get(it.row)
        if row is None:
            raise VscbenchError(
                f"{paths.text_centric_xlsx}: row {it.row} (item {it.id}) not found; items and metadata disagree"
            )
        job = _job_for(it.setting, row, paths, paths, font)
        if job.out != Path(it.image or ""):
            job = RenderJob(job.kind, Path(it.image or ""), job.text, job.font, job.search)
        if job.kind == "concat" and job.search is not None and not job.search.is_file():
            missing_unbuildable.append(job.search)
            continue
        if job.out not in seen:
            seen.add(job.out)
            jobs.append(job)
    if missing_unbuildable:
        first = missing_unbuildable[0]
        more = len(set(missing_unbuildable)) - 1
        raise VscbenchError(
            f"{first}: image missing and cannot be rendered from metadata"
            + (f" ({more} more missing)" if more > 0 else "")
            + "; get the official images with 'vscbench data fetch' or 'vscbench data import ARCHIVE'"
        )
    return run_jobs(jobs, workers)
