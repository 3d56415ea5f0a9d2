"""No tray icon (no tray host, e.g. GNOME without the AppIndicator extension; headless;
tests): ``run`` blocks until ``stop``; the hotkey and notifications still work."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from .view import MenuItem


@dataclass
class NullTray:
    """No icon: ``run`` blocks until ``stop``. Remembers the last update (tests)."""

    name: str = "null"
    state: str = ""
    title: str = ""
    menu: tuple[MenuItem, ...] = ()
    updates: int = 0
    _stopped: threading.Event = field(default_factory=threading.Event)

    def run(self, setup: Callable[[], None]) -> None:
        setup()
        self._stopped.wait()

    def update(self, state: str, title: str, menu: tuple[MenuItem, ...]) -> None:
        self.state, self.title, self.menu = state, title, menu
        self.updates += 1

    def notify(self, title: str, body: str) -> None:
        raise NotImplementedError("no tray icon")

    def stop(self) -> None:
        self._stopped.set()
