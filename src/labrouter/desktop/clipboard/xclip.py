"""The X11 clipboard through the ``xclip`` tool (what pyperclip uses there too).

Writing forks an ``xclip`` child that owns the selection until someone else takes it; its
output goes to /dev/null so that we never wait for it. Blocking: worker threads only.
"""

from __future__ import annotations

import logging
import subprocess
import time

from . import base
from .base import X11_FORMATS, Saved, best_format

log = logging.getLogger(__name__)


class XclipClipboard:
    name = "xclip"
    has_primary = True

    def __init__(self, binary: str = "xclip") -> None:
        self.binary = binary

    def _read(self, selection: str, target: str = "UTF8_STRING") -> bytes | None:
        try:
            proc = base.run([self.binary, "-selection", selection, "-o", "-t", target])
        except (OSError, subprocess.SubprocessError) as exc:
            log.debug("xclip read %s failed: %s", selection, exc)
            return None
        return proc.stdout if proc.returncode == 0 else None

    def read_text(self) -> str | None:
        data = self._read("clipboard")
        return None if data is None else data.decode("utf-8", "replace")

    def read_primary(self) -> str | None:
        data = self._read("primary")
        return None if data is None else data.decode("utf-8", "replace")

    def primary_stamp(self) -> str:
        """Which PRIMARY selection this is: its owner window and the time the owner took
        it (ICCCM's TIMESTAMP target), "" when unknown. xterm keeps owning PRIMARY after
        the user clicks to deselect, so the text alone cannot tell an old selection from
        the same text selected again; the stamp changes when it is selected again."""
        try:
            from Xlib import X, Xatom
            from Xlib import display as xdisplay
        except ImportError:
            return ""
        try:
            d = xdisplay.Display()
        except Exception:
            return ""
        try:
            owner = d.get_selection_owner(Xatom.PRIMARY)
            if owner in (X.NONE, None) or getattr(owner, "id", 0) == 0:
                return ""
            win = d.screen().root.create_window(0, 0, 1, 1, 0, X.CopyFromParent)
            prop = d.intern_atom("LABROUTER_PRIMARY_TIME")
            win.convert_selection(Xatom.PRIMARY, d.intern_atom("TIMESTAMP"), prop,
                                  X.CurrentTime)
            d.flush()
            deadline = time.monotonic() + 0.3
            value = b""
            while time.monotonic() < deadline:
                if not d.pending_events():
                    time.sleep(0.005)
                    continue
                ev = d.next_event()
                if ev.type == X.SelectionNotify:
                    if ev.property != X.NONE:
                        got = win.get_full_property(prop, X.AnyPropertyType)
                        if got is not None:
                            value = bytes(got.value) if isinstance(got.value, bytes) \
                                else str(list(got.value)).encode()
                    break
            return f"{owner.id:x}:{value[:64].hex()}"
        except Exception as exc:
            log.debug("no PRIMARY timestamp: %s", exc)
            return ""
        finally:
            d.close()

    def write_text(self, text: str) -> None:
        subprocess.run([self.binary, "-selection", "clipboard", "-i"],
                       input=text.encode("utf-8"), stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=base.SUBPROCESS_TIMEOUT, check=False)

    def read_image(self) -> bytes | None:
        targets = self._read("clipboard", "TARGETS")
        if not targets or b"image/png" not in targets.split():
            return None
        return self._read("clipboard", "image/png")

    def save(self) -> Saved | None:
        targets = self._read("clipboard", "TARGETS")
        offered = targets.decode("latin-1").split() if targets else []
        kind = best_format(offered, X11_FORMATS)
        if kind is None:
            return None
        data = self._read("clipboard", kind)
        return None if data is None else Saved(kind, data)

    def put_back(self, saved: Saved | None) -> None:
        kind, data = (saved.kind, saved.data) if saved else ("UTF8_STRING", b"")
        if kind == "text":
            kind = "UTF8_STRING"
        subprocess.run([self.binary, "-selection", "clipboard", "-t", kind, "-i"],
                       input=data, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=base.SUBPROCESS_TIMEOUT, check=False)
