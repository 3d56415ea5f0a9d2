"""The labrouter icon set, drawn with Pillow: tray states and the app icon.

Owns the one drawing of the icon (a hub with three linked machines), from which the tray
uses images at run time and ``assets/make_icons.py`` writes the PNG, .ico and .icns files.
The state is carried by the SHAPE, not only by colour, because macOS template images are
one colour (only alpha counts):

- ``ok``: hub and three filled machines, all linked;
- ``degraded``: one machine is a small hollow ring with its link cut (some are down);
- ``paused``: the hub is a pause sign (this machine is rented out);
- ``offline``: no links, hollow machines, a slash across (no cluster);
- ``app``: the ``ok`` glyph in white on a rounded square (application icon).

Must not import ``labrouter.autostart`` (nor anything but Pillow and the standard library).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

STATES = ("ok", "degraded", "paused", "offline", "app")

# colour per state when not a template; chosen to read on light and dark panels
COLOURS: dict[str, tuple[int, int, int, int]] = {
    "ok": (46, 160, 67, 255),
    "degraded": (219, 141, 0, 255),
    "paused": (66, 133, 244, 255),
    "offline": (128, 128, 128, 255),
    "app": (255, 255, 255, 255),
}
APP_BACKGROUND = (52, 64, 160, 255)
TEMPLATE = (0, 0, 0, 255)

_SUPERSAMPLE = 4  # draw large, then downscale: Pillow's shapes are not anti-aliased
_HUB = (0.5, 0.52)
_HUB_R = 0.15
_SAT_R = 0.115
_SAT_DIST = 0.33
_SAT_ANGLES = (-90.0, 30.0, 150.0)  # top, bottom right, bottom left
_LINK_W = 0.075
_RING_W = 0.055


def _satellites(cx: float, cy: float, dist: float) -> list[tuple[float, float]]:
    return [(cx + dist * math.cos(math.radians(a)), cy + dist * math.sin(math.radians(a)))
            for a in _SAT_ANGLES]


def draw_icon(state: str, size: int, template: bool = False) -> Image.Image:
    """An RGBA image of ``size`` x ``size`` pixels for ``state`` (see the module docstring).

    ``template`` draws black on transparent, for macOS template images; the app icon is
    never a template (its background is part of it).
    """
    from PIL import Image, ImageDraw

    if state not in STATES:
        raise ValueError(f"unknown icon state {state!r}; expected one of {', '.join(STATES)}")
    if size < 8:
        raise ValueError(f"icon size {size} is too small (at least 8 pixels)")
    big = size * _SUPERSAMPLE
    img = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)

    def px(v: float) -> float:
        return v * big

    scale = 1.0
    ox = oy = 0.0
    if state == "app":
        inset = px(0.04)
        d.rounded_rectangle((inset, inset, big - inset, big - inset), radius=px(0.22),
                            fill=APP_BACKGROUND)
        scale, ox, oy = 0.78, 0.11, 0.10  # the glyph sits inside the square with a margin
    fg = TEMPLATE if (template and state != "app") else COLOURS[state]

    def pt(x: float, y: float) -> tuple[float, float]:
        return (px(ox + x * scale), px(oy + y * scale))

    def disc(x: float, y: float, r: float) -> None:
        cx, cy = pt(x, y)
        rr = px(r * scale)
        d.ellipse((cx - rr, cy - rr, cx + rr, cy + rr), fill=fg)

    def ring(x: float, y: float, r: float, width: float = _RING_W) -> None:
        cx, cy = pt(x, y)
        rr = px(r * scale)
        d.ellipse((cx - rr, cy - rr, cx + rr, cy + rr), outline=fg,
                  width=max(1, round(px(width * scale))))

    def link(a: tuple[float, float], b: tuple[float, float]) -> None:
        d.line((pt(*a), pt(*b)), fill=fg, width=max(1, round(px(_LINK_W * scale))))

    hub = _HUB
    sats = _satellites(*hub, _SAT_DIST)
    glyph = "ok" if state == "app" else state

    if glyph == "offline":
        for s in sats:
            ring(*s, _SAT_R)
        ring(*hub, _HUB_R)
        # the slash, from top left to bottom right, with a transparent gap on both sides so
        # that it reads as a cut even in a one-colour template
        a, b = pt(0.12, 0.12), pt(0.88, 0.88)
        gap = round(px(_LINK_W * 2.2))
        d.line((a, b), fill=(0, 0, 0, 0), width=gap)
        d.line((a, b), fill=fg, width=max(1, round(px(_LINK_W * 1.1))))
    else:
        for i, s in enumerate(sats):
            if not (glyph == "degraded" and i == 1):
                link(hub, s)
        if glyph == "paused":
            # a cleared disc around the hub, so that the links stop short of the pause sign
            cx, cy = pt(*hub)
            rr = px(_HUB_R * 1.3 * scale)
            d.ellipse((cx - rr, cy - rr, cx + rr, cy + rr), fill=(0, 0, 0, 0))
        for i, s in enumerate(sats):
            if glyph == "degraded" and i == 1:
                # the machine that is down: a small thin ring, not linked; a full-size ring
                # would cover nearly as many pixels as the disc at 16-22 px
                ring(*s, _SAT_R * 0.7, width=_RING_W * 0.7)
            else:
                disc(*s, _SAT_R)
        if glyph == "paused":
            # at least 1.5 output pixels each: at 16 px the bars would blur into a block
            bw = max(px(0.075 * scale), 1.5 * _SUPERSAMPLE)
            bar_gap = max(px(0.06 * scale), 1.5 * _SUPERSAMPLE)
            bh = px(0.26 * scale)
            for x0 in (cx - bar_gap / 2 - bw, cx + bar_gap / 2):
                d.rectangle((x0, cy - bh / 2, x0 + bw, cy + bh / 2), fill=fg)
        else:
            disc(*hub, _HUB_R)

    return img.resize((size, size), Image.Resampling.LANCZOS)
