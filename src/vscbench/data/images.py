"""Image file facts that other stages need: the real format of a file, whatever its name says."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from PIL import Image, UnidentifiedImageError

from vscbench.errors import VscbenchError

#: Magic numbers -> MIME type. Checked on the first bytes of the file, never on its extension.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)


def sniff_mime(data_or_path: bytes | str | Path) -> str | None:
    """The MIME type from the file's leading bytes (PNG, JPEG, GIF, WebP, BMP), or None if unknown."""
    if isinstance(data_or_path, bytes):
        head = data_or_path[:16]
    else:
        with open(data_or_path, "rb") as f:
            head = f.read(16)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    for magic, mime in _MAGIC:
        if head.startswith(magic):
            return mime
    return None


MIME_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "image/png": (".png",),
    "image/jpeg": (".jpg", ".jpeg"),
    "image/gif": (".gif",),
    "image/webp": (".webp",),
    "image/bmp": (".bmp",),
}

#: Largest image (width x height) vscbench opens. Far above any benchmark image; far below what would
#: exhaust memory when decoded. Pillow's own bomb check (``Image.MAX_IMAGE_PIXELS``) is left untouched.
MAX_IMAGE_PIXELS = 50_000_000

ProblemKind = Literal["unreadable", "corrupt", "format", "too_large"]


@dataclass(frozen=True)
class ImageProblem:
    """Why an image file is not usable; ``kind`` is one of ``unreadable``, ``corrupt``, ``format``, ``too_large``."""

    path: Path
    kind: ProblemKind
    detail: str

    def line(self) -> str:
        return f"{self.path}: {self.detail}"


def open_image(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Open ``path`` lazily after checking its pixel count from the header (decompression-bomb guard).

    Raises :class:`VscbenchError` naming the file when it cannot be opened or is larger than ``max_pixels``.
    The caller owns the returned image (use it as a context manager).
    """
    p = Path(path)
    try:
        im = Image.open(p)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise VscbenchError(f"{p}: image over the pixel limit ({exc})") from exc
    except FileNotFoundError as exc:
        raise VscbenchError(f"{p}: image file not found") from exc
    except UnidentifiedImageError as exc:
        raise VscbenchError(f"{p}: corrupt or not an image (Pillow cannot identify it)") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise VscbenchError(f"{p}: corrupt or unreadable image ({exc.__class__.__name__}: {exc})") from exc
    w, h = im.size
    if w * h > max_pixels:
        im.close()
        raise VscbenchError(f"{p}: image over the pixel limit ({w}x{h} > {max_pixels} pixels)")
    return im


def check_image(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> ImageProblem | None:
    """Decode ``path`` fully and compare its real format with its extension; None when it is usable.

    Order of checks: readable file, known format by magic bytes, pixel limit (header only), full decode,
    then extension. A file that decodes but whose extension names another format is a ``format`` problem.
    """
    p = Path(path)
    try:
        mime = sniff_mime(p)
    except OSError as exc:
        return ImageProblem(p, "unreadable", f"cannot read file ({exc.strerror or exc})")
    if mime is None:
        return ImageProblem(p, "corrupt", "corrupt or not an image: not PNG, JPEG, GIF, WebP or BMP data")
    try:
        with open_image(p, max_pixels) as im:
            im.load()
    except VscbenchError as exc:
        kind: ProblemKind = "too_large" if "pixel limit" in str(exc) else "corrupt"
        return ImageProblem(p, kind, str(exc).removeprefix(f"{p}: "))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return ImageProblem(p, "too_large", f"image over the pixel limit ({exc})")
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        return ImageProblem(p, "corrupt", f"corrupt {mime} data ({exc.__class__.__name__}: {exc})")
    if p.suffix.lower() not in MIME_EXTENSIONS.get(mime, ()):
        return ImageProblem(
            p, "format", f"{mime} content but the name ends in {p.suffix or '(no extension)'!r}"
        )
    return None
