"""The global hotkey (capability ``hotkey``), consumed on every OS: one module per backend
(``x11``: the key grabbed with XGrabKey; ``pynput``: a listener that swallows the chord on
Windows and macOS; ``null``), the chord as data (``chord.py``), chosen here.

Owns the per-OS default chord, the Wayland and macOS-permission checks, and the choice.

Default chords (configurable with ``[hotkey] ask = "<ctrl>+<alt>+<space>"``, pynput syntax):

* Linux and Windows: ``<ctrl>+<alt>+<space>``. Not bound by GNOME, KDE, Xfce or Windows
  (Ctrl+Space is taken by IMEs and, in WritingTools, turned volume down: WritingTools #3,
  #278; Alt+Space opens the window menu; Super/Win+Space switches the input language).
* macOS: ``<cmd>+<shift>+<space>``. Cmd+Space is Spotlight, Ctrl+Space and Ctrl+Option+Space
  switch input sources, Cmd+Option+Space opens a Finder search, Ctrl+Option+Space is a
  VoiceOver command; Cmd+Shift+Space is free in macOS.

Fires once per press (auto-repeat ignored, presses closer than ``debounce`` dropped).

Threading: each backend calls ``on_press`` on its own thread; the callback must return at
once: the app hands the work to its event loop with ``asyncio.run_coroutine_threadsafe``.
``start``/``stop`` may be called from any thread. Desktop libraries are imported inside
the backends only (pynput's import fails without X).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

from ..backends import BackendSpec, Choice, choose, is_wayland
from .base import HotkeySource
from .chord import Chord, human_hotkey, parse_chord, xdotool_chord
from .null import NullHotkey

__all__ = ["WAYLAND_HINT", "Chord", "HotkeySource", "NullHotkey", "choose_hotkey",
           "default_hotkey", "hotkey_problem", "hotkey_specs", "human_hotkey",
           "macos_permission_problems", "parse_chord", "xdotool_chord"]

log = logging.getLogger(__name__)

WAYLAND_HINT = ("On Wayland, bind `labrouter ask --selection` to a keyboard shortcut in your "
                "desktop's settings (GNOME: Settings > Keyboard > Custom Shortcuts; KDE: "
                "System Settings > Shortcuts > Custom Shortcuts).")


def default_hotkey(platform: str | None = None) -> str:
    platform = platform or sys.platform
    if platform == "darwin":
        return "<cmd>+<shift>+<space>"
    return "<ctrl>+<alt>+<space>"


def _x11(combo: str) -> HotkeySource:
    from .x11 import X11GrabHotkey

    return X11GrabHotkey(combo)


def _pynput(combo: str) -> HotkeySource:
    from .pynput import PynputHotkey

    return PynputHotkey(combo)


def hotkey_specs(combo: str, env: Mapping[str, str] | None = None
                 ) -> list[BackendSpec[HotkeySource]]:
    """X11: the key grabbed (``x11``); macOS and Windows: pynput with the chord swallowed.
    Both consume the chord: the focused application never sees it."""
    env = os.environ if env is None else env

    def x11_probe() -> str | None:
        import importlib.util

        if not sys.platform.startswith("linux"):
            return "only on Linux (X11)"
        problem = hotkey_problem(env)
        if problem:
            return problem
        if importlib.util.find_spec("Xlib") is None:
            return "python-xlib is not installed"
        return None

    def pynput_probe() -> str | None:
        if sys.platform.startswith("linux"):
            return hotkey_problem(env) or (
                "on X11 the x11 backend grabs the key; a pynput listener would let it "
                "through to the focused application")
        return hotkey_problem(env)

    return [BackendSpec("x11", x11_probe, lambda: _x11(combo)),
            BackendSpec("pynput", pynput_probe, lambda: _pynput(combo))]


def hotkey_problem(env: Mapping[str, str] | None = None,
                   platform: str | None = None) -> str | None:
    """None when a global hotkey can be grabbed here, else why not and what to do."""
    env = os.environ if env is None else env
    platform = platform or sys.platform
    import importlib.util

    # on Linux the key is grabbed with python-xlib: pynput (whose evdev dependency needs a
    # C compiler) is not needed there
    if not platform.startswith("linux") and importlib.util.find_spec("pynput") is None:
        return "pynput is not installed (pip install pynput)"
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
