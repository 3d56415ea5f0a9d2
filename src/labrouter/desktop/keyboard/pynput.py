"""The copy keystroke through pynput's Controller (X11, macOS, Windows).

Blocking (waits up to ``timeout`` for the hotkey's modifiers to be released): worker
threads only. pynput and python-xlib are imported here only.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

_X11_MODIFIERS = ("Control_L", "Control_R", "Alt_L", "Alt_R", "Shift_L", "Shift_R",
                  "Super_L", "Super_R", "Meta_L", "Meta_R", "ISO_Level3_Shift")


class PynputKeyboard:
    """Copy through pynput's Controller.

    Waiting for the modifiers matters: the hotkey fires while its Ctrl+Alt are still down,
    and a Ctrl+C sent then arrives as Ctrl+Alt+C (pynput #261). On X11 the real key state
    is read with XQueryKeymap; elsewhere ``modifiers_down`` (given by the hotkey listener,
    which sees every key) is polled, and what is still held at the timeout is released.
    """

    name = "pynput"

    def __init__(self, modifiers_down: Callable[[], bool] | None = None,
                 platform: str | None = None) -> None:
        from pynput import keyboard

        self._kb = keyboard
        self._ctl: Any = keyboard.Controller()
        self.platform = platform or sys.platform
        self.modifiers_down = modifiers_down
        self._xdisplay = None
        self._xcodes: list[int] = []
        if self.platform.startswith("linux") and os.environ.get("DISPLAY"):
            try:
                from Xlib import XK
                from Xlib import display as xdisplay

                self._xdisplay = xdisplay.Display()
                for name in _X11_MODIFIERS:
                    code = self._xdisplay.keysym_to_keycode(XK.string_to_keysym(name))
                    if code:
                        self._xcodes.append(code)
            except Exception as exc:
                log.debug("XQueryKeymap unavailable: %s", exc)
                self._xdisplay = None

    def _held(self) -> bool:
        if self._xdisplay is not None:
            km = self._xdisplay.query_keymap()
            return any(km[c // 8] & (1 << (c % 8)) for c in self._xcodes)
        if self.modifiers_down is not None:
            return self.modifiers_down()
        return False

    def wait_modifiers_released(self, timeout: float = 2.0) -> bool:
        deadline = time.monotonic() + timeout
        while self._held():
            if time.monotonic() >= deadline:
                if self._xdisplay is None:  # release what the OS still thinks is held
                    k = self._kb.Key
                    for key in (k.ctrl, k.alt, k.shift, k.cmd):
                        try:
                            self._ctl.release(key)
                        except Exception:
                            pass
                return False
            time.sleep(0.01)
        return True

    def send_copy(self) -> None:
        mod = self._kb.Key.cmd if self.platform == "darwin" else self._kb.Key.ctrl
        with self._ctl.pressed(mod):
            self._ctl.tap("c")

    def send_paste(self) -> None:
        self.wait_modifiers_released()
        mod = self._kb.Key.cmd if self.platform == "darwin" else self._kb.Key.ctrl
        with self._ctl.pressed(mod):
            self._ctl.tap("v")

    def close(self) -> None:
        """Release the X connections (ours and the Controller's) while X is still there."""
        if self._xdisplay is not None:
            self._xdisplay.close()
            self._xdisplay = None
        self._ctl = None
