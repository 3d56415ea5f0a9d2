"""The clipboard interface shared by every clipboard backend, and what they have in common.

Owns :class:`Clipboard` (read and write the clipboard's text, read the X11/Wayland PRIMARY
selection, read an image, save and put back the content byte for byte), :class:`Saved`,
the format preferences and the bounded subprocess runner the command-line backends use.
Imports no desktop library.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Protocol

SUBPROCESS_TIMEOUT = 2.0

# Which one format of the previous clipboard is kept, best first: text as the owner offers
# it (so bytes that are not UTF-8 come back unchanged), then a screenshot.
X11_FORMATS = ("UTF8_STRING", "image/png", "text/plain;charset=utf-8", "STRING", "TEXT",
               "text/plain")
WAYLAND_FORMATS = ("text/plain;charset=utf-8", "UTF8_STRING", "image/png", "text/plain",
                   "STRING", "TEXT")


@dataclass(frozen=True)
class Saved:
    """The clipboard's content in one format, byte for byte, to be put back later."""

    kind: str  # an X target / MIME type ("UTF8_STRING", "image/png"), or "text"
    data: bytes


class Clipboard(Protocol):
    """The system clipboard. ``None`` from a read means "no text there"."""

    name: str

    def save(self) -> Saved | None:
        """The content in its best format (text first, then an image), None when empty."""
        ...

    def put_back(self, saved: Saved | None) -> None:
        """Make the clipboard hold ``saved`` again (empty text for None)."""
        ...

    def read_text(self) -> str | None: ...

    def write_text(self, text: str) -> None: ...

    def read_primary(self) -> str | None:
        """The PRIMARY selection (X11/Wayland), ``None`` where there is no such thing."""
        ...

    def read_image(self) -> bytes | None:
        """A PNG when the clipboard holds an image, else ``None``."""
        ...

    @property
    def has_primary(self) -> bool: ...


def best_format(offered: list[str], preference: tuple[str, ...]) -> str | None:
    return next((kind for kind in preference if kind in offered), None)


def run(args: list[str], input_: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """A clipboard tool, bounded: a tool that hangs must not hang the press."""
    return subprocess.run(args, input=input_, capture_output=True, timeout=SUBPROCESS_TIMEOUT,
                          check=False)
