"""Simulated keystrokes (capability ``keyboard``): wait until the hotkey's modifiers are
up, then send copy (Cmd+C on macOS, Ctrl+C elsewhere). Backends: ``pynput``, ``null``.
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
            return "pynput is not installed (see labrouter doctor)"
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

    return [BackendSpec("pynput", probe, build)]


def choose_keyboard(env: Mapping[str, str] | None = None,
                    modifiers_down: Callable[[], bool] | None = None) -> Choice[Keyboard]:
    return choose("keyboard", keyboard_specs(env, modifiers_down),
                  BackendSpec("null", lambda: None, NullKeyboard), env)
