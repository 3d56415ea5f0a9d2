"""The global hotkey: a small interface, a pynput backend and a null one.

Owns :class:`HotkeySource` (capability ``hotkey``), the per-OS default chord, the
Wayland and macOS-permission checks, and nothing else.

Default chords (configurable with ``[hotkey] ask = "<ctrl>+<alt>+<space>"``, pynput syntax):

* Linux and Windows: ``<ctrl>+<alt>+<space>``. Not bound by GNOME, KDE, Xfce or Windows
  (Ctrl+Space is taken by IMEs and, in WritingTools, turned volume down: WritingTools #3,
  #278; Alt+Space opens the window menu; Super/Win+Space switches the input language).
* macOS: ``<cmd>+<shift>+<space>``. Cmd+Space is Spotlight, Ctrl+Space and Ctrl+Option+Space
  switch input sources, Cmd+Option+Space opens a Finder search, Ctrl+Option+Space is a
  VoiceOver command; Cmd+Shift+Space is free in macOS.

Fires once per press: pynput's ``HotKey`` only fires when the chord becomes complete, so
key repeat of a held key does not fire again; presses closer than ``debounce`` seconds are
dropped as well, and injected (synthetic) key events are ignored (pynput >= 1.8).

Threading: pynput runs its own listener thread and calls ``on_press`` there. The callback
must return at once (on Windows a slow callback freezes input for every program, pynput
docs "The keyboard listener thread"): the app hands the work to its event loop with
``asyncio.run_coroutine_threadsafe`` and returns. ``start``/``stop`` may be called from
any thread. pynput is imported inside the backend only (its import fails without X).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .backends import BackendSpec, Choice, choose, is_wayland

log = logging.getLogger(__name__)

WAYLAND_HINT = ("On Wayland, bind `labrouter ask --selection` to a keyboard shortcut in your "
                "desktop's settings (GNOME: Settings > Keyboard > Custom Shortcuts; KDE: "
                "System Settings > Shortcuts > Custom Shortcuts).")


def default_hotkey(platform: str | None = None) -> str:
    platform = platform or sys.platform
    if platform == "darwin":
        return "<cmd>+<shift>+<space>"
    return "<ctrl>+<alt>+<space>"


_KEY_WORDS = {"ctrl": "Ctrl", "ctrl_l": "Ctrl", "ctrl_r": "Ctrl", "alt": "Alt", "alt_l": "Alt",
              "alt_r": "Alt", "alt_gr": "AltGr", "shift": "Shift", "shift_l": "Shift",
              "shift_r": "Shift", "cmd": "Super", "cmd_l": "Super", "cmd_r": "Super",
              "space": "Space", "enter": "Enter", "tab": "Tab", "esc": "Esc"}
_MAC_SYMBOLS = {"ctrl": "⌃", "alt": "⌥", "shift": "⇧", "cmd": "⌘"}
_MAC_ORDER = "⌃⌥⇧⌘"  # Apple's order for modifier symbols


def human_hotkey(combo: str, platform: str | None = None) -> str:
    """A chord as people write it: ``<ctrl>+<alt>+<space>`` -> ``Ctrl+Alt+Space``; on
    macOS with Apple's symbols, ``<cmd>+<shift>+<space>`` -> ``⇧⌘Space``; Windows says
    ``Win`` for the Super key."""
    platform = platform or sys.platform
    keys = [p.strip().strip("<>").lower() for p in combo.split("+") if p.strip()]
    if platform == "darwin":
        mods = sorted({_MAC_SYMBOLS[k.split("_")[0]] for k in keys
                       if k.split("_")[0] in _MAC_SYMBOLS}, key=_MAC_ORDER.index)
        rest = [_KEY_WORDS.get(k, k.upper() if len(k) == 1 else k.capitalize())
                for k in keys if k.split("_")[0] not in _MAC_SYMBOLS]
        return "".join(mods) + "+".join(rest)
    words = []
    for k in keys:
        word = _KEY_WORDS.get(k, k.upper() if len(k) == 1 else k.capitalize())
        if word == "Super" and platform == "win32":
            word = "Win"
        words.append(word)
    return "+".join(words)


def xdotool_chord(combo: str) -> str:
    """The same chord in xdotool's syntax (tests, bench): <ctrl>+<alt>+<space> -> ctrl+alt+space."""
    parts = []
    for part in combo.split("+"):
        p = part.strip().strip("<>")
        parts.append({"cmd": "super"}.get(p, p))
    return "+".join(parts)


class HotkeySource(Protocol):
    """Calls ``on_press`` once per press of the chord, from its own thread."""

    name: str
    combo: str

    def start(self, on_press: Callable[[], None]) -> None: ...

    def stop(self) -> None: ...

    def modifiers_down(self) -> bool:
        """Whether a modifier key is held now, as far as this source knows."""
        ...


@dataclass
class NullHotkey:
    """No global hotkey (headless, Wayland). ``press()`` fires it, for tests."""

    combo: str = ""
    name: str = "null"
    _callback: Callable[[], None] | None = field(default=None, repr=False)

    def start(self, on_press: Callable[[], None]) -> None:
        self._callback = on_press

    def stop(self) -> None:
        self._callback = None

    def press(self) -> None:
        if self._callback is not None:
            self._callback()

    def modifiers_down(self) -> bool:
        return False


class PynputHotkey:
    """pynput's keyboard listener with one ``HotKey``; tracks which modifiers are held."""

    name = "pynput"

    def __init__(self, combo: str, debounce: float = 0.3,
                 clock: Callable[[], float] = time.monotonic) -> None:
        from pynput import keyboard

        self._kb = keyboard
        self.combo = combo
        self.keys = keyboard.HotKey.parse(combo)  # raises ValueError on a bad chord
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

        self._listener = self._kb.Listener(on_press=press, on_release=release)
        self._listener.daemon = True
        self._listener.start()
        self._listener.wait()
        if sys.platform == "darwin" and not getattr(self._listener, "IS_TRUSTED", True):
            log.warning("the hotkey does not work: %s", "; ".join(macos_permission_problems()))

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        listener.stop()
        if listener is threading.current_thread():
            return
        listener.join(0.5)
        if listener.is_alive() and sys.platform.startswith("linux"):
            # pynput's xorg listener queues its XRecord "disable" on the recording
            # connection without flushing it, so it stops only at the next key event;
            # send the same request over its other connection, flushed
            try:
                listener._display_stop.record_disable_context(listener._context)
                listener._display_stop.flush()
            except Exception:
                log.debug("could not wake pynput's listener", exc_info=True)
            listener.join(2.0)

    def modifiers_down(self) -> bool:
        with self._lock:
            return bool(self._held)


def hotkey_specs(combo: str, env: Mapping[str, str] | None = None
                 ) -> list[BackendSpec[HotkeySource]]:
    env = os.environ if env is None else env

    def probe() -> str | None:
        return hotkey_problem(env)

    return [BackendSpec("pynput", probe, lambda: PynputHotkey(combo))]


def hotkey_problem(env: Mapping[str, str] | None = None,
                   platform: str | None = None) -> str | None:
    """None when a global hotkey can be grabbed here, else why not and what to do."""
    env = os.environ if env is None else env
    platform = platform or sys.platform
    import importlib.util

    if importlib.util.find_spec("pynput") is None:
        # on Linux, pynput's evdev dependency needs a C compiler and is not used
        return ("pynput is not installed (" + ("pip install --no-deps 'pynput<2'"
                if platform.startswith("linux") else "pip install pynput") + ")")
    if platform.startswith("linux"):
        if is_wayland(env):
            return "Wayland: global hotkeys cannot be grabbed. " + WAYLAND_HINT
        if not env.get("DISPLAY"):
            return "no X11 display (DISPLAY is not set)"
    if platform == "darwin":
        problems = macos_permission_problems()
        if problems:
            return "; ".join(problems)
    return None


def choose_hotkey(combo: str, env: Mapping[str, str] | None = None) -> Choice[HotkeySource]:
    return choose("hotkey", hotkey_specs(combo, env),
                  BackendSpec("null", lambda: None, lambda: NullHotkey(combo)), env)


# ------------------------------------------------------------------ macOS permissions


def macos_permission_problems() -> list[str]:
    """What macOS has not granted this Python, each with how to grant it. [] elsewhere.

    The hotkey needs Input Monitoring (a listen-only event tap), the simulated Cmd+C needs
    Accessibility; without them pynput fails silently (pynput #389, #634), so check first.
    The grant belongs to the binary that runs: under a LaunchAgent that is the interpreter
    below, not the terminal.
    """
    if sys.platform != "darwin":
        return []
    import ctypes
    import ctypes.util

    exe = os.path.realpath(sys.executable)
    problems: list[str] = []
    try:
        appsvc = ctypes.cdll.LoadLibrary(ctypes.util.find_library("ApplicationServices") or
                                         "/System/Library/Frameworks/ApplicationServices."
                                         "framework/ApplicationServices")
        appsvc.AXIsProcessTrusted.restype = ctypes.c_bool
        if not appsvc.AXIsProcessTrusted():
            problems.append(f"Accessibility is not granted to {exe}: System Settings > "
                            "Privacy & Security > Accessibility, add it and switch it on")
        preflight = getattr(appsvc, "CGPreflightListenEventAccess", None)
        if preflight is not None:
            preflight.restype = ctypes.c_bool
            if not preflight():
                problems.append(f"Input Monitoring is not granted to {exe}: System Settings "
                                "> Privacy & Security > Input Monitoring, add it and switch "
                                "it on")
    except OSError as exc:
        problems.append(f"cannot check the macOS permissions: {exc}")
    return problems
