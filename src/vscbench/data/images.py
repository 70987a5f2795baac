"""Image file facts that other stages need: the real format of a file, whatever its name says."""

from __future__ import annotations

from pathlib import Path

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
