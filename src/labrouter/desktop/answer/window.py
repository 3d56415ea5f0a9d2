"""The answer window: a Tk program run as its own process,
``python -m labrouter.desktop.answer.window``.

Owns the window's look and behaviour. It reads :mod:`.protocol` messages on stdin (a
reader thread hands them to Tk's thread through a queue) and writes the user's choices on
stdout. It knows nothing of models or the daemon: the parent says what to show and does
what the user asked (copy, paste, retry, cancel, follow up).

Why a process of its own: Tk wants the main thread of the process that runs it, and so does
the tray (pystray; on macOS both must be on the main thread); a crash or a hang in the
window cannot take the daemon with it; and the daemon never imports tkinter.

Focus: the window must not take the keyboard from the application the user is working in
(Replace pastes there; typing goes on there). On X11 it uses the ICCCM "globally active"
input model (``wm focusmodel active``: WM_HINTS input=False, WM_TAKE_FOCUS offered), so
the window manager does not focus it when it maps, and it takes the focus itself when
clicked. On Windows it is shown with WS_EX_NOACTIVATE until clicked; on macOS as a
non-activating panel. Esc closes it once it has the focus; closing it cancels the request.

Imports only the standard library (tkinter) and :mod:`.protocol` / :mod:`.render`.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
import tkinter as tk
from dataclasses import dataclass
from tkinter import font as tkfont
from tkinter import ttk
from typing import Any

from . import protocol as p
from .render import MarkdownStream, Span

WIDTH = 600
HEIGHT = 250  # at first; the window grows with the answer up to MAX_HEIGHT
MAX_HEIGHT = 640
POLL_MS = 8  # how often Tk looks at the queue of messages from the parent


@dataclass(frozen=True)
class Theme:
    bg: str = "#ffffff"
    fg: str = "#1f2328"
    muted: str = "#656d76"
    faint: str = "#8c959f"
    line: str = "#d8dee4"
    header: str = "#f6f8fa"
    code_bg: str = "#f3f5f7"
    code_fg: str = "#1f2328"
    accent: str = "#0969da"
    accent_fg: str = "#ffffff"
    chip: str = "#eef1f4"
    chip_hover: str = "#e1e6eb"
    error: str = "#cf222e"
    button: str = "#f6f8fa"
    button_hover: str = "#eaeef2"


LIGHT = Theme()


def _pick(families: set[str], *wanted: str) -> str | None:
    for name in wanted:
        if name in families:
            return name
    return None


class Fonts:
    """Readable fonts on each OS: DejaVu/Noto on Linux, Segoe/Consolas on Windows, the
    system fonts on macOS; Tk's named defaults when none of them is there."""

    def __init__(self, root: tk.Misc) -> None:
        fams = set(tkfont.families(root))
        sans = _pick(fams, "Segoe UI", "SF Pro Text", "Helvetica Neue", "Inter",
                     "Noto Sans", "DejaVu Sans", "Liberation Sans", "Cantarell")
        mono = _pick(fams, "Cascadia Mono", "Consolas", "SF Mono", "Menlo", "JetBrains Mono",
                     "DejaVu Sans Mono", "Noto Sans Mono", "Liberation Mono")
        base = tkfont.nametofont("TkDefaultFont", root).actual()
        fixed = tkfont.nametofont("TkFixedFont", root).actual()
        sans = sans or str(base["family"])
        mono = mono or str(fixed["family"])
        size = 10 if sys.platform.startswith("linux") else 11
        self.body = tkfont.Font(root, family=sans, size=size + 1)
        self.bold = tkfont.Font(root, family=sans, size=size + 1, weight="bold")
        self.heading = tkfont.Font(root, family=sans, size=size + 2, weight="bold")
        self.small = tkfont.Font(root, family=sans, size=size - 1)
        self.status = tkfont.Font(root, family=sans, size=size, weight="bold")
        self.ui = tkfont.Font(root, family=sans, size=size)
        self.mono = tkfont.Font(root, family=mono, size=size)
        self.mono_small = tkfont.Font(root, family=sans, size=size - 2)
        self.pad = tkfont.Font(root, family=sans, size=3)


class Button(tk.Label):
    """A flat button (a label that reacts): tk.Button draws 3D borders on X11."""

    def __init__(self, master: tk.Misc, text: str, command: Any, theme: Theme,
                 font: tkfont.Font, primary: bool = False) -> None:
        self.theme = theme
        self.primary = primary
        self.enabled = True
        self.selected = False
        super().__init__(master, text=text, font=font, padx=11, pady=4, cursor="hand2",
                         highlightthickness=1, bd=0)
        self.command = command
        self.bind("<Button-1>", self._click)
        self.bind("<Enter>", lambda _e: self._paint(hover=True))
        self.bind("<Leave>", lambda _e: self._paint())
        self._paint()

    def _colours(self, hover: bool) -> tuple[str, str, str]:
        t = self.theme
        if not self.enabled:
            return t.button, t.faint, t.line
        if self.primary or self.selected:
            return t.accent, t.accent_fg, t.accent
        return (t.button_hover if hover else t.button), t.fg, t.line

    def _paint(self, hover: bool = False) -> None:
        bg, fg, border = self._colours(hover)
        self.configure(bg=bg, fg=fg, highlightbackground=border, highlightcolor=border)

    def _click(self, _event: Any) -> None:
        if self.enabled:
            self.command()

    def set(self, enabled: bool | None = None, selected: bool | None = None,
            text: str | None = None) -> None:
        if enabled is not None:
            self.enabled = enabled
        if selected is not None:
            self.selected = selected
        if text is not None:
            self.configure(text=text)
        self._paint()


class AnswerWindow:
    """The window and its state. Every method runs on Tk's thread."""

    def __init__(self, root: tk.Tk, out: Any, theme: Theme = LIGHT) -> None:
        self.root = root
        self.out = out
        self.t = theme
        self.inbox: queue.Queue[p.Message | None] = queue.Queue()
        self.answer = ""
        self.stream = MarkdownStream()
        self.busy = False
        self.started = time.monotonic()
        self.painted = False
        self.focused = False
        self.closing = False
        self.shown_sent = False
        self.action_buttons: dict[str, Button] = {}
        self.geometry = (WIDTH, HEIGHT, 0, 0)
        self.turn_start = "1.0"  # where the current turn's answer begins in the text
        self._fit_pending = False
        self.windowing = str(root.tk.call("tk", "windowingsystem"))
        self._build()

    # ------------------------------------------------------------ building

    def _build(self) -> None:
        root, t = self.root, self.t
        self.f = Fonts(root)
        root.title("labrouter")
        root.configure(bg=t.bg)
        root.minsize(380, 240)
        self._no_activate()
        with contextlib.suppress(tk.TclError):
            root.wm_attributes("-topmost", True)

        head = tk.Frame(root, bg=t.header, padx=14)
        head.pack(side="top", fill="x")
        top = tk.Frame(head, bg=t.header)
        top.pack(side="top", fill="x", pady=(10, 2))
        self.status = tk.Label(top, text="", font=self.f.status, bg=t.header, fg=t.fg,
                               anchor="w")
        self.status.pack(side="left", fill="x", expand=True)
        self.elapsed = tk.Label(top, text="", font=self.f.small, bg=t.header, fg=t.muted)
        self.elapsed.pack(side="right")
        self.question = tk.Label(head, text="", font=self.f.small, bg=t.header, fg=t.muted,
                                 anchor="w", justify="left")
        self.question.pack(side="top", fill="x", pady=(0, 9))
        self.actions_row = tk.Frame(head, bg=t.header)
        tk.Frame(root, bg=t.line, height=1).pack(side="top", fill="x")

        footer = tk.Frame(root, bg=t.bg)
        footer.pack(side="bottom", fill="x", padx=14, pady=(6, 12))
        self.footer = footer
        ask = tk.Frame(root, bg=t.bg)
        ask.pack(side="bottom", fill="x", padx=14, pady=(4, 0))
        box = tk.Frame(ask, bg=t.bg, highlightthickness=1, highlightbackground=t.line,
                       highlightcolor=t.accent)
        box.pack(fill="x")
        self.followup = tk.Entry(box, font=self.f.ui, bd=0, relief="flat", bg=t.bg, fg=t.fg,
                                 insertbackground=t.fg, highlightthickness=0)
        self.followup.pack(fill="x", padx=8, pady=6)
        self.placeholder = "Ask a follow-up…"
        self._placeholder(True)
        self.followup.bind("<FocusIn>", lambda _e: self._placeholder(False))
        self.followup.bind("<FocusOut>", lambda _e: self._placeholder(
            not self.followup.get()))
        self.followup.bind("<Return>", self._send_followup)
        self.followup.bind("<KP_Enter>", self._send_followup)

        self.copy = Button(footer, "Copy", self._copy, t, self.f.ui, primary=True)
        self.replace = Button(footer, "Replace selection", self._replace, t, self.f.ui)
        self.retry = Button(footer, "Retry", self._retry, t, self.f.ui)
        self.stop = Button(footer, "Stop", self._stop, t, self.f.ui)
        for b in (self.copy, self.replace, self.retry):
            b.pack(side="left", padx=(0, 6))
        self.stop.pack(side="left")
        self.hint = tk.Label(footer, text="Esc closes", font=self.f.small, bg=t.bg,
                             fg=t.faint)
        self.hint.pack(side="right")
        self.stronger = ""

        body = tk.Frame(root, bg=t.bg)
        body.pack(side="top", fill="both", expand=True, padx=14, pady=(10, 2))
        self.text = tk.Text(body, wrap="word", font=self.f.body, bg=t.bg, fg=t.fg, bd=0,
                            relief="flat", highlightthickness=0, padx=2, pady=2,
                            spacing1=1, spacing3=3, cursor="xterm", insertwidth=0,
                            selectbackground="#cfe3fc", selectforeground=t.fg,
                            inactiveselectbackground="#cfe3fc", takefocus=0)
        self.bar = self._scrollbar(body)
        # Tk passes the fractions as strings; typeshed says floats
        self.text.configure(yscrollcommand=self._scrolled)  # type: ignore[arg-type]
        self.text.pack(side="left", fill="both", expand=True)
        tag = self.text.tag_configure
        tag("code", font=self.f.mono, background=t.code_bg, foreground=t.code_fg,
            lmargin1=10, lmargin2=10, rmargin=6, spacing1=0, spacing3=0, wrap="char")
        tag("codelang", font=self.f.mono_small, foreground=t.faint, background=t.code_bg,
            lmargin1=10, lmargin2=10, spacing1=4, spacing3=2)
        tag("codepad", font=self.f.pad, background=t.code_bg, spacing1=0, spacing3=0)
        tag("icode", font=self.f.mono, background=t.code_bg)
        tag("b", font=self.f.bold)
        tag("h", font=self.f.heading, spacing1=8, spacing3=4)
        tag("li", lmargin1=6, lmargin2=24)
        tag("turn", font=self.f.bold, foreground=t.muted, spacing1=14, spacing3=6)
        tag("note", font=self.f.small, foreground=t.muted, spacing1=6)
        tag("error", foreground=t.error)
        self.text.configure(state="disabled")
        self.text.mark_set("tail", "end-1c")
        self.text.mark_gravity("tail", "left")

        root.bind_all("<Escape>", lambda _e: self.close("escape"))
        root.bind_all("<Control-c>", self._ctrl_c)
        root.protocol("WM_DELETE_WINDOW", lambda: self.close("closed"))
        # a click anywhere takes the keyboard (see the module docstring); the WM's
        # WM_TAKE_FOCUS on map is ignored for the same reason
        root.bind_all("<ButtonPress>", self._take_focus, add="+")
        if self.windowing == "x11":
            with contextlib.suppress(tk.TclError):
                root.protocol("WM_TAKE_FOCUS", lambda: None)
        root.bind("<Map>", self._mapped)
        self._set_buttons()

    def _scrollbar(self, parent: tk.Misc) -> ttk.Scrollbar:
        """A thin thumb without arrows, shown only when the answer does not fit."""
        style = ttk.Style(self.root)
        with contextlib.suppress(tk.TclError):
            style.theme_use("clam")
        t = self.t
        style.layout("Answer.Vertical.TScrollbar", [(  # type: ignore[list-item]
            "Vertical.Scrollbar.trough", {"sticky": "ns", "children": [
                ("Vertical.Scrollbar.thumb", {"expand": "1", "sticky": "nswe"})]})])
        style.configure("Answer.Vertical.TScrollbar", troughcolor=t.bg, background=t.line,
                        bordercolor=t.bg, lightcolor=t.line, darkcolor=t.line,
                        gripcount=0, arrowsize=8, width=8)
        style.map("Answer.Vertical.TScrollbar", background=[("active", t.faint)])
        return ttk.Scrollbar(parent, orient="vertical", command=self.text.yview,
                             style="Answer.Vertical.TScrollbar")

    def _scrolled(self, first: str, last: str) -> None:
        self.bar.set(first, last)
        needed = float(first) > 0.0 or float(last) < 1.0
        if needed and not self.bar.winfo_ismapped():
            self.bar.pack(side="right", fill="y", padx=(4, 0), before=self.text)
        elif not needed and self.bar.winfo_ismapped():
            self.bar.pack_forget()

    def _no_activate(self) -> None:
        root = self.root
        if self.windowing == "x11":
            root.wm_focusmodel("active")
        elif self.windowing == "aqua":
            with contextlib.suppress(tk.TclError):
                root.tk.call("::tk::unsupported::MacWindowStyle", "style", str(root),
                             "utility", "noActivates")
        elif self.windowing == "win32":
            self._win32_style(add=True)

    def _win32_style(self, add: bool) -> None:
        try:
            import ctypes

            user32 = ctypes.windll.user32  # type: ignore[attr-defined]
            self.root.update_idletasks()
            hwnd = int(self.root.wm_frame(), 16)
            gwl_exstyle, noactivate = -20, 0x08000000
            style = user32.GetWindowLongW(hwnd, gwl_exstyle)
            style = style | noactivate if add else style & ~noactivate
            user32.SetWindowLongW(hwnd, gwl_exstyle, style)
        except Exception:  # noqa: BLE001 - a window that takes focus is still a window
            pass

    def _placeholder(self, show: bool) -> None:
        e = self.followup
        if show and not e.get():
            e.insert(0, self.placeholder)
            e.configure(fg=self.t.faint)
            self._showing_placeholder = True
        elif not show and getattr(self, "_showing_placeholder", False):
            e.delete(0, "end")
            e.configure(fg=self.t.fg)
            self._showing_placeholder = False

    # ------------------------------------------------------------ placing

    def place_near_pointer(self) -> None:
        """Below and right of the pointer; above or left of it where the screen ends."""
        root = self.root
        px, py = root.winfo_pointerxy()
        sw, sh = root.winfo_screenwidth(), root.winfo_screenheight()
        x = px + 16
        y = py + 20
        if x + WIDTH > sw - 8:
            x = max(8, px - WIDTH - 16)
        if y + HEIGHT > sh - 40:
            y = max(8, py - HEIGHT - 20)
        self.geometry = (WIDTH, HEIGHT, x, y)
        root.geometry(f"{WIDTH}x{HEIGHT}+{x}+{y}")

    def _schedule_fit(self) -> None:
        if not self._fit_pending:
            self._fit_pending = True
            self.root.after(40, self._fit)

    def _fit(self) -> None:
        """Grow to show the whole answer (up to MAX_HEIGHT, staying on screen), unless the
        user has resized the window."""
        self._fit_pending = False
        root = self.root
        w, h, x, y = self.geometry
        if not root.winfo_ismapped() or root.winfo_height() not in (h, 1):
            return
        counted = self.text.count("1.0", "end", "ypixels")
        needed = int(counted[0] if isinstance(counted, tuple) else counted or 0)
        chrome = root.winfo_height() - self.text.winfo_height()
        sh = root.winfo_screenheight()
        want = min(max(h, chrome + needed + 12), MAX_HEIGHT, sh - 80)
        if want <= h:
            return
        if y + want > sh - 40:
            y = max(8, sh - 40 - want)
        self.geometry = (w, want, x, y)
        root.geometry(f"{w}x{want}+{x}+{y}")

    # ------------------------------------------------------------ events from Tk

    def _mapped(self, _event: Any) -> None:
        if self.shown_sent:
            return
        self.shown_sent = True
        self.root.update_idletasks()
        wid = 0
        with contextlib.suppress(ValueError, tk.TclError):
            wid = int(self.root.wm_frame(), 16)
        self.send(p.Shown(wid))

    def _take_focus(self, event: Any) -> None:
        if self.focused:
            return
        self.focused = True
        if self.windowing == "win32":
            self._win32_style(add=False)
        # the clicked entry keeps the keyboard; elsewhere the text takes it (Esc, Ctrl+C)
        (self.followup if event.widget is self.followup else self.text).focus_force()

    def _ctrl_c(self, event: Any) -> str | None:
        # a selection inside the answer (or in the follow-up box): Tk copies it; none:
        # copy the whole answer
        if event.widget is self.followup or self.text.tag_ranges("sel"):
            return None
        self._copy()
        return "break"

    def _copy(self) -> None:
        self.send(p.CopyAnswer())
        self._flash(self.copy, "Copied")

    def _flash(self, button: Button, text: str) -> None:
        old = button.cget("text")
        button.set(text=text)
        self.root.after(1200, lambda: button.set(text=old) if button.winfo_exists() else None)

    def _replace(self) -> None:
        # hide first: the application that holds the selection must have the focus back
        # before the parent pastes into it
        self.root.withdraw()
        self.root.update()
        self.send(p.ReplaceSelection())

    def _retry(self) -> None:
        self.send(p.Retry())

    def _stop(self) -> None:
        self.send(p.Cancel())

    def _choose(self, action_id: str) -> None:
        if self.action_buttons.get(action_id) is None:
            return
        for aid, b in self.action_buttons.items():
            b.set(selected=aid == action_id)
        self.send(p.Action(action_id))

    def _send_followup(self, _event: Any) -> str:
        text = self.followup.get().strip()
        if getattr(self, "_showing_placeholder", False) or not text:
            return "break"
        if self.busy:
            self.root.bell()
            return "break"
        self.followup.delete(0, "end")
        self.send(p.FollowUp(text))
        return "break"

    def close(self, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        self.send(p.Closed(reason))
        self.root.destroy()

    # ------------------------------------------------------------ messages from the parent

    def poll(self) -> None:
        try:
            while True:
                msg = self.inbox.get_nowait()
                if msg is None:  # the parent went away
                    self.close("parent gone")
                    return
                self.handle(msg)
                if self.closing:
                    return
        except queue.Empty:
            pass
        self.root.after(POLL_MS, self.poll)

    def handle(self, msg: p.Message) -> None:
        if isinstance(msg, p.Open):
            self.open(msg)
        elif isinstance(msg, p.Status):
            self.busy = msg.busy
            self.status.configure(text=msg.text, fg=self.t.fg)
            if msg.busy:
                self.started = time.monotonic()
            self._set_buttons()
        elif isinstance(msg, p.Reset):
            self._reset_turn(msg.everything)
        elif isinstance(msg, p.Text):
            self._append(msg.text)
        elif isinstance(msg, p.Turn):
            self._turn(msg.question)
        elif isinstance(msg, p.Done):
            self.busy = False
            self.status.configure(text=msg.status, fg=self.t.fg)
            self.stronger = msg.stronger
            self._finish_turn(msg.note, error=False)
        elif isinstance(msg, p.Error):
            self.busy = False
            self.status.configure(text="No answer", fg=self.t.error)
            self.stronger = msg.stronger
            self._finish_turn(msg.text, error=True)
        elif isinstance(msg, p.Query):
            self.send(self.contents())
        elif isinstance(msg, p.Close):
            self.closing = True
            self.root.destroy()

    def open(self, msg: p.Open) -> None:
        self.root.title(msg.title)
        self.status.configure(text=msg.status)
        q = " ".join(msg.question.split())
        self.question.configure(text=f"“{q[:90]}…”" if len(q) > 90 else f"“{q}”" if q else "")
        for b in self.action_buttons.values():
            b.destroy()
        self.action_buttons.clear()
        if msg.actions:
            for a in msg.actions:
                b = Button(self.actions_row, a.label, lambda i=a.id: self._choose(i), self.t,
                           self.f.small)
                b.configure(padx=9, pady=2)
                b.set(selected=a.id == msg.action)
                b.pack(side="left", padx=(0, 5))
                self.action_buttons[a.id] = b
            self.actions_row.pack(side="top", fill="x", pady=(0, 10))
        self.busy = True
        self.started = time.monotonic()
        self._tick()
        self.place_near_pointer()
        self.root.deiconify()

    def _tick(self) -> None:
        if self.closing:
            return
        if self.busy:
            secs = int(time.monotonic() - self.started)
            self.elapsed.configure(text=f"{secs} s" if secs else "")
        self.root.after(500, self._tick)

    def _set_buttons(self) -> None:
        has = bool(self.answer.strip())
        self.copy.set(enabled=has and not self.busy)
        self.replace.set(enabled=has and not self.busy)
        self.retry.set(enabled=bool(self.stronger) and not self.busy,
                       text=f"Retry on {self.stronger}" if self.stronger else "Retry")
        if self.busy:
            self.retry.pack_forget()
            self.stop.pack(side="left")
            self.hint.configure(text="Esc cancels")
        else:
            self.stop.pack_forget()
            if self.stronger:
                self.retry.pack(side="left", padx=(0, 6))
            else:
                self.retry.pack_forget()
            self.hint.configure(text="Esc closes")

    # ------------------------------------------------------------ the text

    def _insert(self, spans: list[Span], at: str) -> None:
        for text, tags in spans:
            if text:
                self.text.insert(at, text, tags)

    def _redraw_tail(self, done: list[Span], tail: list[Span]) -> None:
        t = self.text
        at_end = t.yview()[1] >= 0.999
        t.configure(state="normal")
        t.delete("tail", "end-1c")
        self._insert(done, "end-1c")
        t.mark_set("tail", "end-1c")
        self._insert(tail, "end-1c")
        t.configure(state="disabled")
        if at_end:  # follow the answer unless the user scrolled up to read
            t.see("end")
        self._schedule_fit()

    def _append(self, text: str) -> None:
        if not text:
            return
        self.answer += text
        self._redraw_tail(*self.stream.update(self.answer))
        if not self.painted:
            self.painted = True
            self.root.update_idletasks()
            self.send(p.Painted(len(self.answer)))
        self._set_buttons()

    def _reset_turn(self, everything: bool = False) -> None:
        t = self.text
        t.configure(state="normal")
        if everything:
            self.turn_start = "1.0"
        t.delete(self.turn_start, "end-1c")
        t.mark_set("tail", "end-1c")
        t.configure(state="disabled")
        self.answer = ""
        self.stream = MarkdownStream()
        self.painted = False
        self._set_buttons()

    def _turn(self, question: str) -> None:
        t = self.text
        t.configure(state="normal")
        t.insert("end-1c", ("\n" if t.get("end-2c") != "\n" else "") + question + "\n",
                 ("turn",))
        t.mark_set("turn_start", "end-1c")
        t.mark_gravity("turn_start", "left")
        self.turn_start = "turn_start"
        t.mark_set("tail", "end-1c")
        t.configure(state="disabled")
        t.see("end")
        self.answer = ""
        self.stream = MarkdownStream()
        self.painted = False

    def _finish_turn(self, note: str, error: bool) -> None:
        t = self.text
        if note:
            t.configure(state="normal")
            sep = "" if t.get("end-2c") in ("\n", "") or t.index("end-1c") == "1.0" else "\n"
            t.insert("end-1c", sep + note + "\n", ("note", "error") if error else ("note",))
            t.mark_set("tail", "end-1c")
            t.configure(state="disabled")
            t.see("end")
        self.elapsed.configure(text="")
        self._set_buttons()

    def contents(self) -> p.Contents:
        self.root.update_idletasks()
        controls: dict[str, list[int]] = {}
        named: dict[str, tk.Widget] = {"copy": self.copy, "replace": self.replace,
                                       "retry": self.retry, "stop": self.stop,
                                       "followup": self.followup, "text": self.text}
        named.update({f"action:{k}": b for k, b in self.action_buttons.items()})
        for name, w in named.items():
            if w.winfo_ismapped():
                controls[name] = [w.winfo_rootx() + w.winfo_width() // 2,
                                  w.winfo_rooty() + w.winfo_height() // 2]
        focused = self.root.focus_displayof() is not None
        return p.Contents(self.text.get("1.0", "end-1c"), str(self.status.cget("text")),
                          focused, controls)

    # ------------------------------------------------------------ plumbing

    def send(self, msg: p.FromWindow) -> None:
        try:
            self.out.write(p.encode(msg))
            self.out.flush()
        except (BrokenPipeError, OSError, ValueError):
            if not self.closing:
                self.closing = True
                self.root.destroy()


def _reader(stream: Any, inbox: queue.Queue[p.Message | None]) -> None:
    for line in stream:
        if not line.strip():
            continue
        try:
            inbox.put(p.decode(line))
        except p.ProtocolError as exc:
            print(f"answer window: skipped a bad message: {exc}", file=sys.stderr)
    inbox.put(None)


def main(argv: list[str] | None = None) -> int:
    """Run the window until it is closed; the first message on stdin should be Open."""
    out = sys.stdout.buffer
    try:
        root = tk.Tk(className="labrouter")
    except tk.TclError as exc:
        out.write(p.encode(p.Failed(f"no window can be shown here: {exc}")))
        out.flush()
        return 1
    root.withdraw()
    win = AnswerWindow(root, out)
    threading.Thread(target=_reader, args=(sys.stdin.buffer, win.inbox), daemon=True).start()
    root.after(0, win.poll)
    root.mainloop()
    # the reader thread may sit in a read of stdin: end without waiting for it
    with contextlib.suppress(Exception):
        out.flush()
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
