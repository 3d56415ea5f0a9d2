"""The clipboard on macOS and Windows (and other systems): pyperclip for text
(macOS: AppKit/pbcopy; Windows: the Win32 clipboard), Pillow's ImageGrab for images.

An image is put back on macOS (osascript); on Windows it cannot be, so the capture leaves
a screenshot alone (see ``selection.SelectionCapture``). Blocking; pyperclip and Pillow
are imported here only.
"""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import time
from typing import Any

from . import base
from .base import Saved

log = logging.getLogger(__name__)


class PyperclipClipboard:
    name = "pyperclip"

    def __init__(self) -> None:
        import pyperclip

        self._pc: Any = pyperclip

    @property
    def has_primary(self) -> bool:
        return False

    def read_text(self) -> str | None:
        for attempt in range(3):  # Windows: OpenClipboard is busy while another app holds it
            try:
                text = self._pc.paste()
                return text if text else None
            except self._pc.PyperclipException as exc:
                log.debug("clipboard read failed (attempt %d): %s", attempt + 1, exc)
                time.sleep(0.05 * (attempt + 1))
        return None

    def write_text(self, text: str) -> None:
        for attempt in range(3):
            try:
                self._pc.copy(text)
                return
            except self._pc.PyperclipException as exc:
                log.debug("clipboard write failed (attempt %d): %s", attempt + 1, exc)
                time.sleep(0.05 * (attempt + 1))

    def read_primary(self) -> str | None:
        return None

    @property
    def restores_images(self) -> bool:
        return sys.platform == "darwin"  # through osascript; Windows: not yet

    def save(self) -> Saved | None:
        text = self.read_text()
        if text is not None:
            return Saved("text", text.encode("utf-8", "surrogatepass"))
        image = self.read_image()  # a screenshot: kept so that it is not lost
        return Saved("image/png", image) if image is not None else None

    def put_back(self, saved: Saved | None) -> None:
        if saved is not None and saved.kind == "image/png":
            if not self.restores_images:
                raise NotImplementedError("cannot put an image back on this clipboard")
            import tempfile

            with tempfile.NamedTemporaryFile(suffix=".png") as f:
                f.write(saved.data)
                f.flush()
                script = f'set the clipboard to (read (POSIX file "{f.name}") as «class PNGf»)'
                subprocess.run(["osascript", "-e", script], capture_output=True,
                               timeout=base.SUBPROCESS_TIMEOUT, check=True)
            return
        self.write_text(saved.data.decode("utf-8", "surrogatepass") if saved else "")

    def read_image(self) -> bytes | None:
        if sys.platform not in ("darwin", "win32"):
            return None
        try:
            from PIL import Image, ImageGrab

            img = ImageGrab.grabclipboard()
        except Exception as exc:  # Pillow raises various errors per OS
            log.debug("no image on the clipboard: %s", exc)
            return None
        if not isinstance(img, Image.Image):
            return None
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue()
