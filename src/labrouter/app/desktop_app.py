"""The desktop app: wires the tray, the hotkey, the selection and notifications to the
daemon and the Asker.

Owns :class:`DesktopApp` (what a press does, the busy policy, recent answers, the
``copy_answer`` rule, the tray's menu actions, start-at-login wiring) and
:func:`run_desktop`, which ``app.daemon.run(ctx, headless=False)`` calls. This module may
import both ``labrouter.desktop`` and ``labrouter.autostart`` (they never import each
other); desktop libraries are still imported only inside the desktop backends.

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
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..core.errors import LabrouterError
from ..core.peers import Peer
from ..desktop.backends import Choice, display_reason
from ..desktop.hotkey import WAYLAND_HINT, HotkeySource, choose_hotkey, default_hotkey
from ..desktop.notify import NotificationChain, default_chain, limits_for, preview
from ..desktop.selection import (
    Capture,
    Clipboard,
    Keyboard,
    SelectionCapture,
    choose_clipboard,
    choose_keyboard,
)
from ..desktop.tray import (
    RecentAnswer,
    Tray,
    TrayActions,
    TrayView,
    build_menu,
    choose_tray,
    cluster_state,
    tooltip,
)
from .settings import Context

log = logging.getLogger(__name__)

MAX_RECENT = 10
MAX_QUEUED = 3
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


# ------------------------------------------------------------------ start at login


class LoginItem:
    """Start at login through labrouter.autostart, when it is installed; else absent."""

    def __init__(self, ctx: Context, env: Mapping[str, str] | None = None) -> None:
        self.ctx = ctx
        self.env = os.environ if env is None else env
        self.reason = ""
        try:
            import labrouter.autostart as autostart

            self._mod: Any = autostart
            self._backend: Any = autostart.backend_for(env=self.env)
        except (ImportError, AttributeError) as exc:
            self._mod = None
            self._backend = None
            self.reason = f"start at login is not available: {exc}"

    @property
    def available(self) -> bool:
        return self._backend is not None

    def _installation(self) -> Any:
        return self._mod.detect_installation(self.ctx.paths.log_dir, headless=False,
                                             env=self.env)

    def enabled(self) -> bool | None:
        if self._backend is None:
            return None
        try:
            entries = self._backend.status(self._installation())
        except Exception:
            log.warning("start at login: status failed", exc_info=True)
            return None
        enabled = getattr(self._mod, "ENABLED", "enabled")
        return any(getattr(e, "state", "") == enabled for e in entries)

    def set(self, on: bool) -> list[str]:
        if self._backend is None:
            return [self.reason]
        if on:
            return list(self._backend.enable(self._installation()))
        return list(self._backend.disable())


# ------------------------------------------------------------------ opening files


def open_path(path: Path) -> None:
    """Open a file or folder with the desktop's default application; never blocks."""
    if sys.platform == "win32":
        os.startfile(str(path))  # type: ignore[attr-defined]
        return
    opener = "open" if sys.platform == "darwin" else "xdg-open"
    subprocess.Popen([opener, str(path)], stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)


def usage_report(ctx: Context, days: int = 7) -> Path:
    """Write a readable summary of the last ``days`` of usage; returns its path."""
    from ..core.usage import summarise
    from .paths import write_atomic
    from .usagelog import UsageLog

    records, _bad = UsageLog(ctx.paths.data_dir, ctx.config.usage.retention_days).read(days)
    s = summarise(records)
    lines = [f"labrouter usage, last {days} days", "",
             f"requests: {s.requests}  answered: {s.answered}  tokens: {s.tokens}  "
             f"cost: ${s.cost_usd:.4f}  fallovers: {s.fallovers}", ""]
    for title, table in (("by route", s.by_route), ("by model", s.by_model),
                         ("by machine", s.by_node)):
        lines.append(title)
        for key, g in table.items():
            lines.append(f"  {key:<32} {g.requests:>6} requests  {g.share:6.1%}  "
                         f"median {g.median_ms:8.0f} ms")
        lines.append("")
    lines.append(f"(raw logs: {ctx.paths.data_dir}/usage-*.jsonl; `labrouter stats` in a "
                 "terminal)")
    path = ctx.paths.data_dir / "usage-summary.txt"
    write_atomic(path, "\n".join(lines) + "\n")
    return path


# ------------------------------------------------------------------ the app


@dataclass
class DesktopParts:
    """The chosen backends, with the reasons the others gave (kept for doctor and logs)."""

    tray: Tray
    hotkey: HotkeySource
    clipboard: Clipboard
    keyboard: Keyboard
    notifier: NotificationChain
    choices: list[Choice[Any]] = field(default_factory=list)
    #: read PRIMARY first on X11/Wayland; LABROUTER_SELECTION_PRIMARY=0 turns it off (always
    #: copy), for applications that leave a stale PRIMARY behind
    use_primary: bool = True


def choose_parts(ctx: Context, env: Mapping[str, str] | None = None) -> DesktopParts:
    env = os.environ if env is None else env
    combo = ctx.config.hotkey.ask or default_hotkey()
    tray = choose_tray(env)
    hotkey = choose_hotkey(combo, env)
    clipboard = choose_clipboard(env)
    keyboard = choose_keyboard(env, hotkey.backend.modifiers_down)
    icon_notify: Callable[[str, str], None] | None = None
    if sys.platform == "win32" and tray.name == "pystray":
        def icon_notify(title: str, body: str) -> None:
            tray.backend.notify(title, body)
    notifier = NotificationChain(default_chain(env=env, icon_notify=icon_notify), env)
    for c in (tray, hotkey, clipboard, keyboard):
        log.info("desktop %s: %s", c.capability, c.describe())
    return DesktopParts(tray.backend, hotkey.backend, clipboard.backend, keyboard.backend,
                        notifier, [tray, hotkey, clipboard, keyboard],
                        use_primary=env.get("LABROUTER_SELECTION_PRIMARY", "1") != "0")


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
        self.hotkey_text = ctx.config.hotkey.ask or default_hotkey()
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
        #: (title, body, backend) of every notification sent, for tests and the bench
        self.sent: list[tuple[str, str, str]] = []
        self.events: list[str] = []  # what happened, in order (tests, bench, debugging)
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
        from ..ask import AskRequest

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
            self.sent.append((title, body, backend))

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


# ------------------------------------------------------------------ entry points


def desktop_problem(env: Mapping[str, str] | None = None) -> str | None:
    """None when the desktop can run here; else why the daemon runs headless."""
    return display_reason(env)


def make_asker(ctx: Context, daemon: Any) -> tuple[AskFn, Any]:
    """The daemon's Asker when it has one; else one over its live table that reaches
    peers through the relay (``http_services.build_asker``); else a direct one.
    Returns (ask, connector to close at the end or None)."""
    asker = getattr(daemon, "asker", None)
    if asker is not None:
        return asker.ask, None
    try:
        from .http_services import build_asker

        asker, connector = build_asker(daemon)
        return asker.ask, connector
    except (ImportError, AttributeError):
        from ..ask import Asker
        from .usagelog import UsageLog

        asker = Asker(ctx.config, daemon.snapshot,
                      usage_log=UsageLog(ctx.paths.data_dir, ctx.config.usage.retention_days),
                      in_flight=getattr(daemon, "in_flight", None))
        return asker.ask, None


def _start_daemon_thread(daemon: Any, timeout: float = 20.0) -> None:
    start = getattr(daemon, "start_in_thread", None) or daemon.run_in_thread
    start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        loop = getattr(daemon, "loop", None)
        if loop is not None and loop.is_running():
            return
        time.sleep(0.02)
    raise LabrouterError("the daemon's event loop did not start",
                         hint="See the daemon log (`labrouter paths`).")


def run_desktop(ctx: Context, daemon: Any, env: Mapping[str, str] | None = None,
                parts: DesktopParts | None = None) -> int:
    """``labrouter run`` on a desktop: called on the main thread with a daemon that is
    built but not started. Starts the daemon's loop on a worker thread, runs the tray on
    this thread until Quit, then stops the daemon (goodbye sent) and returns the exit code.
    """
    env = os.environ if env is None else env
    parts = parts or choose_parts(ctx, env)
    _start_daemon_thread(daemon)
    ask, connector = make_asker(ctx, daemon)

    def stop_daemon() -> None:
        if connector is not None and daemon.loop is not None:
            try:
                asyncio.run_coroutine_threadsafe(connector.aclose(), daemon.loop).result(5)
            except Exception:
                log.debug("closing the connector failed", exc_info=True)
        stop = getattr(daemon, "stop", None)
        if stop is not None:
            stop()

    app = DesktopApp(ctx, daemon, ask, parts, login=LoginItem(ctx, env),
                     stop_daemon=stop_daemon)
    return app.run()


# ------------------------------------------------------------------ standalone host


class StandaloneDaemon:
    """A stand-in for app.daemon.Daemon with no cluster: this machine and its configured
    servers, probed every few seconds, on an asyncio loop in a worker thread. Used by
    ``python -m labrouter.app.desktop_app`` (desktop only) and the desktop tests/bench."""

    def __init__(self, ctx: Context, interval: float = 5.0) -> None:
        self.ctx = ctx
        self.interval = interval
        self.loop: asyncio.AbstractEventLoop | None = None
        self.in_flight: dict[str, int] = {}
        self._peers: list[Peer] = []
        self._paused: tuple[str, float | None] | None = None
        self._callbacks: list[Callable[[], Any]] = []
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()

    def snapshot(self) -> list[Peer]:
        from dataclasses import replace

        if self._paused is None:
            return list(self._peers)
        reason, until = self._paused
        return [replace(p, paused=True, pause_reason=reason, paused_until=until)
                if p.is_self else p for p in self._peers]

    def pause(self, reason: str, until: float | None) -> None:
        self._paused = (reason, until)
        self._changed()

    def resume(self) -> None:
        self._paused = None
        self._changed()

    def on_change(self, callback: Callable[[], Any]) -> None:
        self._callbacks.append(callback)

    def _changed(self) -> None:
        for cb in list(self._callbacks):
            try:
                cb()
            except Exception:
                log.exception("on_change callback failed")

    async def probe_once(self) -> None:
        from ..core.peers import static_peers
        from .local import probe_servers

        servers = await probe_servers(self.ctx.config.servers)
        peers = static_peers(self.ctx.config.node.name, servers)
        if [p.servers for p in peers] != [p.servers for p in self._peers]:
            self._peers = peers
            self._changed()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        await self.probe_once()
        self._ready.set()
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), self.interval)
            except TimeoutError:
                await self.probe_once()

    def start_in_thread(self) -> None:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()),
                                        name="labrouter-loop", daemon=True)
        self._thread.start()
        self._ready.wait(15)

    def stop(self) -> None:
        if self.loop is not None and self._stop is not None:
            try:
                self.loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:
                pass
        if self._thread is not None:
            self._thread.join(5)


def main(argv: list[str] | None = None) -> int:
    """``python -m labrouter.app.desktop_app [--config PATH] [--standalone]``: what
    ``labrouter run`` does on a desktop (the real daemon with the tray), until
    app.daemon.run calls :func:`run_desktop` itself; ``--standalone`` uses the stand-in
    daemon (this machine's servers only, no cluster, no lock)."""
    import argparse

    from .settings import load_context

    parser = argparse.ArgumentParser(prog="labrouter-desktop")
    parser.add_argument("--config")
    parser.add_argument("--standalone", action="store_true")
    args = parser.parse_args(argv)
    ctx = load_context(args.config)
    problem = desktop_problem()
    if problem:
        print(f"labrouter: {problem}; the desktop cannot start", file=sys.stderr)
        return 1
    daemon: Any = None
    if not args.standalone:
        try:
            from .daemon import Daemon
            from .logsetup import configure

            configure(ctx.paths)
            daemon = Daemon(ctx)
        except ImportError:
            daemon = None
    if daemon is None:
        logging.basicConfig(level=os.environ.get("LABROUTER_LOG_LEVEL", "INFO"),
                            format="%(asctime)s %(name)s %(levelname)s %(message)s")
        daemon = StandaloneDaemon(ctx)
    try:
        rc = run_desktop(ctx, daemon)
    except LabrouterError as exc:
        print(f"labrouter: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  {exc.hint}", file=sys.stderr)
        return exc.exit_code
    exit_when_done(rc)
    return rc


def exit_when_done(rc: int, grace: float = 3.0) -> None:
    """After the desktop stopped: if a library left a non-daemon thread running (a setup
    thread, a stuck `systemctl` in a worker), end the process anyway after ``grace``."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        others = [t for t in threading.enumerate()
                  if t is not threading.current_thread() and not t.daemon and t.is_alive()]
        if not others:
            return
        time.sleep(0.05)
    log.warning("threads still running at exit: %s", ", ".join(t.name for t in others))
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


if __name__ == "__main__":
    raise SystemExit(main())
