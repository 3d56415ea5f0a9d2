"""Desktop notifications: plyer first, then a fallback chain per OS, chosen by checking.

Owns the :class:`Notifier` interface (capability ``notify``), its backends, the chain that
walks them, and the preview rules (how much of an answer fits a notification).

The chain (``../shared/research/desktop.md`` §4.3): ``plyer`` first on every OS, then
macOS ``osascript``; Linux ``notify-send`` (exit code checked) and ``gdbus``
(``org.freedesktop.Notifications.Notify``); Windows the tray icon's balloon (pystray's
``notify``); and last ``log`` (log only: the answer is still in the tray's Recent answers
and, per ``copy_answer``, on the clipboard). Each backend has ``problem()``, a cheap check
with no side effect, called *before* sending, because plyer fails silently in places: on
Linux without dbus-python it runs ``notify-send`` without checking its exit code (and with
``-t 0``, never expiring), with a ``/app`` directory it assumes Flatpak, on macOS it needs
pyobjus and an app bundle, on Windows its errors stay in its own thread. A backend that
passes its check but raises is demoted for ``RETRY_AFTER`` seconds (not for good: started at
login, labrouter may come up before the desktop's notification server does); the next one
is tried and the error says what was tried.

Threading: ``send`` blocks (a subprocess, up to 5 s); call it from a worker thread
(``asyncio.to_thread``), never from the tray's main thread or pynput's thread. The chain's
demotion list is guarded by a lock. plyer is imported inside its backend only.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..core.errors import LabrouterError

log = logging.getLogger(__name__)

APP_NAME = "labrouter"
TIMEOUT_S = 10  # how long a notification stays up, where the platform lets us say
RETRY_AFTER = 60.0  # seconds a backend that failed is skipped before it is tried again


class NotifyError(LabrouterError):
    """No notification backend could show a notification."""


# ------------------------------------------------------------------ previews


@dataclass(frozen=True)
class Limits:
    """How much text a notification carries on a platform."""

    title: int
    body: int
    utf16: bool = False  # Windows counts UTF-16 code units (with a NUL terminator)


def limits_for(platform: str | None = None) -> Limits:
    platform = platform or sys.platform
    if platform == "win32":
        # NOTIFYICONDATAW: szInfoTitle[64], szInfo[256], both NUL-terminated (pystray P12)
        return Limits(title=63, body=255, utf16=True)
    if platform == "darwin":
        return Limits(title=100, body=200)  # Notification Center shows about 2-4 lines
    return Limits(title=100, body=200)  # freedesktop servers: body shown in a few lines


def _units(text: str, utf16: bool) -> int:
    return len(text.encode("utf-16-le")) // 2 if utf16 else len(text)


def fit(text: str, limit: int, utf16: bool = False, ellipsis: str = "…") -> str:
    """``text`` cut to ``limit`` units (code points, or UTF-16 units on Windows), with an
    ellipsis when cut, never splitting a surrogate pair."""
    if _units(text, utf16) <= limit:
        return text
    room = limit - _units(ellipsis, utf16)
    out: list[str] = []
    used = 0
    for ch in text:
        n = _units(ch, utf16)
        if used + n > room:
            break
        out.append(ch)
        used += n
    return "".join(out).rstrip() + ellipsis


@dataclass(frozen=True)
class Preview:
    body: str
    shortened: bool


def preview(answer: str, limits: Limits, suffix: str = "") -> Preview:
    """The notification body for an answer: whole when it fits, else cut with ``suffix``
    (e.g. "(full answer copied)") kept inside the limit."""
    text = answer.strip()
    if _units(text, limits.utf16) <= limits.body:
        return Preview(text, False)
    tail = f"\n{suffix}" if suffix else ""
    head = fit(text, max(limits.body - _units(tail, limits.utf16), 1), limits.utf16)
    return Preview(head + tail, True)


# ------------------------------------------------------------------ backends


class Notifier(Protocol):
    name: str

    def problem(self) -> str | None:
        """None when this backend should work here; else why not. No side effects."""
        ...

    def send(self, title: str, body: str) -> None:
        """Show one notification; raise on failure (any exception)."""
        ...


Runner = Callable[..., "subprocess.CompletedProcess[bytes]"]


def _which(name: str) -> str | None:
    return shutil.which(name)


def dbus_problem(env: Mapping[str, str]) -> str | None:
    """None when the session bus address names a bus that may be there, else why not.

    Only what can be checked without talking to the bus: a ``unix:path=`` socket that does
    not exist (a session that has ended, an address copied from another login) would
    otherwise pass every check and fail at each notification.
    """
    address = env.get("DBUS_SESSION_BUS_ADDRESS", "")
    if not address:
        return "no D-Bus session (DBUS_SESSION_BUS_ADDRESS is not set)"
    paths = [part[len("path="):] for entry in address.split(";")
             for part in entry.partition(":")[2].split(",")
             if entry.startswith("unix:") and part.startswith("path=")]
    if paths and len(paths) == len(address.split(";")) and not any(
            os.path.exists(path) for path in paths):
        return f"the D-Bus session bus {address} does not exist (the session has ended?)"
    return None


@dataclass
class PlyerNotifier:
    name: str = "plyer"
    platform: str = field(default_factory=lambda: sys.platform)
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    find_spec: Callable[[str], object] = importlib.util.find_spec
    isdir: Callable[[str], bool] = os.path.isdir

    def problem(self) -> str | None:
        if self.find_spec("plyer") is None:
            return "plyer is not installed"
        if self.platform.startswith("linux"):
            if self.isdir("/app"):
                return ("a /app directory exists, so plyer would assume Flatpak and call the "
                        "portal")
            bus = dbus_problem(self.env)
            if bus:
                return bus
            if self.find_spec("dbus") is None:
                return ("dbus-python is not installed, so plyer would run notify-send without "
                        "checking its exit code")
        if self.platform == "darwin":
            if self.find_spec("pyobjus") is None:
                return "pyobjus is not installed (plyer needs it on macOS)"
            if not _macos_bundle_id():
                return ("not running from an app bundle: NSUserNotificationCenter is not "
                        "available to plain python")
        return None

    def send(self, title: str, body: str) -> None:
        from plyer import notification

        lim = limits_for(self.platform)
        body = fit(body, lim.body, lim.utf16)
        if self.platform.startswith("linux"):
            body = markup_escape(body)
        notification.notify(title=fit(title, lim.title, lim.utf16),
                            message=body,
                            app_name=APP_NAME, app_icon="", timeout=TIMEOUT_S)


def _macos_bundle_id() -> str:
    try:
        from Foundation import NSBundle  # pyobjc, present with pystray/pynput on macOS

        return str(NSBundle.mainBundle().bundleIdentifier() or "")
    except Exception:
        return ""


def applescript_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class OsaScriptNotifier:
    name: str = "osascript"
    platform: str = field(default_factory=lambda: sys.platform)
    run: Runner = subprocess.run
    which: Callable[[str], str | None] = _which

    def problem(self) -> str | None:
        if self.platform != "darwin":
            return "only on macOS"
        if not self.which("osascript"):
            return "osascript not found"
        return None

    def send(self, title: str, body: str) -> None:
        script = (f"display notification {applescript_quote(body)} "
                  f"with title {applescript_quote(title)}")
        self.run(["osascript", "-e", script], check=True, capture_output=True, timeout=5)


@dataclass
class _LinuxCliNotifier:
    """A notifier that runs a command on the D-Bus session (Linux); checked before use."""

    name: str = ""
    platform: str = field(default_factory=lambda: sys.platform)
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    run: Runner = subprocess.run
    which: Callable[[str], str | None] = _which
    package: str = ""  # the Debian package that brings the command

    def problem(self) -> str | None:
        if not self.platform.startswith("linux"):
            return "only on Linux"
        bus = dbus_problem(self.env)
        if bus:
            return bus
        if not self.which(self.name):
            return f"{self.name} is not installed (apt install {self.package})"
        return None


@dataclass
class NotifySendNotifier(_LinuxCliNotifier):
    name: str = "notify-send"
    package: str = "libnotify-bin"

    def send(self, title: str, body: str) -> None:
        # "--" so that an answer starting with "-" is not taken for an option
        self.run(["notify-send", "--app-name", APP_NAME, "--expire-time",
                  str(TIMEOUT_S * 1000), "--", title, markup_escape(body)],
                 check=True, capture_output=True, timeout=5)


def markup_escape(text: str) -> str:
    """The body as text, not markup: the freedesktop servers (GNOME, KDE, dunst, Xfce)
    read the body as a subset of HTML, so ``List<int>`` would lose its ``<int>``."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def gvariant_quote(text: str) -> str:
    """A GVariant text-format string literal (for gdbus call arguments)."""
    out = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return "'" + out + "'"


@dataclass
class GdbusNotifier(_LinuxCliNotifier):
    name: str = "gdbus"
    package: str = "libglib2.0-bin"

    def send(self, title: str, body: str) -> None:
        self.run(["gdbus", "call", "--session", "--dest", "org.freedesktop.Notifications",
                  "--object-path", "/org/freedesktop/Notifications",
                  "--method", "org.freedesktop.Notifications.Notify",
                  APP_NAME, "0", "", gvariant_quote(title),
                  gvariant_quote(markup_escape(body)), "[]",
                  "{}", str(TIMEOUT_S * 1000)],
                 check=True, capture_output=True, timeout=5)


@dataclass
class TrayBalloonNotifier:
    """Windows: a balloon on our own tray icon (pystray ``Icon.notify``)."""

    icon_notify: Callable[[str, str], None] | None = None  # (title, body)
    name: str = "tray"
    platform: str = field(default_factory=lambda: sys.platform)

    def problem(self) -> str | None:
        if self.platform != "win32":
            return "only on Windows (pystray's xorg and macOS backends have no notify)"
        if self.icon_notify is None:
            return "the tray icon is not running"
        return None

    def send(self, title: str, body: str) -> None:
        assert self.icon_notify is not None
        lim = limits_for("win32")
        self.icon_notify(fit(title, lim.title, True), fit(body, lim.body, True))


@dataclass
class LogNotifier:
    """The end of every chain: writes the notification to the log."""

    name: str = "log"

    def problem(self) -> str | None:
        return None

    def send(self, title: str, body: str) -> None:
        log.info("notification: %s: %s", title, body)


# ------------------------------------------------------------------ the chain


def default_chain(platform: str | None = None, env: Mapping[str, str] | None = None,
                  icon_notify: Callable[[str, str], None] | None = None) -> list[Notifier]:
    platform = platform or sys.platform
    env = os.environ if env is None else env
    chain: list[Notifier] = []
    if platform.startswith("linux"):
        from .notify_dbus import DbusNotifier

        chain.append(DbusNotifier(env=env, platform=platform))
    chain.append(PlyerNotifier(platform=platform, env=env))
    if platform == "darwin":
        chain.append(OsaScriptNotifier(platform=platform))
    elif platform == "win32":
        chain.append(TrayBalloonNotifier(icon_notify, platform=platform))
    else:
        chain += [NotifySendNotifier(platform=platform, env=env),
                  GdbusNotifier(platform=platform, env=env)]
    chain.append(LogNotifier())
    return chain


@dataclass(frozen=True)
class Shown:
    """A notification that was shown: by which backend, and its id there (0: none)."""

    backend: str
    id: int = 0


class NotificationChain:
    """Walks the chain: skips backends whose check fails, demotes those that raise."""

    def __init__(self, notifiers: Sequence[Notifier], env: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        env = os.environ if env is None else env
        forced = env.get("LABROUTER_NOTIFY_BACKEND", "").strip().lower()
        if forced:
            picked = [n for n in notifiers if n.name == forced]
            if forced == "null":
                picked = [LogNotifier(name="null")]
            notifiers = picked or [LogNotifier()]
        self.notifiers = list(notifiers)
        self.forced = forced
        self._demoted: dict[str, tuple[str, float]] = {}  # name: (why, when)
        self._clock = clock
        self._lock = threading.Lock()

    def problems(self) -> list[tuple[str, str | None]]:
        """(name, None or why it would be skipped) for each backend, in order (for doctor)."""
        out: list[tuple[str, str | None]] = []
        for n in self.notifiers:
            out.append((n.name, self._demoted_reason(n.name) or _safe_problem(n)))
        return out

    def _demoted_reason(self, name: str) -> str | None:
        with self._lock:
            why, when = self._demoted.get(name, ("", 0.0))
            if why and self._clock() - when >= RETRY_AFTER:
                del self._demoted[name]  # give it another chance
                return None
        return why or None

    def first_available(self) -> str:
        for name, problem in self.problems():
            if problem is None:
                return name
        return ""

    def show(self, title: str, body: str, replaces: Shown | None = None,
             actions: Sequence[tuple[str, str]] = (),
             on_action: Callable[[str], None] | None = None,
             timeout_ms: int | None = None) -> Shown:
        """Like ``send``, with what only some backends can do: replace an earlier
        notification (when the same backend showed it), offer actions (``(key, label)``;
        ``on_action(key)`` runs on the backend's thread) and a display time. Returns what
        was shown, to be replaced later. Backends without these show a plain one."""
        rich = self._rich
        if rich is not None and self._usable(rich):
            try:
                nid = rich.show(title, body,  # type: ignore[attr-defined]
                                replaces=replaces.id if replaces and replaces.backend ==
                                rich.name else 0,
                                actions=actions, on_action=on_action, timeout_ms=timeout_ms)
                return Shown(rich.name, nid)
            except Exception as exc:
                reason = _describe(exc)
                log.warning("notification backend %s failed: %s", rich.name, reason)
                with self._lock:
                    self._demoted[rich.name] = (f"failed earlier: {reason}", self._clock())
        return Shown(self.send(title, body), 0)

    @property
    def _rich(self) -> Notifier | None:
        first = next((n for n in self.notifiers if hasattr(n, "show")), None)
        return first

    def _usable(self, n: Notifier) -> bool:
        return self._demoted_reason(n.name) is None and _safe_problem(n) is None

    def send(self, title: str, body: str) -> str:
        """Show it with the first backend that works; returns that backend's name.

        Raises NotifyError listing what was tried only when every backend failed (the
        log backend does not fail, so in practice only when it was forced away).
        """
        tried: list[str] = []
        for n in self.notifiers:
            demoted = self._demoted_reason(n.name)
            if demoted:
                tried.append(f"{n.name}: {demoted}")
                continue
            problem = _safe_problem(n)
            if problem is not None:
                tried.append(f"{n.name}: {problem}")
                continue
            try:
                n.send(title, body)
            except Exception as exc:
                reason = _describe(exc)
                log.warning("notification backend %s failed: %s", n.name, reason)
                with self._lock:
                    self._demoted[n.name] = (f"failed earlier: {reason}", self._clock())
                tried.append(f"{n.name}: {reason}")
                continue
            if tried:
                log.debug("notification sent with %s after: %s", n.name, "; ".join(tried))
            return n.name
        raise NotifyError("no notification could be shown; tried " + "; ".join(tried),
                          hint="Run `labrouter doctor` to see what each backend needs.")


def _safe_problem(n: Notifier) -> str | None:
    try:
        return n.problem()
    except Exception as exc:
        return f"check failed: {exc}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, subprocess.CalledProcessError):
        err = exc.stderr.decode("utf-8", "replace").strip() if isinstance(exc.stderr, bytes) \
            else str(exc.stderr or "").strip()
        return f"exit code {exc.returncode}" + (f": {err.splitlines()[-1]}" if err else "")
    if isinstance(exc, subprocess.TimeoutExpired):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"
