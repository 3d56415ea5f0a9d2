"""A hotkey chord as data: parsed from the configuration's pynput syntax
(``<ctrl>+<alt>+<space>``), written as people write it, and matched against the key events
of each OS (pure functions, tested with fakes; no desktop library imported).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from ...core.hotkeys import parse_chord as core_parse_chord

MODIFIERS = ("ctrl", "alt", "shift", "cmd")

_KEY_WORDS = {"ctrl": "Ctrl", "alt": "Alt", "alt_gr": "AltGr", "shift": "Shift",
              "cmd": "Super", "space": "Space", "enter": "Enter", "tab": "Tab", "esc": "Esc"}
_MAC_SYMBOLS = {"ctrl": "⌃", "alt": "⌥", "shift": "⇧", "cmd": "⌘"}
_MAC_ORDER = "⌃⌥⇧⌘"  # Apple's order for modifier symbols (Human Interface Guidelines)


@dataclass(frozen=True)
class Chord:
    """The modifiers (a subset of ``MODIFIERS``) and the one key that completes it
    (``space``, ``a``, ``f5``...)."""

    modifiers: frozenset[str]
    key: str


def parse_chord(combo: str) -> Chord:
    """``<ctrl>+<alt>+<space>`` -> Chord({ctrl, alt}, "space"). Raises ValueError with a
    readable message on a chord that is not one modifier set plus one key. The parser is
    core.hotkeys' (pynput's syntax), the one `labrouter config validate` uses."""
    parsed = core_parse_chord(combo)
    return Chord(parsed.modifiers, parsed.key)


def human_hotkey(combo: str, platform: str | None = None) -> str:
    """A chord as people write it: ``<ctrl>+<alt>+<space>`` -> ``Ctrl+Alt+Space``; on
    macOS with Apple's symbols in Apple's order, ``<cmd>+<shift>+<space>`` -> ``⇧⌘Space``;
    Windows says ``Win`` for the Super key."""
    platform = platform or sys.platform
    try:
        chord = parse_chord(combo)
    except ValueError:
        return combo
    key = _KEY_WORDS.get(chord.key, chord.key.upper() if len(chord.key) == 1
                         else chord.key.capitalize())
    if platform == "darwin":
        mods = sorted((_MAC_SYMBOLS[m] for m in chord.modifiers), key=_MAC_ORDER.index)
        return "".join(mods) + key
    words = []
    for m in ("cmd", "ctrl", "alt", "shift"):  # Win+Shift+S, Super+Shift+Left, Ctrl+Alt+T
        if m in chord.modifiers:
            word = _KEY_WORDS[m]
            words.append("Win" if word == "Super" and platform == "win32" else word)
    return "+".join([*words, key])


def xdotool_chord(combo: str) -> str:
    """The same chord in xdotool's syntax (tests, bench): <ctrl>+<alt>+<space> ->
    ctrl+alt+space."""
    parts = []
    for part in combo.split("+"):
        p = part.strip().strip("<>")
        parts.append({"cmd": "super"}.get(p, p))
    return "+".join(parts)


# ------------------------------------------------------------------ Windows

#: virtual-key codes (winuser.h) of the modifiers and of the named keys we accept
WIN_VK = {"space": 0x20, "enter": 0x0D, "tab": 0x09, "esc": 0x1B,
          **{f"f{i}": 0x6F + i for i in range(1, 13)}}
WIN_MODIFIER_VKS = {"ctrl": (0x11, 0xA2, 0xA3), "alt": (0x12, 0xA4, 0xA5),
                    "shift": (0x10, 0xA0, 0xA1), "cmd": (0x5B, 0x5C)}


def win32_vk(key: str) -> int | None:
    if key in WIN_VK:
        return WIN_VK[key]
    if len(key) == 1 and key.isalnum():
        return ord(key.upper())
    return None


def win32_swallow(chord: Chord, vk: int, held: frozenset[str]) -> bool:
    """Whether a key event (down or up) of ``vk`` with the modifiers ``held`` completes
    ``chord`` and must not reach the focused application."""
    return vk == win32_vk(chord.key) and held == chord.modifiers


# ------------------------------------------------------------------ macOS

#: CGEventFlags masks (CGEventTypes.h)
MAC_FLAGS = {"shift": 0x00020000, "ctrl": 0x00040000, "alt": 0x00080000, "cmd": 0x00100000}
#: kVK_* virtual key codes (Events.h) of the keys we accept
MAC_KEYCODES = {"space": 49, "enter": 36, "tab": 48, "esc": 53,
                **dict(zip("asdfhgzxcv", (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), strict=True)),
                "b": 11, "q": 12, "w": 13, "e": 14, "r": 15, "y": 16, "t": 17, "o": 31,
                "u": 32, "i": 34, "p": 35, "l": 37, "j": 38, "k": 40, "n": 45, "m": 46}


def darwin_swallow(chord: Chord, keycode: int, flags: int) -> bool:
    """Whether a key event with this keycode and CGEventFlags completes ``chord`` and must
    be swallowed by the event tap."""
    if MAC_KEYCODES.get(chord.key) != keycode:
        return False
    held = frozenset(m for m, mask in MAC_FLAGS.items() if flags & mask)
    return held == chord.modifiers
