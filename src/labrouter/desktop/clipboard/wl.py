"""The Wayland clipboard through wl-clipboard (``wl-paste``, ``wl-copy``). Blocking."""

from __future__ import annotations

import subprocess

from . import base
from .base import WAYLAND_FORMATS, Saved, best_format


class WlClipboard:
    name = "wl"
    has_primary = True

    def _paste(self, *extra: str) -> bytes | None:
        try:
            proc = base.run(["wl-paste", "--no-newline", *extra])
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout if proc.returncode == 0 else None

    def read_text(self) -> str | None:
        data = self._paste()
        return None if data is None else data.decode("utf-8", "replace")

    def read_primary(self) -> str | None:
        data = self._paste("--primary")
        return None if data is None else data.decode("utf-8", "replace")

    def write_text(self, text: str) -> None:
        subprocess.run(["wl-copy"], input=text.encode("utf-8"), stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=base.SUBPROCESS_TIMEOUT, check=False)

    def read_image(self) -> bytes | None:
        try:
            types = base.run(["wl-paste", "--list-types"])
        except (OSError, subprocess.SubprocessError):
            return None
        if types.returncode != 0 or b"image/png" not in types.stdout.split():
            return None
        return self._paste("--type", "image/png")

    def save(self) -> Saved | None:
        try:
            types = base.run(["wl-paste", "--list-types"])
        except (OSError, subprocess.SubprocessError):
            return None
        offered = types.stdout.decode("latin-1").split("\n") if types.returncode == 0 else []
        kind = best_format([t.strip() for t in offered], WAYLAND_FORMATS)
        if kind is None:
            return None
        # no --no-newline here: the bytes must come back exactly as they were
        try:
            proc = base.run(["wl-paste", "--type", kind])
        except (OSError, subprocess.SubprocessError):
            return None
        return Saved(kind, proc.stdout) if proc.returncode == 0 else None

    def put_back(self, saved: Saved | None) -> None:
        kind, data = (saved.kind, saved.data) if saved else ("text/plain;charset=utf-8", b"")
        if kind == "text":
            kind = "text/plain;charset=utf-8"
        subprocess.run(["wl-copy", "--type", kind], input=data, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=base.SUBPROCESS_TIMEOUT, check=False)
