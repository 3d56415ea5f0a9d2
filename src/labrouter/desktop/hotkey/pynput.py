"""The hotkey through pynput's keyboard listener (Windows and macOS), with the chord
swallowed so that it never reaches the focused application: on Windows the low-level
hook's ``win32_event_filter`` suppresses the key's down and up events, on macOS the event
tap's ``darwin_intercept`` returns None for them. The matching is ``chord.py``'s, tested
with fakes. (On X11 the ``x11`` backend grabs the key instead.)

Threading: pynput calls us on its listener thread; the callback must return at once (on
Windows a slow hook callback freezes input for every program, pynput docs "The keyboard
listener thread"). pynput is imported here only.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from .chord import Chord, darwin_swallow, parse_chord, win32_swallow

log = logging.getLogger(__name__)

_WIN_MODS = {0x11: "ctrl", 0xA2: "ctrl", 0xA3: "ctrl", 0x12: "alt", 0xA4: "alt", 0xA5: "alt",
             0x10: "shift", 0xA0: "shift", 0xA1: "shift", 0x5B: "cmd", 0x5C: "cmd"}
_WM_KEYDOWN = (0x100, 0x104)  # WM_KEYDOWN, WM_SYSKEYDOWN
_WM_KEYUP = (0x101, 0x105)


class PynputHotkey:
    """pynput's keyboard listener with one ``HotKey``; tracks which modifiers are held."""

    name = "pynput"

    def __init__(self, combo: str, debounce: float = 0.3,
                 clock: Callable[[], float] = time.monotonic) -> None:
        from pynput import keyboard

        self._kb = keyboard
        self.combo = combo
        self.keys = keyboard.HotKey.parse(combo)  # raises ValueError on a bad chord
        self.chord: Chord = parse_chord(combo)
        self.platform = sys.platform
        self._win_held: set[str] = set()
        self._fire: Callable[[], None] | None = None
        self.debounce = debounce
        self.clock = clock
        self._listener: Any = None
        self._hotkey: Any = None
        self._held: set[Any] = set()
        self._lock = threading.Lock()
        self._last = -1e9
        k = keyboard.Key
        self._modifiers = {k.ctrl, k.ctrl_l, k.ctrl_r, k.alt, k.alt_l, k.alt_r, k.alt_gr,
                           k.shift, k.shift_l, k.shift_r, k.cmd, k.cmd_l, k.cmd_r}

    def start(self, on_press: Callable[[], None]) -> None:
        def fire() -> None:
            now = self.clock()
            if now - self._last < self.debounce:
                return
            self._last = now
            try:
                on_press()
            except Exception:
                log.exception("hotkey callback failed")

        self._fire = fire
        self._hotkey = self._kb.HotKey(self.keys, fire)

        def press(key: Any, injected: bool = False) -> None:
            if injected or key is None:
                return
            with self._lock:
                if key in self._modifiers:
                    self._held.add(key)
            self._hotkey.press(self._listener.canonical(key))

        def release(key: Any, injected: bool = False) -> None:
            if injected or key is None:
                return
            with self._lock:
                self._held.discard(key)
            self._hotkey.release(self._listener.canonical(key))

        extra: dict[str, Any] = {}
        if self.platform == "win32":
            extra["win32_event_filter"] = self._win32_filter
        elif self.platform == "darwin":
            extra["darwin_intercept"] = self._darwin_intercept
        self._listener = self._kb.Listener(on_press=press, on_release=release, **extra)
        self._listener.daemon = True
        self._listener.start()
        self._listener.wait()
        if sys.platform == "darwin" and not getattr(self._listener, "IS_TRUSTED", True):
            from . import macos_permission_problems

            log.warning("the hotkey does not work: %s", "; ".join(macos_permission_problems()))

    def _win32_filter(self, msg: int, data: Any) -> bool:
        """The low-level hook's filter: keeps the held modifiers and swallows the chord's
        key, down and up, so that the focused application never sees it. A swallowed
        event does not reach the listener either (pynput aborts the filter with an
        exception), so the key-down fires the hotkey here."""
        vk = int(getattr(data, "vkCode", 0))
        mod = _WIN_MODS.get(vk)
        if mod is not None:
            if msg in _WM_KEYDOWN:
                self._win_held.add(mod)
            elif msg in _WM_KEYUP:
                self._win_held.discard(mod)
            return True
        if win32_swallow(self.chord, vk, frozenset(self._win_held)) and \
                self._listener is not None:
            if msg in _WM_KEYDOWN and self._fire is not None:
                self._fire()
            self._listener.suppress_event()  # raises: pynput's way to stop the event
        return True

    def _darwin_intercept(self, event_type: Any, event: Any) -> Any:
        """The event tap's callback: None swallows the chord's key event."""
        try:
            import Quartz

            keycode = Quartz.CGEventGetIntegerValueField(event,
                                                         Quartz.kCGKeyboardEventKeycode)
            flags = Quartz.CGEventGetFlags(event)
        except Exception:
            return event
        if darwin_swallow(self.chord, int(keycode), int(flags)):
            return None
        return event

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        listener.stop()
        if listener is threading.current_thread():
            return
        listener.join(2.0)

    def modifiers_down(self) -> bool:
        with self._lock:
            return bool(self._held)
