"""No keystrokes at all (headless, Wayland); the fake in tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class NullKeyboard:
    """``on_copy`` lets a test play the focused application."""

    on_copy: Callable[[], None] | None = None
    copies: int = 0
    pastes: int = 0
    name: str = "null"

    def wait_modifiers_released(self, timeout: float = 2.0) -> bool:  # noqa: ARG002
        return True

    def send_paste(self) -> None:
        self.pastes += 1

    def send_copy(self) -> None:
        self.copies += 1
        if self.on_copy is not None:
            self.on_copy()
