"""The clipboard (capability ``clipboard``): one module per backend, chosen here.

Backends, in order of preference: ``wl`` (wl-clipboard, first on a Wayland session),
``xclip`` (X11), ``pyperclip`` (macOS, Windows, other), ``null`` (in memory: headless and
tests). Each backend module imports its library lazily; this module imports none.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping

from ..backends import BackendSpec, Choice, choose, has_x11, is_wayland
from .base import Clipboard, Saved
from .null import MemoryClipboard

__all__ = ["Clipboard", "MemoryClipboard", "Saved", "choose_clipboard", "clipboard_specs"]


def _xclip() -> Clipboard:
    from .xclip import XclipClipboard

    return XclipClipboard()


def _wl() -> Clipboard:
    from .wl import WlClipboard

    return WlClipboard()


def _pyperclip() -> Clipboard:
    from .pyperclip import PyperclipClipboard

    return PyperclipClipboard()


def clipboard_specs(env: Mapping[str, str] | None = None) -> list[BackendSpec[Clipboard]]:
    env = os.environ if env is None else env

    def xclip_probe() -> str | None:
        if not sys.platform.startswith("linux"):
            return "only on Linux"
        if not has_x11(env):
            return "no X11 display (DISPLAY is not set)"
        if not shutil.which("xclip"):
            return "the xclip program is not installed (apt install xclip)"
        return None

    def wl_probe() -> str | None:
        if not sys.platform.startswith("linux"):
            return "only on Linux"
        if not is_wayland(env) or not env.get("WAYLAND_DISPLAY"):
            return "not a Wayland session"
        if not (shutil.which("wl-paste") and shutil.which("wl-copy")):
            return "wl-clipboard is not installed (apt install wl-clipboard)"
        return None

    def pyperclip_probe() -> str | None:
        import importlib.util

        if importlib.util.find_spec("pyperclip") is None:
            return "pyperclip is not installed"
        if sys.platform.startswith("linux") and not (shutil.which("xclip") or
                                                     shutil.which("xsel")):
            return "pyperclip needs xclip or xsel on Linux"
        return None

    # on a Wayland session with XWayland both DISPLAY and WAYLAND_DISPLAY are set: wl first
    specs: list[BackendSpec[Clipboard]] = []
    if is_wayland(env):
        specs.append(BackendSpec("wl", wl_probe, _wl))
    specs.append(BackendSpec("xclip", xclip_probe, _xclip))
    if not is_wayland(env):
        specs.append(BackendSpec("wl", wl_probe, _wl))
    specs.append(BackendSpec("pyperclip", pyperclip_probe, _pyperclip))
    return specs


def choose_clipboard(env: Mapping[str, str] | None = None) -> Choice[Clipboard]:
    return choose("clipboard", clipboard_specs(env),
                  BackendSpec("null", lambda: None, MemoryClipboard), env)
