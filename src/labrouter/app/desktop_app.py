"""Wiring the desktop to the daemon: ``run_desktop`` (what ``labrouter run`` does on a
desktop) and ``desktop_problem`` (why it cannot run here).

The app itself lives in ``app/desktop/`` (press -> ask -> answer, the backends, start at
login, recent answers); the answer window in ``desktop/answer/``. This module owns only
what is built with what, and the order of start and stop: the daemon's loop on a worker
thread, the tray on the main thread, the daemon stopped after the tray.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Mapping

from ..ask import Asker
from ..core.errors import LabrouterError
from ..desktop.backends import display_reason
from .daemon import Daemon
from .desktop.app import DesktopApp
from .desktop.history import RecentStore
from .desktop.login import LoginItem
from .desktop.parts import DesktopParts, choose_parts
from .settings import Context

log = logging.getLogger(__name__)


def desktop_problem(env: Mapping[str, str] | None = None) -> str | None:
    """None when the desktop can run here; else why the daemon runs headless."""
    return display_reason(env)


def _start_daemon_thread(daemon: Daemon, timeout: float = 20.0) -> None:
    daemon.start_in_thread()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        loop = daemon.loop
        if loop is not None and loop.is_running():
            return
        time.sleep(0.02)
    raise LabrouterError("the daemon's event loop did not start",
                         hint="See the daemon log (`labrouter paths`).")


def build_app(ctx: Context, daemon: Daemon, asker: Asker, parts: DesktopParts,
              env: Mapping[str, str]) -> DesktopApp:
    """The desktop app with what it answers through: the answer window when
    ``[desktop] answer = "window"`` (notifications where none can be shown), the recent
    answers kept in the data directory, start at login."""
    app = DesktopApp(ctx, daemon, asker, parts, login=LoginItem(ctx, env),
                     stop_daemon=daemon.stop,
                     store=RecentStore(ctx.paths.data_dir, ctx.config.desktop.history))
    if ctx.config.desktop.answer == "window":
        from ..desktop.answer.controller import AnswerWindows, selection_hooks

        hooks = selection_hooks(parts.clipboard, parts.keyboard, answered=app.record_answer)
        app.windows = AnswerWindows(asker, daemon.snapshot, hooks, env=env)
    return app


def run_desktop(ctx: Context, daemon: Daemon, asker: Asker,
                env: Mapping[str, str] | None = None, parts: DesktopParts | None = None) -> int:
    """``labrouter run`` on a desktop: called on the main thread with a daemon that is
    built but not started. Starts the daemon's loop on a worker thread, runs the tray on
    this thread until Quit, then stops the daemon (goodbye sent) and returns the exit code.
    """
    env = os.environ if env is None else env
    parts = parts or choose_parts(ctx, env)
    _start_daemon_thread(daemon)
    # the daemon's one Asker (app/runtime.py); its connector is closed with the daemon
    return build_app(ctx, daemon, asker, parts, env).run()


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
