"""A popup menu drawn with Pillow: the layout (pure) and the image of one menu level.

Used by the X11 tray (``xembed.py``), which has no toolkit to draw its menu with. Owns
:func:`layout` (where each item of a level goes), :func:`render` (the level as an RGB
image, with the hovered item highlighted) and :func:`hit` (which item is under a point).
Pillow is imported inside :func:`render` and the font loader only.

Threading: pure functions and an immutable :class:`Layout`; any thread.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .view import MenuItem

log = logging.getLogger(__name__)

ITEM_H = 24
SEPARATOR_H = 9
PAD_X = 26  # room on the left for a check mark
ARROW_W = 22  # room on the right for a submenu arrow
MIN_W = 180
MAX_W = 520
FONT_SIZE = 13

BACKGROUND = (246, 246, 246)
BORDER = (150, 150, 150)
TEXT = (25, 25, 25)
DISABLED = (128, 128, 128)
HIGHLIGHT = (52, 101, 164)
HIGHLIGHT_TEXT = (255, 255, 255)


@dataclass(frozen=True)
class Row:
    """One item's place in its menu level (y from the level's top)."""

    index: int
    y: int
    h: int
    item: MenuItem

    @property
    def selectable(self) -> bool:
        return not self.item.separator and self.item.enabled and (
            self.item.action is not None or bool(self.item.submenu))


@dataclass(frozen=True)
class Layout:
    width: int
    height: int
    rows: tuple[Row, ...]


@functools.lru_cache(maxsize=4)
def font(bold: bool = False, size: int = FONT_SIZE) -> Any:
    """DejaVu Sans when the system has it (it covers the arrows and marks the menu uses),
    else Pillow's own font."""
    from PIL import ImageFont

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    try:
        return ImageFont.truetype(name, size)
    except OSError:
        log.debug("no %s: using Pillow's default font", name)
        try:
            return ImageFont.load_default(size)
        except TypeError:  # Pillow < 10.1
            return ImageFont.load_default()


def text_width(text: str, bold: bool = False) -> int:
    box = font(bold).getbbox(text)
    return int(box[2] - box[0])


def layout(items: Sequence[MenuItem]) -> Layout:
    rows: list[Row] = []
    y = 1
    width = MIN_W
    for i, item in enumerate(items):
        h = SEPARATOR_H if item.separator else ITEM_H
        rows.append(Row(i, y, h, item))
        y += h
        if not item.separator:
            width = max(width, PAD_X + text_width(item.text, item.default) + ARROW_W + 8)
    return Layout(min(width, MAX_W), y + 1, tuple(rows))


def hit(lay: Layout, x: int, y: int) -> Row | None:
    """The selectable row at (x, y) in the level's coordinates, or None."""
    if not (0 <= x < lay.width):
        return None
    for row in lay.rows:
        if row.y <= y < row.y + row.h:
            return row if row.selectable else None
    return None


def render(lay: Layout, hover: int | None = None) -> Any:
    """The level as an RGB image; ``hover`` is the index of the highlighted item."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (lay.width, lay.height), BACKGROUND)
    d = ImageDraw.Draw(img)
    d.rectangle((0, 0, lay.width - 1, lay.height - 1), outline=BORDER)
    for row in lay.rows:
        item = row.item
        if item.separator:
            mid = row.y + row.h // 2
            d.line((6, mid, lay.width - 7, mid), fill=(200, 200, 200))
            continue
        lit = hover == row.index and row.selectable
        if lit:
            d.rectangle((1, row.y, lay.width - 2, row.y + row.h - 1), fill=HIGHLIGHT)
        colour = HIGHLIGHT_TEXT if lit else (TEXT if item.enabled else DISABLED)
        f = font(item.default)
        ty = row.y + (row.h - FONT_SIZE) // 2 - 2
        text = item.text
        room = lay.width - PAD_X - ARROW_W
        while text and text_width(text, item.default) > room:
            text = text[:-2] + "…"
        d.text((PAD_X, ty), text, font=f, fill=colour)
        if item.checked:
            d.text((8, ty), "✓", font=font(), fill=colour)
        if item.submenu:
            d.text((lay.width - ARROW_W + 4, ty), "▸", font=font(), fill=colour)
    return img
