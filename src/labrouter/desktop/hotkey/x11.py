"""The hotkey on X11: the chord is grabbed with ``XGrabKey`` on the root window (python-xlib,
which comes with pynput), so the X server gives the key to us and never to the focused
application. A listener (what pynput does) only watches, and the key went on to the
terminal too: each press typed an invisible U+0080 into xterm's command line.

The grab is made once per combination of the modifiers that must not matter (Caps Lock,
Num Lock): X matches grabs on the exact modifier state. A chord that another program has
grabbed already fails with BadAccess: building the backend fails with that reason (doctor
and the log say which chord is taken), and no listener is put in its place.

Fires once per press: auto-repeat (a KeyRelease and a KeyPress with the same server time)
is ignored, and presses closer than ``debounce`` seconds are dropped.

Threading: its own thread with its own X connection, waiting on the connection and a wake
pipe; ``on_press`` is called there and must return at once (the app hands the work to its
event loop). ``start``/``stop`` may be called from any thread.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections.abc import Callable
from typing import Any

from ...core.hotkeys import x11_keysym
from .chord import Chord, human_hotkey, parse_chord

log = logging.getLogger(__name__)

_KEYSYM_NAMES = {"space": "space", "enter": "Return", "tab": "Tab", "esc": "Escape"}


class HotkeyTaken(RuntimeError):
    """Another program holds a grab on the chord."""


def keysym_name(key: str) -> str:
    if key in _KEYSYM_NAMES:
        return _KEYSYM_NAMES[key]
    if key.startswith("f") and key[1:].isdigit():
        return key.upper()
    return key


class X11GrabHotkey:
    """See the module docstring."""

    name = "x11"

    def __init__(self, combo: str, display: str | None = None, debounce: float = 0.3,
                 clock: Callable[[], float] = time.monotonic) -> None:
        from Xlib import XK, X
        from Xlib import display as xdisplay

        self.combo = combo
        self.chord: Chord = parse_chord(combo)
        self.debounce = debounce
        self.clock = clock
        self._d: Any = xdisplay.Display(display)
        self._root = self._d.screen().root
        sym = x11_keysym(self.chord.key) or XK.string_to_keysym(keysym_name(self.chord.key))
        self.keycode = self._d.keysym_to_keycode(sym) if sym else 0
        if not self.keycode:
            self._d.close()
            raise ValueError(f"the hotkey {combo!r}: no key {self.chord.key!r} on this keyboard")
        self.modifiers = self._mask(self.chord)
        self._ignored = self._ignorable_masks()
        self._callback: Callable[[], None] | None = None
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = os.pipe()
        self._stop = threading.Event()
        self._last_fire = -1e9
        self._last_release_time = -1
        self._X = X
        self._grab()

    # ---------------------------------------------------------- setting up

    def _modifier_bit(self, keysym_names: tuple[str, ...]) -> int:
        """The ModN mask bit a modifier key sits on (Alt is usually Mod1, Super Mod4, Num
        Lock Mod2, but the keyboard map decides)."""
        from Xlib import XK

        codes = {self._d.keysym_to_keycode(XK.string_to_keysym(n)) for n in keysym_names}
        codes.discard(0)
        for index, keys in enumerate(self._d.get_modifier_mapping()):
            if codes & set(keys):
                return 1 << index
        return 0

    def _mask(self, chord: Chord) -> int:
        from Xlib import X

        mask = 0
        if "ctrl" in chord.modifiers:
            mask |= X.ControlMask
        if "shift" in chord.modifiers:
            mask |= X.ShiftMask
        if "alt" in chord.modifiers:
            mask |= self._modifier_bit(("Alt_L", "Alt_R", "Meta_L")) or X.Mod1Mask
        if "cmd" in chord.modifiers:
            mask |= self._modifier_bit(("Super_L", "Super_R")) or X.Mod4Mask
        return mask

    def _ignorable_masks(self) -> list[int]:
        from Xlib import X

        num = self._modifier_bit(("Num_Lock",)) or X.Mod2Mask
        lock = X.LockMask
        return [0, lock, num, lock | num]

    def _grab(self) -> None:
        from Xlib import X
        from Xlib.error import CatchError

        catch = CatchError()
        for extra in self._ignored:
            self._root.grab_key(self.keycode, self.modifiers | extra, True, X.GrabModeAsync,
                                X.GrabModeAsync, onerror=catch)
        self._d.sync()
        if catch.get_error() is not None:
            self._ungrab()
            self._d.close()
            raise HotkeyTaken(f"{human_hotkey(self.combo)} is taken by another program; "
                              "choose another with [hotkey] ask in the configuration")
        self._root.change_attributes(event_mask=X.KeyPressMask | X.KeyReleaseMask)
        self._d.flush()

    def _ungrab(self) -> None:
        for extra in self._ignored:
            try:
                self._root.ungrab_key(self.keycode, self.modifiers | extra)
            except Exception:
                pass

    # ---------------------------------------------------------- the interface

    def start(self, on_press: Callable[[], None]) -> None:
        self._callback = on_press
        self._thread = threading.Thread(target=self._loop, name="labrouter-hotkey",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2.0)
        if self._thread is None:
            self._close()

    def modifiers_down(self) -> bool:
        return False  # the keyboard backend reads the real key state (XQueryKeymap)

    # ---------------------------------------------------------- the thread

    def _loop(self) -> None:
        try:
            fd = self._d.fileno()
            while not self._stop.is_set():
                while self._d.pending_events():
                    self._handle(self._d.next_event())
                ready, _, _ = select.select([fd, self._wake_r], [], [], 1.0)
                if self._wake_r in ready:
                    os.read(self._wake_r, 64)
        except Exception:
            log.exception("the hotkey's X connection failed; the hotkey is off")
        finally:
            self._close()

    def _handle(self, ev: Any) -> None:
        X = self._X
        if ev.type == X.KeyRelease and ev.detail == self.keycode:
            self._last_release_time = ev.time
            return
        if ev.type != X.KeyPress or ev.detail != self.keycode:
            return
        if ev.time == self._last_release_time:
            return  # auto-repeat: X sends release+press with one timestamp
        now = self.clock()
        if now - self._last_fire < self.debounce:
            return
        self._last_fire = now
        log.debug("hotkey pressed (grabbed; the focused application did not get it)")
        if self._callback is not None:
            try:
                self._callback()
            except Exception:
                log.exception("hotkey callback failed")

    def _close(self) -> None:
        try:
            self._ungrab()
            self._d.flush()
            self._d.close()
        except Exception:
            pass
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1
