"""No global hotkey (headless, Wayland); ``press()`` fires it, for tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class NullHotkey:
    """No global hotkey (headless, Wayland). ``press()`` fires it, for tests."""

    combo: str = ""
    name: str = "null"
    _callback: Callable[[], None] | None = field(default=None, repr=False)

    def start(self, on_press: Callable[[], None]) -> None:
        self._callback = on_press

    def stop(self) -> None:
        self._callback = None

    def press(self) -> None:
        if self._callback is not None:
            self._callback()

    def modifiers_down(self) -> bool:
        return False
