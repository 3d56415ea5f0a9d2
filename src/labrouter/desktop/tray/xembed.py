"""The X11 tray of our own: an XEmbed system-tray icon, its tooltip and its menu, with
python-xlib and Pillow only (no PyGObject, no compiler: what a plain ``pip install`` has).

Why not pystray here: without PyGObject pystray falls back to its xorg backend, which has
no menu at all (``HAS_MENU = False``), shows no tooltip and needed its private internals
patched to receive clicks. This backend speaks the freedesktop System Tray protocol
(dock with ``SYSTEM_TRAY_REQUEST_DOCK`` to the ``_NET_SYSTEM_TRAY_S<n>`` owner, re-dock when
a new tray announces itself with ``MANAGER``), draws the icon over the tray's own
background, shows the title as a tooltip while the pointer rests on the icon, and opens a
menu drawn with Pillow (``drawn_menu.py``) on a left or right click; a middle click runs the
default item. The menu follows the pointer and the keyboard (Up, Down, Right, Left, Enter,
Esc) and closes on a click elsewhere.

Each open menu level carries a ``_LABROUTER_MENU`` property (JSON: every item's text,
enabled state and place on the screen) so that accessibility tools and the end-to-end
test can read what is shown.

Threading: ``run`` owns the X connection on the calling (main) thread: every X request is
made there. ``update`` and ``stop`` may be called from any thread: they leave the newest
state for the loop and wake it through a pipe. Menu actions run on the loop's thread and
must only hand work on (the app submits them to its event loop).
"""

from __future__ import annotations

import json
import logging
import os
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import drawn_menu
from .base import render_icon
from .view import APP_TITLE, MenuItem

log = logging.getLogger(__name__)

SYSTEM_TRAY_REQUEST_DOCK = 0
XEMBED_MAPPED = 1
TOOLTIP_DELAY = 0.5  # seconds the pointer rests on the icon before the tooltip shows
DEFAULT_SIZE = 24
_MAX_REQUEST_BYTES = 200_000  # a put_image per this many bytes (X's request size limit)


@dataclass
class _Level:
    """One open menu level: its window, items, layout and hovered item."""

    window: Any
    items: tuple[MenuItem, ...]
    lay: drawn_menu.Layout
    x: int
    y: int
    hover: int | None = None

    def contains(self, rx: int, ry: int) -> bool:
        return self.x <= rx < self.x + self.lay.width and self.y <= ry < self.y + self.lay.height


class XembedTray:
    """See the module docstring."""

    name = "xembed"
    has_menu = True

    def __init__(self, title: str = APP_TITLE, display: str | None = None) -> None:
        from Xlib import display as xdisplay

        self._display_name = display
        self._d: Any = xdisplay.Display(display)  # fails early (choose() falls through)
        self._state = "offline"
        self._title = title
        self._menu: tuple[MenuItem, ...] = ()
        self._pending: tuple[str, str, tuple[MenuItem, ...]] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._levels: list[_Level] = []
        self._tooltip: Any = None
        self._tooltip_at: float | None = None
        self._size = (DEFAULT_SIZE, DEFAULT_SIZE)
        self._icon_cache: dict[tuple[str, int, int], Any] = {}
        self.window: Any = None
        self.docked = False

    # ---------------------------------------------------------- any thread

    def update(self, state: str, title: str, menu: tuple[MenuItem, ...]) -> None:
        with self._lock:
            self._pending = (state, title, menu)
        self._wake()

    def stop(self) -> None:
        self._stop.set()
        self._wake()

    def notify(self, title: str, body: str) -> None:
        raise NotImplementedError("the X11 tray has no balloons; notifications go through "
                                  "the notification server")

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    # ---------------------------------------------------------- the loop (run's thread)

    def run(self, setup: Callable[[], None]) -> None:
        from Xlib import X

        d = self._d
        self._atoms()
        screen = d.screen()
        d.set_error_handler(lambda err, *_a: log.debug("X error (ignored): %s", err))
        self.window = screen.root.create_window(
            0, 0, DEFAULT_SIZE, DEFAULT_SIZE, 0, screen.root_depth, X.InputOutput,
            X.CopyFromParent, background_pixmap=X.ParentRelative,
            event_mask=(X.ExposureMask | X.StructureNotifyMask | X.ButtonPressMask
                        | X.EnterWindowMask | X.LeaveWindowMask))
        self._name(self.window, self._title)
        self.window.set_wm_class("labrouter", "labrouter")
        # GtkSocket-based trays (trayer, xfce4-panel) size the icon from these hints
        from Xlib import Xutil

        self.window.set_wm_normal_hints(flags=Xutil.PSize | Xutil.PMinSize,
                                        width=DEFAULT_SIZE, height=DEFAULT_SIZE,
                                        min_width=DEFAULT_SIZE, min_height=DEFAULT_SIZE)
        self.window.change_property(self._a["_XEMBED_INFO"], self._a["_XEMBED_INFO"], 32,
                                    [0, XEMBED_MAPPED])
        # a tray that starts later (or restarts) announces itself on the root window
        screen.root.change_attributes(event_mask=X.StructureNotifyMask)
        self._dock()
        d.flush()
        threading.Thread(target=self._run_setup, args=(setup,), name="labrouter-tray-setup",
                         daemon=True).start()
        try:
            self._loop()
        finally:
            self._close()

    def _name(self, window: Any, text: str) -> None:
        """The window's name, which trays and tools show as its tooltip: UTF-8 in
        _NET_WM_NAME, and Latin-1 (what WM_NAME holds) with "?" for the rest."""
        window.change_property(self._a["_NET_WM_NAME"], self._a["UTF8_STRING"], 8,
                               text.encode("utf-8"))
        window.set_wm_name(text.encode("latin-1", "replace").decode("latin-1"))

    def _run_setup(self, setup: Callable[[], None]) -> None:
        try:
            setup()
        except Exception:
            log.exception("tray setup failed")

    def _atoms(self) -> None:
        d = self._d
        names = (f"_NET_SYSTEM_TRAY_S{d.get_default_screen()}", "_NET_SYSTEM_TRAY_OPCODE",
                 "_XEMBED_INFO", "MANAGER", "_LABROUTER_MENU", "UTF8_STRING",
                 "_NET_WM_WINDOW_TYPE", "_NET_WM_WINDOW_TYPE_POPUP_MENU",
                 "_NET_WM_WINDOW_TYPE_TOOLTIP", "_NET_WM_NAME")
        self._a = {n: d.intern_atom(n) for n in names}
        self._tray_atom = self._a[names[0]]

    def _dock(self) -> None:
        from Xlib import X
        from Xlib.protocol import event

        owner = self._d.get_selection_owner(self._tray_atom)
        if owner == X.NONE or owner is None:
            log.info("no system tray yet; the icon docks when one starts")
            return
        msg = event.ClientMessage(window=owner, client_type=self._a["_NET_SYSTEM_TRAY_OPCODE"],
                                  data=(32, [X.CurrentTime, SYSTEM_TRAY_REQUEST_DOCK,
                                             self.window.id, 0, 0]))
        owner.send_event(msg, event_mask=X.NoEventMask)
        self._d.flush()
        self.docked = True
        log.debug("asked the system tray (window %#x) to dock the icon", owner.id)

    def _loop(self) -> None:
        d = self._d
        fd = d.fileno()
        while not self._stop.is_set():
            while d.pending_events():
                event = d.next_event()
                try:
                    self._handle(event)
                except Exception:  # one bad event must not take the tray down
                    log.exception("tray: handling an X event failed")
                if self._stop.is_set():
                    return
            try:
                self._apply_pending()
            except Exception:
                log.exception("tray: applying an update failed")
            timeout = 0.5
            if self._tooltip_at is not None:
                timeout = max(0.0, min(timeout, self._tooltip_at - time.monotonic()))
            ready, _, _ = select.select([fd, self._wake_r], [], [], timeout)
            if self._wake_r in ready:
                os.read(self._wake_r, 4096)
            if self._tooltip_at is not None and time.monotonic() >= self._tooltip_at:
                self._tooltip_at = None
                self._show_tooltip()

    def _apply_pending(self) -> None:
        with self._lock:
            job, self._pending = self._pending, None
        if job is None:
            return
        state, title, menu = job
        changed_icon = state != self._state
        self._state, self._title, self._menu = state, title[:127], menu
        self._name(self.window, self._title)
        if changed_icon:
            self._draw_icon()
        if self._tooltip is not None:
            self._show_tooltip()
        if self._levels:
            self._refresh_levels()
        self._d.flush()

    def _handle(self, ev: Any) -> None:
        from Xlib import X

        kind = ev.type
        win = getattr(ev, "window", None)
        wid = getattr(win, "id", None)
        if kind == X.Expose and ev.count == 0:
            if wid == self.window.id:
                self._draw_icon()
            else:
                level = next((lv for lv in self._levels if lv.window.id == wid), None)
                if level is not None:
                    self._draw_level(level)
                elif self._tooltip is not None and wid == self._tooltip[0].id:
                    self._draw_tooltip()
        elif kind == X.ConfigureNotify and wid == self.window.id:
            if (ev.width, ev.height) != self._size:
                self._size = (max(ev.width, 8), max(ev.height, 8))
                self._draw_icon()
        elif kind == X.ClientMessage and ev.client_type == self._a["MANAGER"]:
            if ev.data[1][1] == self._tray_atom:
                log.info("a system tray started; docking")
                self._dock()
        elif kind == X.ReparentNotify and wid == self.window.id:
            if ev.parent.id == self._d.screen().root.id:
                self.docked = False  # the tray went away; wait for the next MANAGER
        elif kind == X.DestroyNotify and wid == self.window.id:
            self._stop.set()
        elif kind == X.EnterNotify and wid == self.window.id:
            if not self._levels:
                self._tooltip_at = time.monotonic() + TOOLTIP_DELAY
        elif kind == X.LeaveNotify and wid == self.window.id:
            self._tooltip_at = None
            self._hide_tooltip()
        elif kind == X.ButtonPress:
            self._on_button(ev)
        elif kind == X.MotionNotify:
            self._on_motion(ev.root_x, ev.root_y)
        elif kind == X.KeyPress:
            self._on_key(ev)

    # ---------------------------------------------------------- the icon

    def _icon_image(self) -> Any:
        w, h = self._size
        key = (self._state, w, h)
        img = self._icon_cache.get(key)
        if img is None:
            side = min(w, h)
            img = render_icon(self._state, max(side, 8))
            if len(self._icon_cache) > 16:
                self._icon_cache.clear()
            self._icon_cache[key] = img
        return img

    def _draw_icon(self) -> None:
        """The icon composited over what the tray shows behind it (our background is the
        parent's): read the cleared window back, blend, put the result."""
        from PIL import Image
        from Xlib import X

        w, h = self._size
        icon = self._icon_image()
        self.window.clear_area(0, 0, w, h)
        try:
            raw = self.window.get_image(0, 0, w, h, X.ZPixmap, 0xFFFFFFFF)
            behind = Image.frombytes("RGB", (w, h), raw.data, "raw", "BGRX")
        except Exception:  # not viewable yet (not docked): a neutral background
            behind = Image.new("RGB", (w, h), (64, 64, 64))
        canvas = behind.convert("RGBA")
        canvas.alpha_composite(icon, ((w - icon.width) // 2, (h - icon.height) // 2))
        self._put(self.window, canvas.convert("RGB"))

    def _put(self, window: Any, img: Any) -> None:
        """Put an RGB image on a window, in pieces small enough for one X request."""
        from Xlib import X

        gc = window.create_gc()
        try:
            data = img.tobytes("raw", "BGRX")
            stride = img.width * 4
            rows = max(1, _MAX_REQUEST_BYTES // stride)
            depth = self._d.screen().root_depth
            for top in range(0, img.height, rows):
                n = min(rows, img.height - top)
                window.put_image(gc, 0, top, img.width, n, X.ZPixmap, depth, 0,
                                 data[top * stride:(top + n) * stride])
        finally:
            gc.free()

    # ---------------------------------------------------------- the tooltip

    def _icon_origin(self) -> tuple[int, int]:
        pos = self._d.screen().root.translate_coords(self.window, 0, 0)
        return int(pos.x), int(pos.y)

    def _popup_window(self, x: int, y: int, w: int, h: int, kind: str, mask: int) -> Any:
        from Xlib import X

        screen = self._d.screen()
        win = screen.root.create_window(x, y, w, h, 0, screen.root_depth, X.InputOutput,
                                        X.CopyFromParent, override_redirect=True,
                                        background_pixel=screen.white_pixel, event_mask=mask)
        win.change_property(self._a["_NET_WM_WINDOW_TYPE"], 4, 32, [self._a[kind]])
        return win

    def _place(self, w: int, h: int, x_hint: int | None = None) -> tuple[int, int]:
        """Below the icon when there is room, else above; kept on the screen."""
        screen = self._d.screen()
        ix, iy = self._icon_origin()
        iw, ih = self._size
        x = ix if x_hint is None else x_hint
        y = iy + ih + 2
        if y + h > screen.height_in_pixels:
            y = max(0, iy - h - 2)
        x = max(0, min(x, screen.width_in_pixels - w))
        return x, y

    def _show_tooltip(self) -> None:
        from PIL import Image, ImageDraw
        from Xlib import X

        text = self._title
        f = drawn_menu.font()
        tw = drawn_menu.text_width(text) + 14
        th = drawn_menu.FONT_SIZE + 12
        img = Image.new("RGB", (tw, th), (255, 255, 225))
        dr = ImageDraw.Draw(img)
        dr.rectangle((0, 0, tw - 1, th - 1), outline=(120, 120, 120))
        dr.text((7, 4), text, font=f, fill=(0, 0, 0))
        if self._tooltip is None:
            x, y = self._place(tw, th)
            win = self._popup_window(x, y, tw, th, "_NET_WM_WINDOW_TYPE_TOOLTIP",
                                     X.ExposureMask)
            self._name(win, text)
            self._tooltip = (win, img)
            win.map()
        else:
            win = self._tooltip[0]
            x, y = self._place(tw, th)
            win.configure(x=x, y=y, width=tw, height=th)
            self._name(win, text)
            self._tooltip = (win, img)
            self._draw_tooltip()
        self._d.flush()

    def _draw_tooltip(self) -> None:
        if self._tooltip is not None:
            self._put(self._tooltip[0], self._tooltip[1])

    def _hide_tooltip(self) -> None:
        if self._tooltip is not None:
            self._tooltip[0].destroy()
            self._tooltip = None
            self._d.flush()

    # ---------------------------------------------------------- the menu

    def _on_button(self, ev: Any) -> None:
        wid = ev.window.id
        self._tooltip_at = None
        self._hide_tooltip()
        if wid == self.window.id and not self._levels:
            if ev.detail == 2:
                default = next((i for i in self._menu if i.default and i.action), None)
                if default is not None:
                    _run_action(default)
                return
            if ev.detail in (1, 3):
                self._open_menu()
            return
        if not self._levels:
            return
        if ev.detail in (4, 5):  # the wheel
            return
        level = self._level_at(ev.root_x, ev.root_y)
        if level is None:
            self._close_menu()  # a click anywhere else (the icon included) closes it
            return
        row = drawn_menu.hit(level.lay, ev.root_x - level.x, ev.root_y - level.y)
        if row is not None:
            self._choose(self._levels.index(level), row)

    def _choose(self, depth: int, row: drawn_menu.Row) -> None:
        if row.item.submenu:
            self._open_submenu(depth, row)
            return
        self._close_menu()
        _run_action(row.item)

    def _level_at(self, rx: int, ry: int) -> _Level | None:
        for level in reversed(self._levels):
            if level.contains(rx, ry):
                return level
        return None

    def _open_menu(self) -> None:
        from Xlib import X

        if not self._menu:
            return
        self._open_level(self._menu, None)
        top = self._levels[0].window
        top.grab_pointer(True, X.ButtonPressMask | X.ButtonReleaseMask | X.PointerMotionMask,
                         X.GrabModeAsync, X.GrabModeAsync, X.NONE, X.NONE, X.CurrentTime)
        top.grab_keyboard(True, X.GrabModeAsync, X.GrabModeAsync, X.CurrentTime)
        self._d.flush()

    def _open_level(self, items: tuple[MenuItem, ...], parent: tuple[int, int] | None) -> None:
        from Xlib import X

        lay = drawn_menu.layout(items)
        if parent is None:
            x, y = self._place(lay.width, lay.height)
        else:
            screen = self._d.screen()
            x, y = parent
            if x + lay.width > screen.width_in_pixels:
                x = max(0, self._levels[-1].x - lay.width + 2)
            y = max(0, min(y, screen.height_in_pixels - lay.height))
        win = self._popup_window(x, y, lay.width, lay.height, "_NET_WM_WINDOW_TYPE_POPUP_MENU",
                                 X.ExposureMask | X.ButtonPressMask | X.PointerMotionMask
                                 | X.KeyPressMask)
        self._name(win, f"{APP_TITLE} menu")
        level = _Level(win, items, lay, x, y)
        self._levels.append(level)
        self._describe(level)
        win.map()
        self._d.flush()

    def _open_submenu(self, depth: int, row: drawn_menu.Row) -> None:
        self._close_levels(depth + 1)
        parent = self._levels[depth]
        parent.hover = row.index
        self._draw_level(parent)
        self._open_level(row.item.submenu, (parent.x + parent.lay.width - 2, parent.y + row.y))

    def _describe(self, level: _Level) -> None:
        """What the level shows, for assistive tools and tests (see the module docstring)."""
        items = [{"text": r.item.text, "enabled": r.item.enabled and not r.item.separator,
                  "submenu": bool(r.item.submenu), "checked": r.item.checked,
                  "x": level.x, "y": level.y + r.y, "w": level.lay.width, "h": r.h}
                 for r in level.lay.rows if not r.item.separator]
        level.window.change_property(self._a["_LABROUTER_MENU"], self._a["UTF8_STRING"], 8,
                                     json.dumps(items).encode("utf-8"))

    def _draw_level(self, level: _Level) -> None:
        self._put(level.window, drawn_menu.render(level.lay, level.hover))

    def _close_levels(self, depth: int) -> None:
        while len(self._levels) > depth:
            self._levels.pop().window.destroy()
        self._d.flush()

    def _close_menu(self) -> None:
        from Xlib import X

        self._close_levels(0)
        self._d.ungrab_pointer(X.CurrentTime)
        self._d.ungrab_keyboard(X.CurrentTime)
        self._d.flush()

    def _refresh_levels(self) -> None:
        """A new menu while one is open (the elapsed time of a request ticks): each open
        level follows its parent's hovered item into the new items; a level whose parent
        item is gone (or has no submenu any more) closes."""
        items = self._menu
        for depth in range(len(self._levels)):
            level = self._levels[depth]
            if depth > 0:
                parent = self._levels[depth - 1]
                h = parent.hover
                if h is None or h >= len(parent.items) or not parent.items[h].submenu:
                    self._close_levels(depth)
                    return
                items = parent.items[h].submenu
            lay = drawn_menu.layout(items)
            if (lay.width, lay.height) != (level.lay.width, level.lay.height):
                level.window.configure(width=lay.width, height=lay.height)
            level.items, level.lay = items, lay
            if level.hover is not None and level.hover >= len(items):
                level.hover = None
            self._describe(level)
            self._draw_level(level)

    def _on_motion(self, rx: int, ry: int) -> None:
        level = self._level_at(rx, ry)
        if level is None:
            return
        depth = self._levels.index(level)
        row = drawn_menu.hit(level.lay, rx - level.x, ry - level.y)
        index = row.index if row is not None else None
        if index == level.hover:
            return
        level.hover = index
        self._draw_level(level)
        if row is not None and row.item.submenu:
            self._open_submenu(depth, row)
        elif depth + 1 < len(self._levels):
            self._close_levels(depth + 1)

    def _on_key(self, ev: Any) -> None:
        from Xlib import XK

        if not self._levels:
            return
        sym = self._d.keycode_to_keysym(ev.detail, 0)
        level = self._levels[-1]
        rows = [r for r in level.lay.rows if r.selectable]
        if sym == XK.XK_Escape:
            self._close_menu()
        elif sym in (XK.XK_Down, XK.XK_Up) and rows:
            order = [r.index for r in rows]
            step = 1 if sym == XK.XK_Down else -1
            if level.hover in order:
                level.hover = order[(order.index(level.hover) + step) % len(order)]
            else:
                level.hover = order[0] if step == 1 else order[-1]
            self._draw_level(level)
        elif sym == XK.XK_Left and len(self._levels) > 1:
            self._close_levels(len(self._levels) - 1)
        elif sym in (XK.XK_Right, XK.XK_Return, XK.XK_KP_Enter) and level.hover is not None:
            row = next(r for r in level.lay.rows if r.index == level.hover)
            if row.item.submenu:
                self._open_submenu(len(self._levels) - 1, row)
                sub = self._levels[-1]
                first = next((r.index for r in sub.lay.rows if r.selectable), None)
                sub.hover = first
                self._draw_level(sub)
            elif sym != XK.XK_Right:
                self._choose(len(self._levels) - 1, row)
        self._d.flush()

    # ---------------------------------------------------------- the end

    def _close(self) -> None:
        try:
            if self._levels:
                self._close_menu()
            self._hide_tooltip()
            if self.window is not None:
                self.window.destroy()
            self._d.flush()
            self._d.close()
        except Exception:
            log.debug("closing the tray's X connection failed", exc_info=True)
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass


def _run_action(item: MenuItem) -> None:
    if item.action is None:
        return
    try:
        item.action()
    except Exception:
        log.exception("menu action %r failed", item.text)
