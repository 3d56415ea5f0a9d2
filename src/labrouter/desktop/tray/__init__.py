"""The tray icon (capability ``tray``): what it shows (``view``, pure) and one module per
backend (``pystray``; ``xembed``, an X11 tray of our own with a menu drawn by
``drawn_menu``; ``null``), chosen here.

Each backend module imports its library lazily; this module imports none, so
``import labrouter.desktop.tray`` works with no display.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

from ..backends import BackendSpec, Choice, choose, display_reason, is_wayland
from .base import Tray, render_icon
from .null import NullTray
from .view import (
    APP_TITLE,
    PAUSE_CHOICES,
    SEPARATOR,
    MenuItem,
    RecentAnswer,
    TrayActions,
    TrayView,
    build_menu,
    cluster_state,
    find_item,
    machine_lines,
    machine_state,
    menu_texts,
    tooltip,
)

__all__ = ["APP_TITLE", "PAUSE_CHOICES", "SEPARATOR", "MenuItem", "NullTray", "RecentAnswer",
           "Tray", "TrayActions", "TrayView", "build_menu", "choose_tray", "cluster_state",
           "find_item", "machine_lines", "machine_state", "menu_texts", "render_icon",
           "tooltip", "tray_problem", "tray_specs", "xembed_problem", "MENU_SUPPORT"]

log = logging.getLogger(__name__)


def tray_problem(env: Mapping[str, str] | None = None) -> str | None:
    """Why pystray cannot give a tray with a menu here, or None."""
    env = os.environ if env is None else env
    import importlib.util

    reason = display_reason(env)
    if reason:
        return reason
    if importlib.util.find_spec("pystray") is None:
        return "pystray is not installed"
    if sys.platform.startswith("linux") and importlib.util.find_spec("gi") is None:
        return ("PyGObject is not installed, so pystray could only use its xorg backend, "
                "which has no menu")
    return None


def xembed_problem(env: Mapping[str, str] | None = None) -> str | None:
    """Why the X11 tray of our own cannot run here, or None."""
    env = os.environ if env is None else env
    import importlib.util

    if not sys.platform.startswith("linux"):
        return "only on Linux (X11)"
    if not env.get("DISPLAY"):
        return ("Wayland without an X display: no XEmbed tray (install PyGObject for "
                "pystray's AppIndicator tray)" if is_wayland(env) else
                "no X11 display (DISPLAY is not set)")
    reason = display_reason(env)
    if reason:
        return reason
    if importlib.util.find_spec("Xlib") is None:
        return "python-xlib is not installed"
    if not _x11_tray_owner(env):
        return ("no system tray on this X display (no _NET_SYSTEM_TRAY_S0 owner); "
                "GNOME needs the AppIndicator extension")
    return None


def _x11_tray_owner(env: Mapping[str, str]) -> bool:
    """Whether an X11 system tray (a _NET_SYSTEM_TRAY_S<n> owner) is running."""
    try:
        from Xlib import X
        from Xlib import display as xdisplay

        d = xdisplay.Display(env.get("DISPLAY"))
        try:
            atom = d.intern_atom(f"_NET_SYSTEM_TRAY_S{d.get_default_screen()}")
            return d.get_selection_owner(atom) != X.NONE
        finally:
            d.close()
    except Exception as exc:
        log.debug("cannot ask X for the tray owner: %s", exc)
        return False


def _pystray() -> Tray:
    from .pystray import PystrayTray

    return PystrayTray()


def _xembed() -> Tray:
    from .xembed import XembedTray

    return XembedTray()


#: what each backend offers, for doctor ("which tray runs and whether it has a menu")
MENU_SUPPORT = {"pystray": "icon with a menu (pystray)",
                "xembed": "icon with a menu, a tooltip and clicks (X11 system tray)",
                "null": "no icon: use the hotkey; answers come as notifications"}


def tray_specs(env: Mapping[str, str] | None = None) -> list[BackendSpec[Tray]]:
    """pystray first (AppIndicator/GTK on Linux with PyGObject, the native tray on macOS
    and Windows), then the X11 tray of our own, which needs nothing beyond pip."""
    return [BackendSpec("pystray", lambda: tray_problem(env), _pystray),
            BackendSpec("xembed", lambda: xembed_problem(env), _xembed)]


def choose_tray(env: Mapping[str, str] | None = None) -> Choice[Tray]:
    return choose("tray", tray_specs(env), BackendSpec("null", lambda: None, NullTray), env)
