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
* pynput's listener thread: the hotkey callback only calls :meth:`DesktopApp.press`;
* tray menu actions run on the tray's thread and, like the hotkey, only submit a
  coroutine with ``asyncio.run_coroutine_threadsafe``;
* blocking work (capturing the selection, writing the clipboard, sending a notification,
  start-at-login status) runs in ``asyncio.to_thread`` from the loop.

A press while a request runs (``[desktop] busy``): the selection is captured at once in
either case, because the user moves on right after pressing. With ``queue`` (default) the
new question waits and is asked when the current answer is in (at most ``MAX_QUEUED``
wait; a press beyond that is refused with a notification); with ``cancel`` the running
request is cancelled, the queue emptied, and the new one asked. A second press while the
first press is still *capturing* (within a few hundred ms) is ignored: it is the same
press bouncing, or a double press.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import inspect
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol

from ...core.errors import LabrouterError
from ...core.peers import Peer
from ...desktop.hotkey import WAYLAND_HINT, default_hotkey, human_hotkey
from ...desktop.notify import limits_for, preview
from ...desktop.selection import Capture, SelectionCapture
from ...desktop.tray import (
    RecentAnswer,
    TrayActions,
    TrayView,
    build_menu,
    cluster_state,
    tooltip,
)
from ..settings import Context
from .login import LoginItem
from .opener import open_path
from .parts import DesktopParts
from .usage_report import usage_report

log = logging.getLogger(__name__)

MAX_RECENT = 10
MAX_QUEUED = 3
MAX_EVENTS = 64
QUIT_GRACE = 10.0  # seconds a shutdown may take before the watchdog ends the process
PAUSE_REASON = "rented out"


class DaemonLike(Protocol):
    """The part of app.daemon.Daemon the desktop uses (docs/interfaces.md)."""

    loop: asyncio.AbstractEventLoop | None

    def snapshot(self) -> list[Peer]: ...

    def pause(self, reason: str, until: float | None) -> Any: ...

    def resume(self) -> Any: ...

    def on_change(self, callback: Callable[[], Any]) -> Any: ...


AskFn = Callable[..., Coroutine[Any, Any, Any]]


class DesktopApp:
    """See the module docstring for what runs where."""

    def __init__(self, ctx: Context, daemon: DaemonLike, ask: AskFn, parts: DesktopParts,
                 *, login: LoginItem | None = None,
                 opener: Callable[[Path], None] = open_path,
                 wall: Callable[[], float] = time.time,
                 stop_daemon: Callable[[], None] | None = None) -> None:
        self.ctx = ctx
        self.daemon = daemon
        self.ask = ask
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
        self.pending: collections.deque[Any] = collections.deque()
        self.current: asyncio.Task[None] | None = None
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
            quit=self.quit)

    # ---------------------------------------------------------- crossing threads

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = getattr(self.daemon, "loop", None)
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
        try:
            cap: Capture = await asyncio.to_thread(self.capture.capture)
        except Exception as exc:  # a clipboard tool that hangs or dies: say so, never mute
            log.warning("capturing the selection failed", exc_info=True)
            self.events.append(f"capture failed: {type(exc).__name__}")
            await self.notify("Could not read the selection",
                              f"{type(exc).__name__}: {exc}\nRun `labrouter doctor` to check "
                              "the clipboard.")
            return
        finally:
            self.capturing = False
        what = (f"captured {cap.method} {len(cap.text)} chars"
                + (" + image" if cap.image else "")
                + ("" if cap.restored else " (clipboard NOT restored)")
                + f" in {cap.duration * 1000:.0f} ms")
        self.events.append(what)
        log.info("hotkey: %s", what)  # never the text itself: selections are private
        if cap.empty:
            await self.notify("Nothing selected",
                              f"Select some text (or copy an image), then press "
                              f"{self.hotkey_text} again.")
            return
        await self.ask_about(cap.text, cap.image, "hotkey")

    async def ask_about(self, text: str, image: bytes | None = None,
                        source: str = "hotkey") -> str:
        """Ask about a selection (the busy policy applies); returns what happened:
        "asking", "queued", "refused" or "cancelled-previous"."""
        from ...ask import AskRequest

        req = AskRequest(prompt=text, image=image, bare=True, source=source)
        outcome = "asking"
        if self.current is not None and not self.current.done():
            if self.config.desktop.busy == "cancel":
                self.pending.clear()
                self.current.cancel()
                self.events.append("cancelled the running request")
                outcome = "cancelled-previous"
                await self.notify("Cancelled", "The previous question was cancelled; asking "
                                  "the new one.")
            else:
                if len(self.pending) >= MAX_QUEUED:
                    await self.notify("Busy", f"{MAX_QUEUED} questions are already waiting; "
                                      "this one was not asked.")
                    return "refused"
                self.pending.append(req)
                self.events.append(f"queued ({len(self.pending)} waiting)")
                await self.notify("Queued", "Will ask once the current answer is in.")
                return "queued"
        self.current = asyncio.get_running_loop().create_task(self._work(req))
        return outcome

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

    async def _work(self, req: Any) -> None:
        while req is not None:
            await self.ask_one(req)
            req = self.pending.popleft() if self.pending else None

    async def ask_one(self, req: Any) -> None:
        asking: list[asyncio.Task[None]] = []
        loop = asyncio.get_running_loop()

        def on_start(cand: Any) -> None:
            self.busy_text = f"Asking {cand.model} on {cand.peer.name} ({cand.route})…"
            self.events.append(self.busy_text)
            asking.append(loop.create_task(self.notify("labrouter", self.busy_text)))
            self.refresh()

        try:
            result = await self.ask(req, on_start=on_start)
        except asyncio.CancelledError:
            self.busy_text = ""
            self.refresh()
            raise
        except Exception as exc:
            # any error, not only ours: else the busy text stays and the queue stalls silently
            self.busy_text = ""
            if isinstance(exc, LabrouterError):
                detail = exc.message
            else:
                log.error("asking failed", exc_info=True)
                detail = f"{type(exc).__name__}: {exc}"
            self.events.append(f"failed: {detail}")
            await asyncio.gather(*asking, return_exceptions=True)
            tried = getattr(exc, "attempts", None)
            if tried:
                detail += "\nTried: " + "; ".join(f"{who}: {why}" for who, why in tried)
            if getattr(exc, "hint", ""):
                detail += f"\n{exc.hint}"  # type: ignore[attr-defined]
            await self.notify("labrouter could not answer", detail)
            self.refresh()
            return
        await asyncio.gather(*asking, return_exceptions=True)
        self.busy_text = ""
        await self.deliver(req.prompt, result)

    async def deliver(self, question: str, result: Any) -> None:
        """Show an answer: preview notification, Recent answers, clipboard per setting."""
        answer: str = result.answer
        label = f"{result.model} on {result.node} ({result.route})"
        self.recent.appendleft(RecentAnswer(question, answer, label, self.wall()))
        mode = self.config.desktop.copy_answer
        fits = preview(answer, self.limits)
        copy = mode == "always" or (mode == "when-shortened" and fits.shortened)
        if copy:
            try:
                await asyncio.to_thread(self.clipboard.write_text, answer)
                self.events.append("answer copied to the clipboard")
            except Exception:  # the answer must still be shown, and not claim a copy
                log.warning("could not copy the answer to the clipboard", exc_info=True)
                copy = False
        if fits.shortened:
            suffix = ("(full answer copied to the clipboard)" if copy else
                      "(full answer: tray > Recent answers)")
            body = preview(answer, self.limits, suffix).body
        else:
            body = fits.body
        self.events.append(f"answered by {label}")
        await self.notify(label, body)
        self.refresh()

    async def notify(self, title: str, body: str) -> None:
        if self._notify_lock is None:
            self._notify_lock = asyncio.Lock()
        async with self._notify_lock:  # FIFO: "Asking…" always before its answer
            try:
                backend = await asyncio.to_thread(self.notifier.send, title, body)
            except LabrouterError as exc:
                log.error("%s", exc.message)
                backend = "none"
            log.debug("notification %r sent with %s", title, backend)

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
        path = await asyncio.to_thread(usage_report, self.ctx)
        self.opener(path)

    def view(self) -> TrayView:
        return TrayView(peers=tuple(self.daemon.snapshot()), recent=tuple(self.recent),
                        autostart=self.autostart_state, busy=self.busy_text,
                        hotkey=self.hotkey_text)

    def refresh(self) -> None:
        """Rebuild the tray from the daemon's table (on the loop; the tray marshals)."""
        view = self.view()
        try:
            self.tray.update(cluster_state(view.peers), tooltip(view.peers),
                             build_menu(view, self.actions))
        except Exception:
            log.exception("tray update failed")

    async def start_on_loop(self) -> None:
        """Runs once on the loop after the tray is up."""
        self._notify_lock = asyncio.Lock()
        await _maybe_await(self.daemon.on_change(self._on_change))
        control = getattr(self.daemon, "control", None)
        if control is not None and hasattr(control, "register"):
            control.register("ask-selection", self._control_ask_selection)
        self.refresh()
        if self.login is not None and self.login.available:
            asyncio.get_running_loop().create_task(self._read_autostart())
        hot = next((c for c in self.parts.choices if c.capability == "hotkey"), None)
        if hot is not None and hot.name == "null" and hot.unavailable:
            why = hot.unavailable[0].reason
            await self.notify("labrouter: no global hotkey", why if WAYLAND_HINT in why else
                              f"{why}. Use the tray's “Ask about selection”.")

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
        if self.current is not None and not self.current.done():
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

