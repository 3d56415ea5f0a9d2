"""Choosing the desktop's parts: the tray, hotkey, clipboard, keyboard and notification
backends, each with the reasons the others gave (kept for doctor and the log)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ...desktop.backends import Choice
from ...desktop.clipboard import Clipboard, choose_clipboard
from ...desktop.hotkey import HotkeySource, choose_hotkey, default_hotkey
from ...desktop.keyboard import Keyboard, choose_keyboard
from ...desktop.notify import NotificationChain, default_chain
from ...desktop.tray import Tray, choose_tray
from ..settings import Context

log = logging.getLogger(__name__)


@dataclass
class DesktopParts:
    """The chosen backends, with the reasons the others gave (kept for doctor and logs)."""

    tray: Tray
    hotkey: HotkeySource
    clipboard: Clipboard
    keyboard: Keyboard
    notifier: NotificationChain
    choices: list[Choice[Any]] = field(default_factory=list)
    #: read PRIMARY first on X11/Wayland; LABROUTER_SELECTION_PRIMARY=0 turns it off (always
    #: copy), for applications that leave a stale PRIMARY behind
    use_primary: bool = True


def choose_parts(ctx: Context, env: Mapping[str, str] | None = None) -> DesktopParts:
    env = os.environ if env is None else env
    combo = ctx.config.hotkey.ask or default_hotkey()
    tray = choose_tray(env)
    hotkey = choose_hotkey(combo, env)
    clipboard = choose_clipboard(env)
    keyboard = choose_keyboard(env, hotkey.backend.modifiers_down)
    icon_notify: Callable[[str, str], None] | None = None
    if sys.platform == "win32" and tray.name == "pystray":
        def icon_notify(title: str, body: str) -> None:
            tray.backend.notify(title, body)
    notifier = NotificationChain(default_chain(env=env, icon_notify=icon_notify), env)
    for c in (tray, hotkey, clipboard, keyboard):
        log.info("desktop %s: %s", c.capability, c.describe())
    return DesktopParts(tray.backend, hotkey.backend, clipboard.backend, keyboard.backend,
                        notifier, [tray, hotkey, clipboard, keyboard],
                        use_primary=env.get("LABROUTER_SELECTION_PRIMARY", "1") != "0")
