"""The tray icon: what it shows (pure) and a pystray backend to show it (or a null one).

Owns:

* the pure view of the cluster for the tray: :func:`cluster_state` (ok / degraded / paused
  / offline), :func:`tooltip`, :func:`machine_lines`, and the menu as data
  (:class:`MenuItem`, :func:`build_menu` from a :class:`TrayView` and :class:`TrayActions`);
  these are tested without a display;
* :class:`Tray` (capability ``tray``) with ``run`` / ``update`` / ``stop`` / ``notify``,
  backed by pystray (:class:`PystrayTray`) or by nothing (:class:`NullTray`: no tray host,
  e.g. GNOME without the AppIndicator extension; the hotkey and notifications still work).

Threading contract: ``run(setup)`` is called on the main thread and blocks until ``stop``
(macOS requires the tray's event loop to own the main thread); ``setup`` runs once the
icon is up, on a pystray thread, and must return quickly (it starts the other threads).
``update`` and ``stop`` may be called from any thread and never block: an update is
queued (newest wins) for the tray's updater thread, which applies it, on macOS marshalled
to the main thread with ``PyObjCTools.AppHelper.callAfter`` (AppKit must not be touched
from a worker: pystray #60, serena #2038); pystray's xorg, gtk and appindicator backends
marshal to their own loop themselves; on Windows the menu handle is rebuilt under a lock.
Menu actions
run on the tray's thread and must only hand work to the event loop. pystray and Pillow are
imported inside the backend only.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..core.peers import NodeState, Peer
from .backends import BackendSpec, Choice, choose, display_reason, is_wayland

log = logging.getLogger(__name__)

APP_TITLE = "labrouter"


# ------------------------------------------------------------------ the view (pure)


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


def tooltip(peers: Sequence[Peer], limit: int = 127) -> str:
    """Short text for the icon's tooltip (Windows keeps at most 127 UTF-16 units)."""
    state = cluster_state(peers)
    up = sum(1 for p in peers if p.routable)
    text = f"{APP_TITLE}: {_STATE_WORDS[state]} ({up}/{len(peers)} machines ready)"
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
    n_models = len({m.name for s in p.servers for m in s.models})
    lines.append(f"Models installed: {n_models}")
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
    busy: str = ""  # "Asking qwen3:4b on mac-mini…" while a request runs
    hotkey: str = ""

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


def build_menu(view: TrayView, actions: TrayActions) -> tuple[MenuItem, ...]:
    items: list[MenuItem] = []
    me = view.me
    items.append(MenuItem(f"labrouter: {_STATE_WORDS[cluster_state(view.peers)]}",
                          enabled=False))
    if view.busy:
        items.append(MenuItem(view.busy, enabled=False))
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
    items.append(MenuItem("Open usage statistics", actions.open_usage))
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


# ------------------------------------------------------------------ backends


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


@dataclass
class NullTray:
    """No icon: ``run`` blocks until ``stop``. Remembers the last update (tests)."""

    name: str = "null"
    state: str = ""
    title: str = ""
    menu: tuple[MenuItem, ...] = ()
    updates: int = 0
    _stopped: threading.Event = field(default_factory=threading.Event)

    def run(self, setup: Callable[[], None]) -> None:
        setup()
        self._stopped.wait()

    def update(self, state: str, title: str, menu: tuple[MenuItem, ...]) -> None:
        self.state, self.title, self.menu = state, title, menu
        self.updates += 1

    def notify(self, title: str, body: str) -> None:
        raise NotImplementedError("no tray icon")

    def stop(self) -> None:
        self._stopped.set()


def render_icon(state: str, size: int = 64, template: bool = False) -> Any:
    """The icon image for a state, from desktop/icons.py when present, else a plain disc."""
    try:
        from .icons import draw_icon

        return draw_icon(state, size, template=template)
    except ImportError:
        from PIL import Image, ImageDraw

        colours = {"ok": (46, 160, 67), "degraded": (219, 150, 20), "paused": (90, 120, 200),
                   "offline": (150, 150, 150)}
        img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        d = ImageDraw.Draw(img)
        d.ellipse((4, 4, size - 4, size - 4), fill=colours.get(state, (150, 150, 150)) + (255,))
        return img


class PystrayTray:
    """pystray's Icon; see the module docstring for the threading contract."""

    name = "pystray"

    def __init__(self, title: str = APP_TITLE) -> None:
        import pystray

        self._pystray = pystray
        self._lock = threading.Lock()
        self._template = sys.platform == "darwin"  # macOS draws only the alpha channel
        self.icon = pystray.Icon(APP_TITLE, render_icon("offline", template=self._template),
                                 title, menu=pystray.Menu())
        self.backend = type(self.icon).__module__.rsplit(".", 1)[-1].lstrip("_")
        if self.backend == "xorg":
            _patch_xorg(type(self.icon))
        self._state = "offline"
        self._stopped = threading.Event()
        # the latest update waits here for the updater thread (newer ones replace it)
        self._pending: tuple[str, str, tuple[MenuItem, ...]] | None = None
        self._cv = threading.Condition()
        self._updater: threading.Thread | None = None
        self._stop_requested = False
        self._xdisplay: Any = None  # the updater thread's own X connection (xorg)

    @property
    def has_menu(self) -> bool:
        return bool(getattr(self.icon, "HAS_MENU", False))

    def run(self, setup: Callable[[], None]) -> None:
        early = self.backend == "xorg"
        if early:
            # pystray's xorg backend hands a mutation from another thread to its loop
            # with an X ClientMessage; done from the setup thread while the loop starts,
            # that hand-over sometimes never completes (the setup hung until stop). So the
            # icon is shown here, on the loop's own thread, before the loop runs.
            self.icon._thread = threading.current_thread()
            self.icon.visible = True

        def _setup(icon: Any) -> None:
            if not early:
                icon.visible = True
            setup()

        self._updater = threading.Thread(target=self._apply_updates, name="labrouter-tray",
                                         daemon=True)
        self._updater.start()
        try:
            self.icon.run(setup=_setup)
        finally:
            self._stopped.set()
            with self._cv:
                self._stop_requested = True
                self._cv.notify_all()

    def _call(self, fn: Callable[[], None]) -> None:
        if sys.platform == "darwin":
            from PyObjCTools import AppHelper

            AppHelper.callAfter(fn)
            return
        with self._lock:
            fn()

    def update(self, state: str, title: str, menu: tuple[MenuItem, ...]) -> None:
        """Never blocks the caller (the event loop): the updater thread applies the
        latest update; a burst of updates collapses into the last one."""
        with self._cv:
            if self._stop_requested:
                return
            self._pending = (state, title, menu)
            self._cv.notify_all()

    def _apply_updates(self) -> None:
        """The updater thread: applies updates one at a time, then the stop, so that a
        stop never races an update inside pystray."""
        while True:
            with self._cv:
                while self._pending is None and not self._stop_requested:
                    self._cv.wait(0.5)
                job, self._pending = self._pending, None
                stopping = self._stop_requested
            if stopping:
                if not self._stopped.is_set():
                    self._do_stop()
                return
            if job is None:
                continue
            try:
                self._apply(*job)
            except Exception:
                log.exception("tray update failed")

    def _apply(self, state: str, title: str, menu: tuple[MenuItem, ...]) -> None:
        pystray_menu = self._to_pystray(menu)
        if self.backend == "xorg":
            self._apply_xorg(state, title, pystray_menu)
            return

        def apply() -> None:
            if state != self._state:
                self.icon.icon = render_icon(state, template=self._template)
                self._state = state
            self.icon.title = title[:127]
            self.icon.menu = pystray_menu
            self.icon.update_menu()

        self._call(apply)

    def notify(self, title: str, body: str) -> None:
        if not getattr(self.icon, "HAS_NOTIFICATION", False):
            raise NotImplementedError(f"pystray's {self.backend} backend has no notifications")
        self.icon.notify(body, title)

    def stop(self) -> None:
        """Any thread, returns at once: the updater thread stops the icon after the
        update it may be applying (pending updates are dropped)."""
        with self._cv:
            self._stop_requested = True
            self._pending = None
            self._cv.notify_all()
        if self._updater is None:  # never ran
            self._do_stop()

    def _do_stop(self) -> None:
        if self.backend == "xorg":
            self._stop_xorg()
            return

        def apply() -> None:
            try:
                self.icon.visible = False
            except Exception:
                pass
            self.icon.stop()

        self._call(apply)

    def _own_display(self) -> Any:
        """The updater thread's own X connection (xorg backend only)."""
        if self._xdisplay is None:
            from Xlib import display as xdisplay

            self._xdisplay = xdisplay.Display()
        return self._xdisplay

    def _apply_xorg(self, state: str, title: str, pystray_menu: Any) -> None:
        """Update pystray's xorg icon without calling into its X connection from this
        thread: python-xlib deadlocked when this thread flushed pystray's connection while
        pystray's loop waited there for a reply (seen under Xvfb: the loop stuck in
        ``get_geometry``). Plain attributes are set here; the X side goes over our own
        connection: the window's name (the tooltip), and an Expose event that makes
        pystray's loop redraw the new image on its own thread. xorg has no menu
        (``HAS_MENU = False``); the menu is still kept, for ``icon.menu`` readers."""
        icon = self.icon
        icon._menu = pystray_menu  # no update_menu(): a no-op on xorg
        icon._title = title[:127]
        d = self._own_display()
        window = d.create_resource_object("window", icon._window.id)
        if state != self._state:
            from PIL import Image

            image = render_icon(state, template=self._template)
            geo = window.get_geometry()
            # scaled as pystray's _assert_icon_data does, then swapped in with one
            # assignment: its loop draws either the old image or the new one
            data = Image.new("RGB", (geo.width, geo.height))
            data.paste(image.resize((geo.width, geo.height), Image.LANCZOS))
            data.tostring = data.tobytes  # type: ignore[attr-defined]
            icon._icon = image
            icon._icon_data = data
            icon._icon_valid = True
            self._state = state
        window.set_wm_name(icon._title)
        window.clear_area(exposures=True)
        d.flush()

    def _stop_xorg(self) -> None:
        """Stop pystray's xorg loop without its cross-thread hand-over (which sometimes
        never completes, see ``run``): destroy the icon's window over a connection of our
        own; the loop sees DestroyNotify and returns, and with it ``run``."""
        try:
            d = self._own_display()
            try:
                d.create_resource_object("window", self.icon._window.id).destroy()
                d.sync()
            finally:
                d.close()
                self._xdisplay = None
        except Exception:
            log.warning("could not remove the tray icon's window; stopping pystray",
                        exc_info=True)
            self.icon.stop()

    def _to_pystray(self, items: Sequence[MenuItem]) -> Any:
        ps = self._pystray

        def convert(i: MenuItem) -> Any:
            if i.separator:
                return ps.Menu.SEPARATOR
            action = _safe(i.action) if i.action else None
            kwargs: dict[str, Any] = {"enabled": i.enabled, "default": i.default}
            if i.checked is not None:
                checked = i.checked
                kwargs["checked"] = lambda _item: checked
            if i.submenu:
                return ps.MenuItem(i.text, ps.Menu(*[convert(s) for s in i.submenu]),
                                   **{k: v for k, v in kwargs.items() if k != "default"})
            return ps.MenuItem(i.text, action, **kwargs)

        return ps.Menu(*[convert(i) for i in items])


def _safe(fn: Callable[[], None]) -> Callable[..., None]:
    def run(*_args: Any) -> None:
        try:
            fn()
        except Exception:
            log.exception("menu action failed")

    return run


_PATCHED: set[type] = set()


def _patch_xorg(cls: type) -> None:
    """Two fixes for pystray's xorg backend (../shared/research/desktop-ci.md §7): dock once
    (two SYSTEM_TRAY_REQUEST_DOCK messages make some trays lose the icon), and ask for
    button presses so that a left click runs the default item."""
    if cls in _PATCHED:
        return
    _PATCHED.add(cls)
    original_dock = cls._dock_window  # type: ignore[attr-defined]
    original_create = cls._create_window  # type: ignore[attr-defined]

    def _dock_window(self: Any) -> None:
        if getattr(self, "_systray_manager", None) is not None:
            return
        original_dock(self)

    def _create_window(self: Any) -> Any:
        import Xlib.X as X

        window = original_create(self)
        try:
            window.change_attributes(event_mask=X.ExposureMask | X.StructureNotifyMask
                                     | X.ButtonPressMask)
        except Exception:
            log.debug("could not add ButtonPressMask", exc_info=True)
        return window

    cls._dock_window = _dock_window  # type: ignore[attr-defined]
    cls._create_window = _create_window  # type: ignore[attr-defined]


def tray_problem(env: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    import importlib.util

    reason = display_reason(env)
    if reason:
        return reason
    if importlib.util.find_spec("pystray") is None:
        return "pystray is not installed"
    if sys.platform.startswith("linux"):
        if is_wayland(env) and importlib.util.find_spec("gi") is None:
            return ("Wayland without PyGObject: pystray has no tray there (install "
                    "python3-gi and gir1.2-ayatanaappindicator3-0.1)")
        if env.get("DISPLAY") and importlib.util.find_spec("gi") is None and \
                not _x11_tray_owner(env):
            return ("no system tray on this X display (no _NET_SYSTEM_TRAY_S0 owner); "
                    "GNOME needs the AppIndicator extension")
    return None


def _x11_tray_owner(env: Mapping[str, str]) -> bool:
    """Whether an X11 system tray (a _NET_SYSTEM_TRAY_S<n> owner) is running."""
    try:
        from Xlib import X
        from Xlib import display as xdisplay

        d = xdisplay.Display(env.get("DISPLAY"))
        try:
            atom = d.intern_atom(f"_NET_SYSTEM_TRAY_S{d.get_default_screen()}")
            return d.get_selection_owner(atom) != X.NONE
        finally:
            d.close()
    except Exception as exc:
        log.debug("cannot ask X for the tray owner: %s", exc)
        return False


def tray_specs(env: Mapping[str, str] | None = None) -> list[BackendSpec[Tray]]:
    return [BackendSpec("pystray", lambda: tray_problem(env), PystrayTray)]


def choose_tray(env: Mapping[str, str] | None = None) -> Choice[Tray]:
    return choose("tray", tray_specs(env), BackendSpec("null", lambda: None, NullTray), env)
