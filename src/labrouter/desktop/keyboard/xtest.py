"""The copy keystroke on X11 through the XTEST extension (python-xlib only: what a plain
``pip install`` has on Linux, where pynput is not installed by default).

Waits until the hotkey's modifiers are really up (XQueryKeymap), because a Ctrl+C sent
while the user still holds Alt arrives as Ctrl+Alt+C. Blocking: worker threads only; one
X connection of its own, used by one thread at a time (the capture runs one at a time).
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger(__name__)

MODIFIER_KEYSYMS = ("Control_L", "Control_R", "Alt_L", "Alt_R", "Shift_L", "Shift_R",
                    "Super_L", "Super_R", "Meta_L", "Meta_R", "ISO_Level3_Shift")


class XtestKeyboard:
    name = "xtest"

    def __init__(self, display: str | None = None) -> None:
        from Xlib import XK
        from Xlib import display as xdisplay
        from Xlib.ext import xtest  # noqa: F401 (fails early when the extension is absent)

        self._d: Any = xdisplay.Display(display)
        if not self._d.has_extension("XTEST"):
            self._d.close()
            raise RuntimeError("the X server has no XTEST extension")
        self._mod_codes = [c for c in (self._d.keysym_to_keycode(XK.string_to_keysym(n))
                                       for n in MODIFIER_KEYSYMS) if c]
        self._ctrl = self._d.keysym_to_keycode(XK.XK_Control_L)
        self._c = self._d.keysym_to_keycode(XK.XK_c)
        self._v = self._d.keysym_to_keycode(XK.XK_v)

    def _held(self) -> bool:
        km = self._d.query_keymap()
        return any(km[c // 8] & (1 << (c % 8)) for c in self._mod_codes)

    def wait_modifiers_released(self, timeout: float = 2.0) -> bool:
        deadline = time.monotonic() + timeout
        while self._held():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def _ctrl_chord(self, key: int) -> None:
        from Xlib import X
        from Xlib.ext import xtest

        for code, kind in ((self._ctrl, X.KeyPress), (key, X.KeyPress),
                           (key, X.KeyRelease), (self._ctrl, X.KeyRelease)):
            xtest.fake_input(self._d, kind, code)
        self._d.sync()

    def send_copy(self) -> None:
        self._ctrl_chord(self._c)

    def send_paste(self) -> None:
        self.wait_modifiers_released()
        self._ctrl_chord(self._v)

    def close(self) -> None:
        try:
            self._d.close()
        except Exception:
            pass
