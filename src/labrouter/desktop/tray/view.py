"""The tray's view of the cluster, as data: pure functions, tested without a display.

Owns :func:`cluster_state` (ok / degraded / paused / offline), :func:`tooltip`,
:func:`machine_lines`, and the menu as data (:class:`MenuItem`, :func:`build_menu` from a
:class:`TrayView` and :class:`TrayActions`). Imports no desktop library.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ...core.peers import NodeState, Peer

APP_TITLE = "labrouter"
MAX_MODEL_NAMES = 6  # in a machine's submenu; a menu line must stay readable


def cluster_state(peers: Sequence[Peer]) -> str:
    """ok: every known machine routable; degraded: some down or suspect; paused: this
    machine is paused; offline: nothing can answer (no peers, or none up with a server)."""
    me = next((p for p in peers if p.is_self), None)
    if me is not None and me.paused:
        return "paused"
    usable = [p for p in peers if p.routable and any(s.up for s in p.servers)]
    if not usable:
        return "offline"
    troubled = [p for p in peers if p.state in (NodeState.SUSPECT, NodeState.DOWN)
                or (not p.paused and p.servers and not any(s.up for s in p.servers))]
    return "degraded" if troubled else "ok"


_STATE_WORDS = {"ok": "all up", "degraded": "some machines down", "paused": "this machine paused",
                "offline": "nothing can answer"}


def tooltip(peers: Sequence[Peer], limit: int = 127, busy: str = "") -> str:
    """Short text for the icon's tooltip (Windows keeps at most 127 UTF-16 units): the
    cluster's state and, while a question runs, what is asked and for how long."""
    state = cluster_state(peers)
    up = sum(1 for p in peers if p.routable)
    text = f"{APP_TITLE}: {_STATE_WORDS[state]} ({up}/{len(peers)} machines ready)"
    if busy:
        text = f"{APP_TITLE}: {busy[:1].lower()}{busy[1:]}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clock_time(ts: float) -> str:
    return time.strftime("%H:%M", time.localtime(ts))


def machine_state(p: Peer) -> str:
    """up / suspect / down / paused / joining / left, and why."""
    if p.paused:
        why = p.pause_reason or "paused"
        until = f" until {_clock_time(p.paused_until)}" if p.paused_until else ""
        return f"paused ({why}{until})"
    if p.state == NodeState.ALIVE:
        down = [s.id for s in p.servers if not s.up]
        if p.servers and len(down) == len(p.servers):
            errs = "; ".join(s.error for s in p.servers if s.error)
            return "up, but no server answers" + (f" ({errs})" if errs else "")
        return "up" + (f" ({', '.join(down)} down)" if down else "")
    if p.state == NodeState.SUSPECT:
        return "suspect (not heard from lately)"
    if p.state == NodeState.DOWN:
        return "down (silent)"
    if p.state == NodeState.LEFT:
        return "down (left the cluster)"
    return p.state.value


def machine_lines(p: Peer) -> list[str]:
    """The lines of one machine's submenu: state, loaded models, requests in flight."""
    lines = [f"State: {machine_state(p)}"]
    loaded = [m for s in p.servers for m in s.loaded]
    lines.append("Loaded: " + (", ".join(loaded) if loaded else "none"))
    names = sorted({m.name for s in p.servers for m in s.models})
    shown = ", ".join(names[:MAX_MODEL_NAMES]) or "none"
    more = len(names) - MAX_MODEL_NAMES
    lines.append(f"Models installed: {shown}" + (f" and {more} more" if more > 0 else ""))
    in_flight = p.in_flight or sum(s.in_flight for s in p.servers)
    lines.append(f"Requests in flight: {in_flight}")
    for s in p.servers:
        lines.append(f"Server {s.id}: {'up' if s.up else 'down'}"
                     + (f" ({s.error})" if s.error and not s.up else ""))
    return lines


@dataclass(frozen=True)
class MenuItem:
    """One menu entry as data; ``submenu`` makes it a submenu, ``text == "-"`` a separator."""

    text: str
    action: Callable[[], None] | None = None
    checked: bool | None = None  # None: not a check item
    enabled: bool = True
    submenu: tuple[MenuItem, ...] = ()
    default: bool = False
    radio: bool = False

    @property
    def separator(self) -> bool:
        return self.text == "-"


SEPARATOR = MenuItem("-")

PAUSE_CHOICES: tuple[tuple[str, float | None], ...] = (
    ("For 15 minutes", 15 * 60.0), ("For 1 hour", 3600.0), ("For 4 hours", 4 * 3600.0),
    ("Until resumed", None))


@dataclass(frozen=True)
class RecentAnswer:
    question: str
    answer: str
    label: str  # "qwen3:4b on mac-mini (quick)"
    at: float  # wall-clock time

    def menu_text(self, width: int = 48) -> str:
        q = " ".join(self.question.split()) or "(image)"
        a = " ".join(self.answer.split())
        text = f"{_clock_time(self.at)}  {q[:20]}{'…' if len(q) > 20 else ''} → {a}"
        return text if len(text) <= width else text[: width - 1] + "…"


@dataclass(frozen=True)
class TrayView:
    """Everything the menu shows, taken on the event loop and handed to the tray."""

    peers: tuple[Peer, ...]
    recent: tuple[RecentAnswer, ...] = ()
    autostart: bool | None = None  # None: start at login is not available here
    busy: str = ""  # "Asking qwen3:4b on mac-mini (quick)… 12 s" while a request runs
    hotkey: str = ""
    # this machine's services that should run and do not: "front door RETRYING (...)"
    services_down: tuple[str, ...] = ()

    @property
    def me(self) -> Peer | None:
        return next((p for p in self.peers if p.is_self), None)


@dataclass(frozen=True)
class TrayActions:
    """What the menu items do. Each is called on the tray's thread and must return at once."""

    ask_selection: Callable[[], None]
    pause: Callable[[float | None], None]  # seconds, None: until resumed
    resume: Callable[[], None]
    copy_answer: Callable[[int], None]  # index into TrayView.recent
    toggle_autostart: Callable[[], None]
    open_config: Callable[[], None]
    open_usage: Callable[[], None]
    quit: Callable[[], None]
    cancel: Callable[[], None] | None = None  # the running question


def build_menu(view: TrayView, actions: TrayActions) -> tuple[MenuItem, ...]:
    items: list[MenuItem] = []
    me = view.me
    items.append(MenuItem(f"labrouter: {_STATE_WORDS[cluster_state(view.peers)]}",
                          enabled=False))
    for text in view.services_down:
        items.append(MenuItem(f"Not running: {text}", enabled=False))
    if view.busy:
        items.append(MenuItem(view.busy, enabled=False))
        if actions.cancel is not None:
            items.append(MenuItem("Cancel this question", actions.cancel))
    items.append(SEPARATOR)
    for p in view.peers:
        name = p.name + (" (this machine)" if p.is_self else "")
        sub = tuple(MenuItem(line, enabled=False) for line in machine_lines(p))
        items.append(MenuItem(f"{name}: {machine_state(p).split(' (')[0]}", submenu=sub))
    if not view.peers:
        items.append(MenuItem("No machines known yet", enabled=False))
    items.append(SEPARATOR)
    if me is not None and me.paused:
        until = f" until {_clock_time(me.paused_until)}" if me.paused_until else ""
        items.append(MenuItem(f"Resume this machine (paused{until})", actions.resume))
    else:
        sub = tuple(MenuItem(text, _bind(actions.pause, secs)) for text, secs in PAUSE_CHOICES)
        items.append(MenuItem("Pause this machine (rented out)", submenu=sub))
    hk = f" ({view.hotkey})" if view.hotkey else ""
    items.append(MenuItem(f"Ask about selection{hk}", actions.ask_selection, default=True))
    if view.recent:
        sub = tuple(MenuItem(r.menu_text(), _bind(actions.copy_answer, i))
                    for i, r in enumerate(view.recent))
        items.append(MenuItem("Recent answers (click to copy)", submenu=sub))
    else:
        items.append(MenuItem("Recent answers: none yet", enabled=False))
    items.append(SEPARATOR)
    items.append(MenuItem("Start at login", actions.toggle_autostart,
                          checked=bool(view.autostart), enabled=view.autostart is not None))
    items.append(MenuItem("Open configuration", actions.open_config))
    items.append(MenuItem("Usage", actions.open_usage))
    items.append(SEPARATOR)
    items.append(MenuItem("Quit labrouter", actions.quit))
    return tuple(items)


def _bind(fn: Callable[[Any], None], arg: Any) -> Callable[[], None]:
    return lambda: fn(arg)


def find_item(items: Sequence[MenuItem], *path: str) -> MenuItem:
    """The item whose text starts with each of ``path`` in turn (tests, screenshots)."""
    current: Sequence[MenuItem] = items
    found: MenuItem | None = None
    for part in path:
        found = next((i for i in current if i.text.startswith(part)), None)
        if found is None:
            raise KeyError(f"no menu item starting with {part!r} in "
                           f"{[i.text for i in current]}")
        current = found.submenu
    assert found is not None
    return found


def menu_texts(items: Sequence[MenuItem], indent: str = "") -> list[str]:
    out: list[str] = []
    for i in items:
        out.append(indent + i.text)
        out += menu_texts(i.submenu, indent + "  ")
    return out
