"""Which image format a file is, from its first bytes (what `ask --image` accepts).

Owns ``image_kind``: PNG, JPEG, GIF and WebP, the formats that Ollama's and the OpenAI
API's vision models take, recognised by their magic numbers, so that a text file or a PDF
is refused before it is sent anywhere. Standard library only; no image decoding (Pillow is
a desktop package and stays out of the CLI).
"""

from __future__ import annotations

FORMATS = ("PNG", "JPEG", "GIF", "WebP")


def image_kind(data: bytes) -> str | None:
    """``"png"``, ``"jpeg"``, ``"gif"`` or ``"webp"``; None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None
