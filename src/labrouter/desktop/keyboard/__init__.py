"""Simulated keystrokes (capability ``keyboard``): wait until the hotkey's modifiers are
up, then send copy (Cmd+C on macOS, Ctrl+C elsewhere). Backends: ``xtest`` (X11, python-xlib),
``pynput`` (macOS, Windows), ``null``.
Each backend module imports its library lazily; this module imports none."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping

from ..backends import BackendSpec, Choice, choose, is_wayland
from .base import Keyboard
from .null import NullKeyboard

__all__ = ["Keyboard", "NullKeyboard", "choose_keyboard", "keyboard_specs"]


def keyboard_specs(env: Mapping[str, str] | None = None,
                   modifiers_down: Callable[[], bool] | None = None
                   ) -> list[BackendSpec[Keyboard]]:
    env = os.environ if env is None else env

    def probe() -> str | None:
        import importlib.util

        if importlib.util.find_spec("pynput") is None:
            return "pynput is not installed" + (
                " (not needed on X11: the xtest backend sends the keys)"
                if sys.platform.startswith("linux") else " (pip install pynput)")
        if sys.platform.startswith("linux"):
            if is_wayland(env):
                return "Wayland: pynput cannot send keys to other applications"
            if not env.get("DISPLAY"):
                return "no X11 display (DISPLAY is not set)"
        if sys.platform == "darwin":
            from ..hotkey import macos_permission_problems

            problems = [p for p in macos_permission_problems() if "Accessibility" in p]
            if problems:
                return problems[0]
        return None

    def build() -> Keyboard:
        from .pynput import PynputKeyboard

        return PynputKeyboard(modifiers_down)

    def xtest_probe() -> str | None:
        import importlib.util

        if not sys.platform.startswith("linux"):
            return "only on Linux (X11)"
        if is_wayland(env):
            return "Wayland: X11 keystrokes do not reach Wayland applications"
        if not env.get("DISPLAY"):
            return "no X11 display (DISPLAY is not set)"
        if importlib.util.find_spec("Xlib") is None:
            return "python-xlib is not installed"
        return None

    def build_xtest() -> Keyboard:
        from .xtest import XtestKeyboard

        return XtestKeyboard()

    specs = [BackendSpec("pynput", probe, build)]
    # X11: python-xlib is always there (pynput is not, on a plain pip install)
    if sys.platform.startswith("linux"):
        specs.insert(0, BackendSpec("xtest", xtest_probe, build_xtest))
    return specs


def choose_keyboard(env: Mapping[str, str] | None = None,
                    modifiers_down: Callable[[], bool] | None = None) -> Choice[Keyboard]:
    return choose("keyboard", keyboard_specs(env, modifiers_down),
                  BackendSpec("null", lambda: None, NullKeyboard), env)
