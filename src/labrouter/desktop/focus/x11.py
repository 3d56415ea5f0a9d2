"""The focused application on X11 (and XWayland windows), through python-xlib.

Owns `active_window_app()`. The window manager publishes the active window in the root
window's `_NET_ACTIVE_WINDOW` (EWMH); its `WM_CLASS` is (instance, class), e.g.
("code", "Code") or ("gnome-terminal-server", "Gnome-terminal"). Without a window manager
the input focus is used, walking up to the first ancestor that has a `WM_CLASS` (toolkits
put the focus on an inner window).
"""

from __future__ import annotations

import os
from typing import Any

from . import FocusedApp

MAX_PARENTS = 8


def active_window_app(display_name: str | None = None) -> FocusedApp | None:
    """The focused window's application, or None without an X display or a focus."""
    if not (display_name or os.environ.get("DISPLAY")):
        return None
    from Xlib import X, display, error

    d = display.Display(display_name)
    try:
        window = _active_window(d, X)
        if window is None:
            return None
        for _ in range(MAX_PARENTS):
            try:
                wm_class = window.get_wm_class()
            except error.XError:
                return None
            if wm_class:
                instance, cls = wm_class
                return FocusedApp(name=cls or instance, instance=instance, platform="x11")
            parent = window.query_tree().parent
            if not parent or parent.id in (0, d.screen().root.id):
                return None
            window = parent
        return None
    finally:
        d.close()


def _active_window(d: Any, x: Any) -> Any | None:
    root = d.screen().root
    prop = root.get_full_property(d.intern_atom("_NET_ACTIVE_WINDOW"), x.AnyPropertyType)
    if prop is not None and len(prop.value) and int(prop.value[0]):
        return d.create_resource_object("window", int(prop.value[0]))
    focus = d.get_input_focus().focus
    # PointerRoot (1) and None (0) come back as ints: no window has the focus.
    if isinstance(focus, int) or focus.id == root.id:
        return None
    return focus
