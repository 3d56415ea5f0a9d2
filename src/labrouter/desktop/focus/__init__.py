"""The focused application at hotkey time, a prior for the classifier.

Owns `FocusedApp` and `focused_app()`: the class or process name of the window that has the
focus, read once per press. X11 reads `_NET_ACTIVE_WINDOW` (set by the window manager) and
that window's `WM_CLASS`, falling back to the input focus; macOS asks NSWorkspace for the
frontmost application (pyobjc) or, without pyobjc, `osascript`; Windows reads the foreground
window's process image name through ctypes. Only names are read, never window titles: a
title can hold the subject of a private mail.

What a name leans to (an editor to code, a mail client to quick) is decided in core
(`labrouter.core.classify.context_for`, overridable by `[classifier.apps]`), not here.

Must not import app/ or autostart/; the platform modules import their libraries lazily, and
`focused_app()` never raises: no focus information is a normal answer (None).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FocusedApp:
    """The focused application: `name` is what the app map looks up (WM_CLASS class,
    bundle id or process name), `instance` the X11 instance name when there is one."""

    name: str
    instance: str = ""
    platform: str = ""


def focused_app(display: str | None = None) -> FocusedApp | None:
    """The application with the focus now, or None when it cannot be told."""
    try:
        if sys.platform == "darwin":
            from .macos import frontmost_app

            return frontmost_app()
        if sys.platform == "win32":
            from .windows import foreground_app

            return foreground_app()
        from .x11 import active_window_app

        return active_window_app(display)
    except Exception as exc:  # a focus probe must never break a press
        log.debug("focused application unknown: %s", exc)
        return None
