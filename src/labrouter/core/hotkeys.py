"""Hotkey chords as text (``<ctrl>+<alt>+<space>``): the one parser of that syntax.

Owns ``parse_chord``, which accepts exactly what pynput's ``HotKey.parse`` accepts on the
given platform (the daemon's hotkey backend), so that `labrouter config validate` refuses
every chord the daemon would refuse, without importing pynput (which needs a display).
The key names are those of pynput's ``Key`` enum, per platform (pynput 1.7-1.8). Standard
library only, like the rest of core/.
"""

from __future__ import annotations

import sys

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


def parse_chord(text: str, platform: str | None = None) -> tuple[str, ...]:
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
