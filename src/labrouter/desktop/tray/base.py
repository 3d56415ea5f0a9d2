"""The tray interface (capability ``tray``) and the icon image every backend draws.

Threading contract: ``run(setup)`` is called on the main thread and blocks until ``stop``
(macOS requires the tray's event loop to own the main thread); ``setup`` runs once the
icon is up, on a tray thread, and must return quickly (it starts the other threads).
``update`` and ``stop`` may be called from any thread and never block. Menu actions run on
the tray's thread and must only hand work to the event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from .view import MenuItem


class Tray(Protocol):
    name: str

    def run(self, setup: Callable[[], None]) -> None:
        """Show the icon and block (main thread) until ``stop``; ``setup`` runs once shown."""
        ...

    def update(self, state: str, title: str, menu: tuple[MenuItem, ...]) -> None:
        """Change the icon, tooltip and menu; any thread."""
        ...

    def notify(self, title: str, body: str) -> None:
        """A balloon on the icon, where the backend has them (Windows); else raises."""
        ...

    def stop(self) -> None: ...


def render_icon(state: str, size: int = 64, template: bool = False) -> Any:
    """The icon image for a state, from desktop/icons.py when present, else a plain disc."""
    try:
        from ..icons import draw_icon

        return draw_icon(state, size, template=template)
    except ImportError:
        from PIL import Image, ImageDraw

        colours = {"ok": (46, 160, 67), "degraded": (219, 150, 20), "paused": (90, 120, 200),
                   "offline": (150, 150, 150)}
        img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        d = ImageDraw.Draw(img)
        d.ellipse((4, 4, size - 4, size - 4), fill=colours.get(state, (150, 150, 150)) + (255,))
        return img
