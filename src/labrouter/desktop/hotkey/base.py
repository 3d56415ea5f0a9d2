"""The global-hotkey interface (capability ``hotkey``). Imports no desktop library."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class HotkeySource(Protocol):
    """Calls ``on_press`` once per press of the chord, from its own thread."""

    name: str
    combo: str

    def start(self, on_press: Callable[[], None]) -> None: ...

    def stop(self) -> None: ...

    def modifiers_down(self) -> bool:
        """Whether a modifier key is held now, as far as this source knows."""
        ...
