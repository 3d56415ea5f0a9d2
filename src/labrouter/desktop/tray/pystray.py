"""The tray through pystray (Windows, macOS, and Linux with PyGObject: AppIndicator/GTK).

Updates are queued (newest wins) for an updater thread, which applies them, on macOS
marshalled to the main thread with ``PyObjCTools.AppHelper.callAfter`` (AppKit must not be
touched from a worker: pystray #60, serena #2038); pystray's gtk and appindicator backends
marshal to their own loop themselves; on Windows the menu handle is rebuilt under a lock.
pystray and Pillow are imported here only.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from .base import render_icon
from .view import APP_TITLE, MenuItem

log = logging.getLogger(__name__)


class PystrayTray:
    """pystray's Icon; see the module docstring for the threading contract."""

    name = "pystray"

    def __init__(self, title: str = APP_TITLE) -> None:
        import pystray

        self._pystray = pystray
        self._lock = threading.Lock()
        self._template = sys.platform == "darwin"  # macOS draws only the alpha channel
        self.icon = pystray.Icon(APP_TITLE, render_icon("offline", template=self._template),
                                 title, menu=pystray.Menu())
        self.backend = type(self.icon).__module__.rsplit(".", 1)[-1].lstrip("_")
        if self.backend == "xorg":
            _patch_xorg(type(self.icon))
        self._state = "offline"
        self._stopped = threading.Event()
        # the latest update waits here for the updater thread (newer ones replace it)
        self._pending: tuple[str, str, tuple[MenuItem, ...]] | None = None
        self._cv = threading.Condition()
        self._updater: threading.Thread | None = None
        self._stop_requested = False
        self._xdisplay: Any = None  # the updater thread's own X connection (xorg)

    @property
    def has_menu(self) -> bool:
        return bool(getattr(self.icon, "HAS_MENU", False))

    def run(self, setup: Callable[[], None]) -> None:
        early = self.backend == "xorg"
        if early:
            # pystray's xorg backend hands a mutation from another thread to its loop
            # with an X ClientMessage; done from the setup thread while the loop starts,
            # that hand-over sometimes never completes (the setup hung until stop). So the
            # icon is shown here, on the loop's own thread, before the loop runs.
            self.icon._thread = threading.current_thread()
            self.icon.visible = True

        def _setup(icon: Any) -> None:
            if not early:
                icon.visible = True
            setup()

        self._updater = threading.Thread(target=self._apply_updates, name="labrouter-tray",
                                         daemon=True)
        self._updater.start()
        try:
            self.icon.run(setup=_setup)
        finally:
            self._stopped.set()
            with self._cv:
                self._stop_requested = True
                self._cv.notify_all()

    def _call(self, fn: Callable[[], None]) -> None:
        if sys.platform == "darwin":
            from PyObjCTools import AppHelper

            AppHelper.callAfter(fn)
            return
        with self._lock:
            fn()

    def update(self, state: str, title: str, menu: tuple[MenuItem, ...]) -> None:
        """Never blocks the caller (the event loop): the updater thread applies the
        latest update; a burst of updates collapses into the last one."""
        with self._cv:
            if self._stop_requested:
                return
            self._pending = (state, title, menu)
            self._cv.notify_all()

    def _apply_updates(self) -> None:
        """The updater thread: applies updates one at a time, then the stop, so that a
        stop never races an update inside pystray."""
        while True:
            with self._cv:
                while self._pending is None and not self._stop_requested:
                    self._cv.wait(0.5)
                job, self._pending = self._pending, None
                stopping = self._stop_requested
            if stopping:
                if not self._stopped.is_set():
                    self._do_stop()
                return
            if job is None:
                continue
            try:
                self._apply(*job)
            except Exception:
                log.exception("tray update failed")

    def _apply(self, state: str, title: str, menu: tuple[MenuItem, ...]) -> None:
        pystray_menu = self._to_pystray(menu)
        if self.backend == "xorg":
            self._apply_xorg(state, title, pystray_menu)
            return

        def apply() -> None:
            if state != self._state:
                self.icon.icon = render_icon(state, template=self._template)
                self._state = state
            self.icon.title = title[:127]
            self.icon.menu = pystray_menu
            self.icon.update_menu()

        self._call(apply)

    def notify(self, title: str, body: str) -> None:
        if not getattr(self.icon, "HAS_NOTIFICATION", False):
            raise NotImplementedError(f"pystray's {self.backend} backend has no notifications")
        self.icon.notify(body, title)

    def stop(self) -> None:
        """Any thread, returns at once: the updater thread stops the icon after the
        update it may be applying (pending updates are dropped)."""
        with self._cv:
            self._stop_requested = True
            self._pending = None
            self._cv.notify_all()
        if self._updater is None:  # never ran
            self._do_stop()

    def _do_stop(self) -> None:
        if self.backend == "xorg":
            self._stop_xorg()
            return

        def apply() -> None:
            try:
                self.icon.visible = False
            except Exception:
                pass
            self.icon.stop()

        self._call(apply)

    def _own_display(self) -> Any:
        """The updater thread's own X connection (xorg backend only)."""
        if self._xdisplay is None:
            from Xlib import display as xdisplay

            self._xdisplay = xdisplay.Display()
        return self._xdisplay

    def _apply_xorg(self, state: str, title: str, pystray_menu: Any) -> None:
        """Update pystray's xorg icon without calling into its X connection from this
        thread: python-xlib deadlocked when this thread flushed pystray's connection while
        pystray's loop waited there for a reply (seen under Xvfb: the loop stuck in
        ``get_geometry``). Plain attributes are set here; the X side goes over our own
        connection: the window's name (the tooltip), and an Expose event that makes
        pystray's loop redraw the new image on its own thread. xorg has no menu
        (``HAS_MENU = False``); the menu is still kept, for ``icon.menu`` readers."""
        icon = self.icon
        icon._menu = pystray_menu  # no update_menu(): a no-op on xorg
        icon._title = title[:127]
        d = self._own_display()
        window = d.create_resource_object("window", icon._window.id)
        if state != self._state:
            from PIL import Image

            image = render_icon(state, template=self._template)
            geo = window.get_geometry()
            # scaled as pystray's _assert_icon_data does, then swapped in with one
            # assignment: its loop draws either the old image or the new one
            data = Image.new("RGB", (geo.width, geo.height))
            data.paste(image.resize((geo.width, geo.height), Image.LANCZOS))
            data.tostring = data.tobytes  # type: ignore[attr-defined]
            icon._icon = image
            icon._icon_data = data
            icon._icon_valid = True
            self._state = state
        window.set_wm_name(icon._title)
        window.clear_area(exposures=True)
        d.flush()

    def _stop_xorg(self) -> None:
        """Stop pystray's xorg loop without its cross-thread hand-over (which sometimes
        never completes, see ``run``): destroy the icon's window over a connection of our
        own; the loop sees DestroyNotify and returns, and with it ``run``."""
        try:
            d = self._own_display()
            try:
                d.create_resource_object("window", self.icon._window.id).destroy()
                d.sync()
            finally:
                d.close()
                self._xdisplay = None
        except Exception:
            log.warning("could not remove the tray icon's window; stopping pystray",
                        exc_info=True)
            self.icon.stop()

    def _to_pystray(self, items: Sequence[MenuItem]) -> Any:
        ps = self._pystray

        def convert(i: MenuItem) -> Any:
            if i.separator:
                return ps.Menu.SEPARATOR
            action = _safe(i.action) if i.action else None
            kwargs: dict[str, Any] = {"enabled": i.enabled, "default": i.default}
            if i.checked is not None:
                checked = i.checked
                kwargs["checked"] = lambda _item: checked
            if i.submenu:
                return ps.MenuItem(i.text, ps.Menu(*[convert(s) for s in i.submenu]),
                                   **{k: v for k, v in kwargs.items() if k != "default"})
            return ps.MenuItem(i.text, action, **kwargs)

        return ps.Menu(*[convert(i) for i in items])


def _safe(fn: Callable[[], None]) -> Callable[..., None]:
    def run(*_args: Any) -> None:
        try:
            fn()
        except Exception:
            log.exception("menu action failed")

    return run


_PATCHED: set[type] = set()


def _patch_xorg(cls: type) -> None:
    """Two fixes for pystray's xorg backend (../shared/research/desktop-ci.md §7): dock once
    (two SYSTEM_TRAY_REQUEST_DOCK messages make some trays lose the icon), and ask for
    button presses so that a left click runs the default item."""
    if cls in _PATCHED:
        return
    _PATCHED.add(cls)
    original_dock = cls._dock_window  # type: ignore[attr-defined]
    original_create = cls._create_window  # type: ignore[attr-defined]

    def _dock_window(self: Any) -> None:
        if getattr(self, "_systray_manager", None) is not None:
            return
        original_dock(self)

    def _create_window(self: Any) -> Any:
        import Xlib.X as X

        window = original_create(self)
        try:
            window.change_attributes(event_mask=X.ExposureMask | X.StructureNotifyMask
                                     | X.ButtonPressMask)
        except Exception:
            log.debug("could not add ButtonPressMask", exc_info=True)
        return window

    cls._dock_window = _dock_window  # type: ignore[attr-defined]
    cls._create_window = _create_window  # type: ignore[attr-defined]
