"""The desktop app: a press -> the question -> the answer, and the tray's menu actions.

Owns :class:`DesktopApp` (what a press does, the busy policy, recent answers, the
``copy_answer`` rule, the tray's menu actions, start-at-login wiring). It is built and run
by ``app.desktop_app.run_desktop`` (the wiring). It may use ``labrouter.desktop`` and,
through ``login.py``, ``labrouter.autostart``; desktop libraries are imported only inside
the desktop backends.

Threads (``../shared/DESIGN.md``, "Threads"):

* main thread: the tray (``Tray.run`` blocks until Quit; macOS requires it);
* one worker thread: the daemon's asyncio loop; every piece of state of this class
  (recent answers, the queue, the running task) is touched only there;
* the hotkey's thread: its callback only calls :meth:`DesktopApp.press`;
* tray menu actions run on the tray's thread and, like the hotkey, only submit a
  coroutine with ``asyncio.run_coroutine_threadsafe``;
* blocking work (capturing the selection, writing the clipboard, sending a notification,
  start-at-login status) runs in ``asyncio.to_thread`` from the loop.

A press while a request runs (``[desktop] busy``): the selection is captured at once in
every case, because the user moves on right after pressing. With ``ask`` (default) the
press offers to cancel the running request, and a second press within
``CONFIRM_WINDOW`` does so and asks the new question; with ``cancel`` that happens at
once; with ``queue`` the new question waits (at most ``MAX_QUEUED``). A press while the
first press is still *capturing* is ignored: it is the same press bouncing. Requests are
numbered: only the newest may write the clipboard.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import hashlib
import inspect
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncGenerator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ...ask import AskEvent, AskRequest, AskResult
from ...core.classify import Classification
from ...core.errors import LabrouterError
from ...core.peers import Peer
from ...desktop.hotkey import WAYLAND_HINT, default_hotkey, human_hotkey
from ...desktop.notify import Shown, limits_for, preview
from ...desktop.selection import Capture, SelectionCapture
from ...desktop.tray import (
    RecentAnswer,
    TrayActions,
    TrayView,
    build_menu,
    cluster_state,
    tooltip,
)
from ..services import ServiceState
from ..settings import Context
from .history import RecentStore
from .login import LoginItem
from .opener import open_path
from .parts import DesktopParts
from .question import elapsed_text, instruction_for, plain_failure

log = logging.getLogger(__name__)

MAX_RECENT = 10
MAX_QUEUED = 3
MAX_EVENTS = 64
CONFIRM_WINDOW = 5.0  # seconds in which a second press confirms (ask again, cancel)
ANSWER_TIMEOUT_MS = 30_000  # an answer stays up longer than "Asking..." (10 s)
QUIT_GRACE = 10.0  # seconds a shutdown may take before the watchdog ends the process
PAUSE_REASON = "rented out"


class ControlRegistry(Protocol):
    """The part of app.control.ControlServer the desktop uses: one more command."""

    def register(self, cmd: str, handler: Callable[[dict[str, Any]], Any]) -> None: ...


class DaemonLike(Protocol):
    """The part of app.daemon.Daemon the desktop uses (docs/interfaces.md)."""

    loop: asyncio.AbstractEventLoop | None

    @property
    def control(self) -> ControlRegistry | None: ...

    def snapshot(self) -> list[Peer]: ...

    def pause(self, reason: str, until: float | None) -> Any: ...

    def resume(self) -> Any: ...

    def on_change(self, callback: Callable[[], Any]) -> Any: ...

    def service_states(self) -> Sequence[ServiceState]: ...


class StreamAsker(Protocol):
    """The part of ``ask.Asker`` the desktop uses: classify a selection, stream an answer."""

    def classify(self, req: AskRequest) -> Classification: ...

    def stream(self, req: AskRequest) -> AsyncGenerator[AskEvent, None]: ...


class AnswerWindowsLike(Protocol):
    """The answer window component (``desktop/answer``): ``show`` returns once the window
    is up and raises when none can be shown (then notifications answer)."""

    async def start(self) -> None: ...

    async def show(self, req: Any) -> Any: ...

    async def close(self) -> None: ...


@dataclass
class Running:
    """The question being answered: its number (newer questions have bigger ones), the
    request, when it started and what it is asking."""

    seq: int
    req: AskRequest
    t0: float
    label: str = ""
    task: asyncio.Task[None] | None = None  # set as soon as it is started

    @property
    def active(self) -> bool:
        return self.task is not None and not self.task.done()

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _short(text: str, width: int = 60) -> str:
    one = " ".join(text.split())
    return one if len(one) <= width else one[: width - 1] + "…"


class DesktopApp:
    """See the module docstring for what runs where."""

    def __init__(self, ctx: Context, daemon: DaemonLike, asker: StreamAsker,
                 parts: DesktopParts, *, login: LoginItem | None = None,
                 opener: Callable[[Path | str], None] = open_path,
                 wall: Callable[[], float] = time.time,
                 clock: Callable[[], float] = time.monotonic,
                 stop_daemon: Callable[[], None] | None = None,
                 windows: AnswerWindowsLike | None = None,
                 store: RecentStore | None = None) -> None:
        self.ctx = ctx
        self.daemon = daemon
        self.asker = asker
        self.windows = windows
        self.config_answer = ctx.config.desktop.answer
        self.store = store
        self.clock = clock
        self.parts = parts
        self.tray = parts.tray
        self.hotkey = parts.hotkey
        self.clipboard = parts.clipboard
        self.notifier = parts.notifier
        self.capture = SelectionCapture(parts.clipboard, parts.keyboard,
                                        use_primary=parts.use_primary)
        self.login = login
        self.opener = opener
        self.wall = wall
        self.stop_daemon = stop_daemon
        self.config = ctx.config
        self.hotkey_text = human_hotkey(ctx.config.hotkey.ask or default_hotkey())
        self.limits = limits_for()
        # loop-thread state
        self.recent: collections.deque[RecentAnswer] = collections.deque(maxlen=MAX_RECENT)
        self.pending: collections.deque[AskRequest] = collections.deque()
        self.current: Running | None = None
        self.seq = 0
        self._confirm_until = 0.0  # a press before this confirms (ask again / cancel)
        self._last_primary = ""  # digest of the PRIMARY text last asked about
        self._last_image = ""  # digest of the clipboard image seen at the last press
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self.capturing = False
        self.busy_text = ""
        self.autostart_state: bool | None = None
        self._notify_lock: asyncio.Lock | None = None
        self._quitting = threading.Event()
        self._finished = threading.Event()
        #: the last few things that happened, in order (for the log, tests and the bench);
        #: bounded, and never the text of a selection or an answer
        self.events: collections.deque[str] = collections.deque(maxlen=MAX_EVENTS)
        self.actions = TrayActions(
            ask_selection=self.press, pause=self.menu_pause, resume=self.menu_resume,
            copy_answer=self.menu_copy, toggle_autostart=self.menu_toggle_autostart,
            open_config=self.menu_open_config, open_usage=self.menu_open_usage,
            quit=self.quit, cancel=self.menu_cancel)

    # ---------------------------------------------------------- crossing threads

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self.daemon.loop
        if loop is None:
            raise RuntimeError("the daemon's event loop is not running")
        return loop

    def submit(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any] | None:
        """Hand a coroutine to the loop from any thread (the only way work crosses)."""
        try:
            fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        except RuntimeError:
            coro.close()
            log.warning("the event loop is gone; ignoring")
            return None
        fut.add_done_callback(_log_failure)
        return fut

    def press(self) -> None:
        """The hotkey or "Ask about selection": any thread, returns at once."""
        self.submit(self.handle_press())

    def menu_pause(self, seconds: float | None) -> None:
        self.submit(self.pause(seconds))

    def menu_resume(self) -> None:
        self.submit(self.resume())

    def menu_copy(self, index: int) -> None:
        self.submit(self.copy_recent(index))

    def menu_toggle_autostart(self) -> None:
        self.submit(self.toggle_autostart())

    def menu_open_config(self) -> None:
        path = self.ctx.paths.config_file
        self.opener(path if path.exists() else path.parent)

    def menu_open_usage(self) -> None:
        self.submit(self._open_usage())

    # ---------------------------------------------------------- on the loop

    async def handle_press(self) -> None:
        if self.capturing:
            self.events.append("press ignored: still capturing")
            return
        self.capturing = True
        # the focused application is read just before the capture's key presses, in the
        # same worker thread: a prior for the classifier (an editor leans to code), never
        # the window title
        app = ""

        def focus_then_capture() -> Capture:
            nonlocal app
            app = _focused_app_name()
            return self.capture.capture()

        try:
            cap: Capture = await asyncio.to_thread(focus_then_capture)
        except Exception as exc:  # a clipboard tool that hangs or dies: say so, never mute
            log.warning("capturing the selection failed", exc_info=True)
            self.events.append(f"capture failed: {type(exc).__name__}")
            await self.notify("Could not read the selection",
                              "The clipboard did not answer. Run `labrouter doctor` to "
                              "check the clipboard tools.")
            return
        finally:
            self.capturing = False
        what = (f"captured {cap.method} {len(cap.text)} chars"
                + (" + image" if cap.image else "")
                + ("" if cap.restored else " (clipboard NOT restored)")
                + f" in {cap.duration * 1000:.0f} ms")
        self.events.append(what)
        log.info("hotkey: %s", what)  # never the text itself: selections are private
        image = self._fresh_image(cap.image)
        now = self.clock()
        confirmed = now < self._confirm_until
        self._confirm_until = 0.0
        primary_key = _digest(f"{cap.stamp}\0{cap.text}".encode())
        if cap.method == "primary" and primary_key == self._last_primary and not confirmed:
            # PRIMARY outlives the highlight (xterm keeps owning it after a click elsewhere):
            # the same text as last time is not asked again without the user saying so
            self._confirm_until = now + CONFIRM_WINDOW
            self.events.append("same selection as last time: asked to confirm")
            await self.notify("Ask the same selection again?",
                              f"“{_short(cap.text)}” was asked about already. Press "
                              f"{self.hotkey_text} again within {CONFIRM_WINDOW:.0f} s to "
                              "ask again, or select something else.")
            return
        if not cap.text.strip() and image is None:
            stale = " (the image on the clipboard was asked about already)" if cap.image \
                else ""
            await self.notify("Nothing selected",
                              f"Select some text (or copy an image), then press "
                              f"{self.hotkey_text} again{stale}.")
            return
        if cap.method == "primary":
            self._last_primary = primary_key
        await self.ask_about(cap.text, image, "hotkey", confirmed=confirmed, app=app)

    def _fresh_image(self, image: bytes | None) -> bytes | None:
        """The clipboard's image when it is new since the last press, else None: an old
        screenshot must not ride along with every question."""
        digest = _digest(image) if image is not None else ""
        fresh = image is not None and digest != self._last_image
        self._last_image = digest
        return image if fresh else None

    def request_for(self, text: str, image: bytes | None, source: str, app: str = ""
                    ) -> AskRequest:
        """The request for a selection: the instruction from what the selection is (its
        classification), the answer bounded by the classified route's desktop_max_tokens."""
        from ...ask import AskRequest
        from ...backends.base import ChatOptions

        # app: the focused application at press time, a prior for the classifier
        probe = AskRequest(prompt=text, image=image, source=source, app=app)
        classification = self.asker.classify(probe)
        route = self.config.route(classification.route)
        instruction = instruction_for(text, route.instruction, image is not None)
        limit = route.desktop_max_tokens or None
        return AskRequest(prompt=text, image=image, source=source, bare=False, app=app,
                          instruction=instruction,
                          options=ChatOptions(max_tokens=limit))

    async def ask_about(self, text: str, image: bytes | None = None,
                        source: str = "hotkey", confirmed: bool = False,
                        app: str = "") -> str:
        """Ask about a selection (the busy policy applies); returns what happened:
        "asking", "queued", "refused", "offered" or "cancelled-previous"."""
        req = self.request_for(text, image, source, app)
        outcome = "asking"
        running = self.current is not None and self.current.active
        if running:
            assert self.current is not None
            policy = self.config.desktop.busy
            if policy == "ask" and not confirmed:
                # a second press within the window cancels the running one and asks anew
                self._confirm_until = self.clock() + CONFIRM_WINDOW
                self.events.append("busy: offered to cancel")
                await self.notify(
                    "Still answering your last question",
                    f"{self.current.label} for {elapsed_text(self.clock() - self.current.t0)}"
                    f". Press {self.hotkey_text} again within {CONFIRM_WINDOW:.0f} s to "
                    "cancel it and ask this instead (or Cancel in the tray menu).")
                return "offered"
            if policy == "queue":
                if len(self.pending) >= MAX_QUEUED:
                    await self.notify("Busy", f"{MAX_QUEUED} questions are already waiting; "
                                      "this one was not asked.")
                    return "refused"
                self.pending.append(req)
                self.events.append(f"queued ({len(self.pending)} waiting)")
                await self.notify("Queued", "Will ask once the current answer is in.")
                return "queued"
            self.pending.clear()
            self.current.cancel()
            self.events.append("cancelled the running request")
            outcome = "cancelled-previous"
        self._start(req)
        return outcome

    def _start(self, req: AskRequest) -> None:
        self.seq += 1
        running = Running(self.seq, req, self.clock())
        running.task = asyncio.get_running_loop().create_task(self._work(running))
        self.current = running
        self._ensure_ticker()

    def menu_cancel(self) -> None:
        self.submit(self.cancel_current())

    async def cancel_current(self) -> None:
        if self.current is not None and self.current.active:
            self.pending.clear()
            self.current.cancel()
            self.events.append("cancelled from the menu")

    async def _control_ask_selection(self, req: dict[str, Any]) -> dict[str, Any]:
        """Control command ``ask-selection`` (``labrouter ask --selection`` bound to a
        desktop shortcut, e.g. on Wayland): with ``text``, ask about it; without, capture
        the selection here as the hotkey does. The answer comes as a notification."""
        text = req.get("text")
        if isinstance(text, str):
            if not text.strip():
                await self.notify("Nothing selected", "The selection is empty.")
                return {"outcome": "nothing-selected"}
            return {"outcome": await self.ask_about(text, None, "selection")}
        await self.handle_press()
        return {"outcome": "pressed"}

    async def _work(self, running: Running) -> None:
        try:
            while True:
                await self.show_answer(running)
                if not self.pending:
                    break
                self.seq += 1
                running = Running(self.seq, self.pending.popleft(), self.clock(),
                                  task=running.task)
                self.current = running
        finally:
            self.busy_text = ""
            if self._ticker is not None:
                self._ticker.cancel()
            self.refresh()

    async def show_answer(self, running: Running) -> None:
        """The one place where a request's answer is shown: in the answer window when
        ``[desktop] answer = "window"`` and one can be shown, else in notifications."""
        if self.windows is not None and self.config_answer == "window":
            try:
                session = await self.windows.show(running.req)
                self.events.append("answer window shown")
                log.info("answer window shown")
                del session  # it goes on by itself until the user closes the window
                return
            except Exception as exc:  # WindowUnavailable: notifications instead
                log.info("no answer window (%s); answering in notifications", exc)
        await self.answer_in_notifications(running)

    async def answer_in_notifications(self, running: Running) -> None:
        from ...ask import Done, FellOver, Started

        req = running.req
        asking: Shown | None = None
        result: AskResult | None = None
        try:
            async with contextlib.aclosing(self.asker.stream(req)) as events:
                async for ev in events:
                    if isinstance(ev, Started):
                        c = ev.candidate
                        running.label = f"{c.model} on {c.peer.name} ({ev.route})"
                        self.busy_text = f"Asking {running.label}…"
                        self.events.append(self.busy_text)
                        asking = await self.notify("labrouter", self.busy_text,
                                                   replaces=asking)
                        self.refresh()
                    elif isinstance(ev, FellOver):
                        self.events.append(f"fell over: {ev.attempt.label}")
                    elif isinstance(ev, Done):
                        result = ev.result
        except asyncio.CancelledError:
            self.events.append("cancelled")
            self.busy_text = ""
            await asyncio.shield(self.notify("Cancelled", "The question was cancelled.",
                                             replaces=asking))
            self.refresh()
            raise
        except Exception as exc:
            # any error, not only ours: else the busy text stays and the queue stalls silently
            self.busy_text = ""
            if not isinstance(exc, LabrouterError):
                log.error("asking failed", exc_info=True)
            self.events.append(f"failed: {type(exc).__name__}")
            await self.notify("labrouter could not answer", plain_failure(exc),
                              replaces=asking)
            self.refresh()
            return
        self.busy_text = ""
        if result is not None:
            await self.deliver(req.prompt, result, newest=running.seq == self.seq,
                               replaces=asking)

    async def deliver(self, question: str, result: AskResult, newest: bool = True,
                      replaces: Shown | None = None) -> None:
        """Show an answer: a notification (replacing "Asking..."), Recent answers, and the
        clipboard per ``copy_answer`` only while it is the newest question: an answer that
        arrives after the user asked something newer never touches the clipboard."""
        answer = result.answer
        label = f"{result.model} on {result.node} ({result.route})"
        self.recent.appendleft(RecentAnswer(question, answer, label, self.wall()))
        self._save_recent()
        mode = self.config.desktop.copy_answer
        fits = preview(answer, self.limits)
        copy = newest and (mode == "always" or (mode == "when-shortened" and fits.shortened))
        if copy:
            try:
                await asyncio.to_thread(self.clipboard.write_text, answer)
                self.events.append("answer copied to the clipboard")
            except Exception:  # the answer must still be shown, and not claim a copy
                log.warning("could not copy the answer to the clipboard", exc_info=True)
                copy = False
        cut = result.finish_reason == "length"
        note = "(cut short: the answer reached this route's length limit)" if cut else ""
        if fits.shortened or note:
            suffix = ("(full answer copied to the clipboard)" if copy else
                      "(full answer: tray > Recent answers)")
            suffix = f"{note}\n{suffix}" if note and fits.shortened else (note or suffix)
            body = preview(answer, self.limits, suffix).body if fits.shortened else \
                f"{fits.body}\n{note}"
        else:
            body = fits.body
        self.events.append(f"answered by {label}")

        def on_action(key: str) -> None:  # the notification server's thread
            if key == "copy":
                self.submit(asyncio.to_thread(self.clipboard.write_text, answer))

        await self.notify(label, body, replaces=replaces, actions=(("copy", "Copy"),),
                          on_action=on_action, timeout_ms=ANSWER_TIMEOUT_MS)
        self.refresh()

    async def record_answer(self, question: str, result: AskResult) -> None:
        """An answer the answer window showed: into Recent answers (and kept)."""
        label = f"{result.model} on {result.node} ({result.route})"
        self.recent.appendleft(RecentAnswer(question, result.answer, label, self.wall()))
        self._save_recent()
        self.refresh()

    def _save_recent(self) -> None:
        recent = tuple(self.recent)
        store = self.store

        def save() -> None:
            try:
                if store is not None:
                    store.save(recent)
            except OSError:
                log.warning("could not keep the recent answers", exc_info=True)

        if self.store is not None:
            self._bg(asyncio.to_thread(save))

    def _bg(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _ensure_ticker(self) -> None:
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        """While a question runs, the tray says for how long (once a second)."""
        while self.current is not None and self.current.active:
            self.refresh()
            await asyncio.sleep(1.0)
        self.refresh()

    async def notify(self, title: str, body: str, replaces: Shown | None = None,
                     actions: tuple[tuple[str, str], ...] = (),
                     on_action: Callable[[str], None] | None = None,
                     timeout_ms: int | None = None) -> Shown | None:
        if self._notify_lock is None:
            self._notify_lock = asyncio.Lock()
        async with self._notify_lock:  # FIFO: "Asking…" always before its answer
            try:
                shown = await asyncio.to_thread(self.notifier.show, title, body, replaces,
                                                actions, on_action, timeout_ms)
            except LabrouterError as exc:
                log.error("%s", exc.message)
                return None
            log.debug("notification %r shown with %s", title, shown.backend)
            return shown

    async def pause(self, seconds: float | None) -> None:
        until = self.wall() + seconds if seconds else None
        await _maybe_await(self.daemon.pause(PAUSE_REASON, until))
        self.events.append(f"paused until {until}")
        self.refresh()

    async def resume(self) -> None:
        await _maybe_await(self.daemon.resume())
        self.events.append("resumed")
        self.refresh()

    async def copy_recent(self, index: int) -> None:
        if 0 <= index < len(self.recent):
            await asyncio.to_thread(self.clipboard.write_text, self.recent[index].answer)
            self.events.append(f"copied recent answer {index}")

    async def toggle_autostart(self) -> None:
        if self.login is None or not self.login.available:
            return
        want = not bool(self.autostart_state)
        try:
            lines = await asyncio.to_thread(self.login.set, want)
        except Exception as exc:
            await self.notify("Start at login failed", str(exc))
            return
        self.autostart_state = await asyncio.to_thread(self.login.enabled)
        await self.notify("Start at login", "\n".join(lines) or
                          ("on" if self.autostart_state else "off"))
        self.refresh()

    async def _open_usage(self) -> None:
        from ..usagepage import page_address

        # the daemon's own front door serves the page; a snapshot file when it is off
        self.opener(await asyncio.to_thread(page_address, self.ctx))

    def view(self) -> TrayView:
        busy = ""
        if self.busy_text and self.current is not None and self.current.active:
            busy = f"{self.busy_text} {elapsed_text(self.clock() - self.current.t0)}"
        down = tuple(s.text() for s in self.daemon.service_states() if not s.ok)
        return TrayView(peers=tuple(self.daemon.snapshot()), recent=tuple(self.recent),
                        autostart=self.autostart_state, busy=busy, hotkey=self.hotkey_text,
                        services_down=down)

    def refresh(self) -> None:
        """Rebuild the tray from the daemon's table (on the loop; the tray marshals)."""
        view = self.view()
        try:
            self.tray.update(cluster_state(view.peers), tooltip(view.peers, busy=view.busy),
                             build_menu(view, self.actions))
        except Exception:
            log.exception("tray update failed")

    async def start_on_loop(self) -> None:
        """Runs once on the loop after the tray is up."""
        self._notify_lock = asyncio.Lock()
        if self.store is not None:
            kept = await asyncio.to_thread(self.store.load)
            self.recent.extend(kept[: MAX_RECENT - len(self.recent)])
        if self.windows is not None and hasattr(self.windows, "start"):
            self._bg(self._start_windows())
        await _maybe_await(self.daemon.on_change(self._on_change))
        if self.daemon.control is not None:
            self.daemon.control.register("ask-selection", self._control_ask_selection)
        self.refresh()
        if self.login is not None and self.login.available:
            asyncio.get_running_loop().create_task(self._read_autostart())
        hot = next((c for c in self.parts.choices if c.capability == "hotkey"), None)
        if hot is not None and hot.name == "null" and hot.unavailable:
            why = hot.unavailable[0].reason
            await self.notify("labrouter: no global hotkey", why if WAYLAND_HINT in why else
                              f"{why}. Use the tray's “Ask about selection”.")

    async def _start_windows(self) -> None:
        try:
            await self.windows.start()  # type: ignore[union-attr]  # a warm window
        except Exception:
            log.warning("the answer window could not be prepared", exc_info=True)

    async def _read_autostart(self) -> None:
        # may ask systemctl/launchctl: never hold up the start for it
        assert self.login is not None
        self.autostart_state = await asyncio.to_thread(self.login.enabled)
        self.refresh()

    def _on_change(self, *_args: Any) -> None:
        self.refresh()

    # ---------------------------------------------------------- lifecycle (main thread)

    def run(self) -> int:
        """Main thread: the tray until Quit, SIGTERM or Ctrl+C; then a clean shutdown."""
        def on_signal(signum: int, _frame: Any) -> None:
            # the handler runs on the main thread between two bytecodes of the tray's
            # loop, possibly inside a library lock (python-xlib's): stop from a thread
            log.info("signal %d: quitting", signum)
            threading.Thread(target=self.quit, name="labrouter-quit", daemon=True).start()

        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                signal.signal(sig, on_signal)
            except ValueError:  # not the main thread (tests)
                pass

        def setup() -> None:
            log.debug("tray up; starting the desktop on the loop")
            fut = self.submit(self.start_on_loop())
            if fut is not None:
                fut.result(timeout=30)
            log.debug("starting the hotkey listener")
            self.hotkey.start(self.press)
            log.info("desktop ready: tray %s, hotkey %s (%s)", self.tray.name,
                     self.hotkey.name, self.hotkey_text)
            print(f"labrouter: desktop ready (tray: {self.tray.name}, hotkey: "
                  f"{self.hotkey_text if self.hotkey.name != 'null' else 'none'})",
                  file=sys.stderr, flush=True)

        try:
            self.tray.run(setup)
        finally:
            self.shutdown()
        return 0

    def quit(self) -> None:
        """Any thread: stop the tray (which ends ``run``).

        A watchdog makes sure the process ends: if the shutdown is not over within
        ``QUIT_GRACE`` seconds (a GUI library stuck in its own loop), it writes every
        thread's stack to stderr and exits with code 70.
        """
        if self._quitting.is_set():
            return
        self._quitting.set()
        threading.Thread(target=self._watchdog, name="labrouter-watchdog",
                         daemon=True).start()
        self.tray.stop()

    def _watchdog(self) -> None:
        if self._finished.wait(QUIT_GRACE):
            return
        import faulthandler

        log.error("shutdown did not finish within %.0f s; exiting", QUIT_GRACE)
        try:
            faulthandler.dump_traceback(all_threads=True)
        finally:
            os._exit(70)

    def shutdown(self) -> None:
        log.debug("tray stopped; releasing the hotkey")
        try:
            self.hotkey.stop()
        except Exception:
            log.warning("hotkey stop failed", exc_info=True)
        log.debug("hotkey released; stopping the daemon")
        if self.windows is not None and hasattr(self.windows, "close"):
            fut = self.submit(self.windows.close())
            if fut is not None:
                try:
                    fut.result(5)
                except Exception:
                    log.debug("closing the answer windows failed", exc_info=True)
        if self.current is not None and self.current.active:
            try:
                self.loop.call_soon_threadsafe(self.current.cancel)
            except RuntimeError:
                pass
        if self.stop_daemon is not None:
            self.stop_daemon()
        self._finished.set()


def _log_failure(fut: concurrent.futures.Future[Any]) -> None:
    if fut.cancelled():
        return
    exc = fut.exception()
    if exc is not None and not isinstance(exc, asyncio.CancelledError):
        log.error("desktop task failed", exc_info=exc)


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


def _focused_app_name() -> str:
    """The focused application's class or process name, "" when it cannot be told."""
    from ...desktop.focus import focused_app

    app = focused_app()
    return app.name if app else ""
