"""The icon drawing: sizes, template images, states told apart by shape, committed assets."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from labrouter.desktop.icons import STATES, draw_icon

ROOT = Path(__file__).resolve().parents[1]
TRAY = [s for s in STATES if s != "app"]


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("size", [16, 22, 32, 128])
def test_size_and_mode(state: str, size: int) -> None:
    img = draw_icon(state, size)
    assert img.mode == "RGBA" and img.size == (size, size)
    alpha = img.getchannel("A")
    assert alpha.getbbox() is not None, "the icon must not be empty"
    # solid somewhere, even where thin strokes are anti-aliased at 16 px
    assert alpha.getextrema()[1] >= 200


@pytest.mark.parametrize("state", TRAY)
def test_template_is_one_colour(state: str) -> None:
    img = draw_icon(state, 36, template=True)
    r, g, b, a = img.split()
    for channel in (r, g, b):
        assert channel.getextrema() == (0, 0), "a template image is black plus alpha"
    assert a.getbbox() is not None


def _shape(state: str, size: int) -> Image.Image:
    return draw_icon(state, size, template=True).getchannel("A").point(
        lambda v: 255 if v >= 128 else 0)


@pytest.mark.parametrize("size", [16, 18, 22, 36])
@pytest.mark.parametrize(("a", "b"), list(itertools.combinations(TRAY, 2)))
def test_states_differ_by_shape_alone(a: str, b: str, size: int) -> None:
    # compared as one-colour masks: what a macOS template shows
    diff = ImageChops.difference(_shape(a, size), _shape(b, size))
    changed = sum(diff.histogram()[1:])
    assert changed >= max(6, size * size // 40), f"{a} and {b} look alike at {size}px"


def test_colours_also_differ() -> None:
    colours = {draw_icon(s, 32).resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
               for s in STATES}
    assert len(colours) == len(STATES)


@pytest.mark.parametrize(("state", "size"), [("nope", 16), ("ok", 4)])
def test_bad_arguments(state: str, size: int) -> None:
    with pytest.raises(ValueError):
        draw_icon(state, size)


def test_committed_assets_are_current() -> None:
    cp = subprocess.run([sys.executable, str(ROOT / "assets" / "make_icons.py"), "--check"],
                        capture_output=True, text=True, check=False, timeout=120)
    assert cp.returncode == 0, cp.stderr


def test_ico_and_icns_hold_every_size() -> None:
    ico = Image.open(ROOT / "assets" / "labrouter.ico")
    assert {(16, 16), (32, 32), (48, 48), (256, 256)} <= set(ico.info["sizes"])
    icns = Image.open(ROOT / "assets" / "labrouter.icns")
    assert {(16, 16, 2), (512, 512, 2)} <= set(icns.info["sizes"])
