"""Hotkey chords as text (``<ctrl>+<alt>+<space>``): the one parser of that syntax.

Owns ``parse_keys`` (exactly what pynput's ``HotKey.parse`` accepts on the given platform:
its grammar and the key names of its ``Key`` enum, pynput 1.7-1.8), ``parse_chord`` (that,
plus the rule of every hotkey backend: modifiers and one key) and the X11 keysym of each
key name. The hotkey backends (desktop/hotkey/) and `labrouter config validate` both parse
with it, so the validation refuses every chord the daemon would refuse, without importing
a desktop package. Standard library only, like the rest of core/.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

_COMMON = frozenset({
    "alt", "alt_gr", "alt_l", "alt_r", "backspace", "caps_lock", "cmd", "cmd_l", "cmd_r",
    "ctrl", "ctrl_l", "ctrl_r", "delete", "down", "end", "enter", "esc", "home", "left",
    "media_next", "media_play_pause", "media_previous", "media_volume_down",
    "media_volume_mute", "media_volume_up", "page_down", "page_up", "right", "shift",
    "shift_l", "shift_r", "space", "tab", "up", *(f"f{i}" for i in range(1, 21)),
})
_PC_ONLY = frozenset({"insert", "menu", "num_lock", "pause", "print_screen", "scroll_lock"})
KEY_NAMES: dict[str, frozenset[str]] = {
    "darwin": _COMMON | {"media_eject"},
    "win32": _COMMON | _PC_ONLY | {"f21", "f22", "f23", "f24", "media_stop"},
    "linux": _COMMON | _PC_ONLY,
}


def key_names(platform: str | None = None) -> frozenset[str]:
    """The ``<name>`` keys pynput knows on ``platform`` (a ``sys.platform`` value)."""
    platform = platform or sys.platform
    if platform.startswith("linux") or platform not in KEY_NAMES:
        return KEY_NAMES["linux"]  # pynput's xorg backend serves every other POSIX
    return KEY_NAMES[platform]


MODIFIERS = ("ctrl", "alt", "shift", "cmd")


@dataclass(frozen=True)
class KeyChord:
    """The modifiers (a subset of ``MODIFIERS``) and the one key that completes the chord
    (``space``, ``a``, ``f5``, ``vk:65``)."""

    modifiers: frozenset[str]
    key: str


def parse_chord(text: str, platform: str | None = None) -> KeyChord:
    """A hotkey: pynput's syntax (``parse_keys``) of modifiers and exactly one other key.

    Raises ValueError with a message for a person."""
    mods: set[str] = set()
    keys: list[str] = []
    for name in parse_keys(text, platform):
        base = name.removesuffix("_l").removesuffix("_r")
        if base in MODIFIERS:
            mods.add(base)
        else:
            keys.append(name)
    if len(keys) != 1:
        raise ValueError(f"the hotkey {text!r} must be modifiers and one key, like "
                         "<ctrl>+<alt>+<space>")
    return KeyChord(frozenset(mods), keys[0])


def parse_keys(text: str, platform: str | None = None) -> tuple[str, ...]:
    """The keys of a chord, normalised (``ctrl``, ``a``, ``vk:65``).

    Raises ValueError with a message for a person: what is wrong and what is allowed.
    The rules are pynput's: parts separated by ``+``; a part is one character (any case),
    ``<name>`` with a key name, or ``<number>`` (a virtual key code); no part twice.
    """
    if not text:
        raise ValueError("empty chord; write it like <ctrl>+<alt>+<space>")
    names = key_names(platform)
    parts: list[str] = []
    start = 0
    # as pynput splits: a "+" right at the start of a part is the plus key itself
    for i, c in enumerate(text):
        if c == "+" and i != start:
            parts.append(text[start:i])
            start = i + 1
    if start == len(text):
        raise ValueError(f"{text!r} ends with '+': a key is missing after it")
    parts.append(text[start:])
    keys: list[str] = []
    for part in parts:
        if len(part) == 1:
            keys.append(part.lower())
        elif len(part) > 2 and part[0] == "<" and part[-1] == ">":
            inner = part[1:-1].lower()
            if inner in names:
                keys.append(inner)
            elif inner.isdigit():
                keys.append(f"vk:{int(inner)}")
            else:
                raise ValueError(
                    f"unknown key {part}; use a single character or one of "
                    + ", ".join(f"<{n}>" for n in sorted(names, key=_order)))
        else:
            raise ValueError(
                f"{part!r} is not a key: write one character (a) or a key name in angle "
                "brackets (<ctrl>), joined by '+'")
    if len(set(keys)) != len(keys):
        raise ValueError(f"{text!r} names a key twice")
    return tuple(keys)


def _order(name: str) -> tuple[int, int, str]:
    # modifiers first, then named keys, then f1..f24 in numeric order
    if name[0] == "f" and name[1:].isdigit():
        return (2, int(name[1:]), name)
    return (0 if name.split("_")[0] in ("ctrl", "alt", "shift", "cmd") else 1, 0, name)


# X11 keysyms (X11/keysymdef.h, XF86keysym.h) of pynput's key names, for the X11 backend
X11_KEYSYMS: dict[str, int] = {
    "alt": 0xFFE9, "alt_l": 0xFFE9, "alt_r": 0xFFEA, "alt_gr": 0xFE03, "backspace": 0xFF08,
    "caps_lock": 0xFFE5, "cmd": 0xFFEB, "cmd_l": 0xFFEB, "cmd_r": 0xFFEC, "ctrl": 0xFFE3,
    "ctrl_l": 0xFFE3, "ctrl_r": 0xFFE4, "delete": 0xFFFF, "down": 0xFF54, "end": 0xFF57,
    "enter": 0xFF0D, "esc": 0xFF1B, "home": 0xFF50, "left": 0xFF51, "page_down": 0xFF56,
    "page_up": 0xFF55, "right": 0xFF53, "shift": 0xFFE1, "shift_l": 0xFFE1,
    "shift_r": 0xFFE2, "space": 0x20, "tab": 0xFF09, "up": 0xFF52,
    "media_play_pause": 0x1008FF14, "media_volume_mute": 0x1008FF12,
    "media_volume_down": 0x1008FF11, "media_volume_up": 0x1008FF13,
    "media_previous": 0x1008FF16, "media_next": 0x1008FF17, "insert": 0xFF63,
    "menu": 0xFF67, "num_lock": 0xFF7F, "pause": 0xFF13, "print_screen": 0xFF61,
    "scroll_lock": 0xFF14, **{f"f{i}": 0xFFBE + i - 1 for i in range(1, 25)},
}


def x11_keysym(key: str) -> int:
    """The X11 keysym of a key as ``parse_chord`` names it (0 when there is none)."""
    if key in X11_KEYSYMS:
        return X11_KEYSYMS[key]
    if key.startswith("vk:"):
        return int(key[3:])  # pynput's xorg backend: a "virtual key" is a keysym there
    if len(key) == 1:
        # Latin-1 keysyms are the code points; the rest of Unicode is 0x01000000 + it
        return ord(key) if ord(key) < 0x100 else 0x01000000 + ord(key)
    return 0
