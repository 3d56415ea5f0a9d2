"""The simulated-keystroke interface (capability ``keyboard``). Imports no desktop library."""

from __future__ import annotations

from typing import Protocol


class Keyboard(Protocol):
    """Simulated keystrokes."""

    name: str

    def wait_modifiers_released(self, timeout: float = 2.0) -> bool:
        """Block until no modifier is held (or ``timeout``); True when they were released."""
        ...

    def send_copy(self) -> None: ...

    def send_paste(self) -> None:
        """Ctrl+V (Cmd+V on macOS): the answer window's "Replace selection"."""
        ...
