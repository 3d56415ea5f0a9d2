"""The tray through pystray (Windows, macOS, and Linux with PyGObject: AppIndicator/GTK),
through its public API only (no private attribute is touched, so no version is pinned).
When pystray can only offer its xorg backend (no PyGObject), which has no menu, building
this backend fails and the X11 tray of our own (``xembed.py``) is used instead.

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
        if not self.has_menu:
            # pystray's xorg fallback: no menu, no tooltip; the xembed backend does better
            raise RuntimeError(f"pystray chose its {self.backend} backend, which has no menu")
        self._state = "offline"
        self._stopped = threading.Event()
        # the latest update waits here for the updater thread (newer ones replace it)
        self._pending: tuple[str, str, tuple[MenuItem, ...]] | None = None
        self._cv = threading.Condition()
        self._updater: threading.Thread | None = None
        self._stop_requested = False

    @property
    def has_menu(self) -> bool:
        return bool(getattr(self.icon, "HAS_MENU", False))

    def run(self, setup: Callable[[], None]) -> None:
        def _setup(icon: Any) -> None:
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

        def apply() -> None:
            try:
                self.icon.visible = False
            except Exception:
                pass
            self.icon.stop()

        self._call(apply)

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
