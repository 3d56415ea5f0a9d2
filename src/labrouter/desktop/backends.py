"""Choosing a backend for each desktop capability, and remembering why others were not.

Owns the loader that every desktop capability (``tray``, ``hotkey``, ``clipboard``,
``keyboard``, ``notify``) goes through: a capability lists its backends in order of
preference, each as a :class:`BackendSpec` with a cheap side-effect-free ``probe`` (returns
``None`` when the backend can work here, else the reason it cannot) and a ``factory``. The
first available one wins, except that ``LABROUTER_<CAPABILITY>_BACKEND=<name>`` forces one
(``null`` included). Every probe result is kept in a :class:`Choice`, so ``labrouter
doctor`` can print the reason each unavailable backend gave.

Imports nothing from the desktop libraries: those are imported inside the probes and
factories of the capability modules, so ``import labrouter.desktop`` works with no display.
Must not import ``labrouter.autostart`` (the two never import each other).

Threading: pure functions; a :class:`Choice` is immutable and may be read from any thread.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

CAPABILITIES = ("tray", "hotkey", "clipboard", "keyboard", "notify")


@dataclass(frozen=True)
class BackendSpec(Generic[T]):
    """One way to provide a capability: a name, a preflight and a constructor."""

    name: str
    probe: Callable[[], str | None]  # None: usable here; else why not (for doctor)
    factory: Callable[[], T]


@dataclass(frozen=True)
class Probe:
    """What one backend said when asked whether it can work here."""

    name: str
    available: bool
    reason: str = ""


@dataclass(frozen=True)
class Choice(Generic[T]):
    """The backend chosen for a capability, with what every candidate said."""

    capability: str
    backend: T
    name: str
    probes: tuple[Probe, ...]
    forced: str = ""  # the value of LABROUTER_<CAPABILITY>_BACKEND, when set

    @property
    def unavailable(self) -> tuple[Probe, ...]:
        return tuple(p for p in self.probes if not p.available)

    def describe(self) -> str:
        """One line: the chosen backend and why the ones before it were passed over."""
        skipped = "; ".join(f"{p.name}: {p.reason}" for p in self.unavailable)
        text = f"{self.name}" + (f" (forced by {env_var(self.capability)})" if self.forced
                                 else "")
        return f"{text}; not used: {skipped}" if skipped else text


def env_var(capability: str) -> str:
    return f"LABROUTER_{capability.upper()}_BACKEND"


def run_probe(spec: BackendSpec[T]) -> Probe:
    try:
        reason = spec.probe()
    except Exception as exc:  # a probe must never take the app down
        reason = f"probe failed: {type(exc).__name__}: {exc}"
    return Probe(spec.name, reason is None, reason or "")


def choose(capability: str, specs: Sequence[BackendSpec[T]], null: BackendSpec[T],
           env: Mapping[str, str] | None = None) -> Choice[T]:
    """Pick the backend for ``capability``: forced by the environment, else the first usable.

    ``null`` is always usable and is the answer when nothing else is. A forced backend that
    is unknown or unavailable falls back to ``null`` and says why (never silently to another
    real backend: forcing is for tests and for working around a bad one).
    """
    env = os.environ if env is None else env
    forced = env.get(env_var(capability), "").strip().lower()
    everything = [*specs, null]
    if forced:
        match = [s for s in everything if s.name == forced]
        if not match:
            names = ", ".join(s.name for s in everything)
            probe = Probe(forced, False, f"unknown backend; known: {names}")
            return Choice(capability, null.factory(), null.name, (probe,), forced)
        probe = run_probe(match[0])
        if probe.available:
            backend = _build(match[0], capability)
            if backend is not None:
                return Choice(capability, backend, forced, (probe,), forced)
            probe = Probe(forced, False, "failed to start (see the log)")
        return Choice(capability, null.factory(), null.name, (probe,), forced)
    probes: list[Probe] = []
    for spec in specs:
        probe = run_probe(spec)
        if probe.available:
            backend = _build(spec, capability)
            if backend is not None:
                probes.append(probe)
                return Choice(capability, backend, spec.name, tuple(probes))
            probe = Probe(spec.name, False, "failed to start (see the log)")
        probes.append(probe)
    probes.append(Probe(null.name, True, ""))
    return Choice(capability, null.factory(), null.name, tuple(probes))


def probe_all(specs: Sequence[BackendSpec[T]]) -> list[Probe]:
    """Ask every backend whether it could work here, without building any (for doctor)."""
    return [run_probe(s) for s in specs]


def _build(spec: BackendSpec[T], capability: str) -> T | None:
    try:
        return spec.factory()
    except Exception:
        log.warning("%s backend %s failed to start", capability, spec.name, exc_info=True)
        return None


# ------------------------------------------------------------ facts about the session


def is_wayland(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return env.get("XDG_SESSION_TYPE", "").lower() == "wayland" or bool(
        env.get("WAYLAND_DISPLAY"))


def has_x11(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return sys.platform.startswith("linux") and bool(env.get("DISPLAY"))


def display_reason(env: Mapping[str, str] | None = None,
                   platform: str | None = None,
                   reach: Callable[[str], str | None] | None = None) -> str | None:
    """None when there is a desktop session to draw on, else why not."""
    env = os.environ if env is None else env
    platform = platform or sys.platform
    if platform in ("darwin", "win32"):
        return None
    if env.get("WAYLAND_DISPLAY"):
        return None
    if env.get("DISPLAY"):
        # a DISPLAY left over from a session that has ended (ssh, su, a dead Xvfb) would
        # give a "desktop" whose every backend fails to start, tracebacks in the log
        return (reach or x_display_problem)(env["DISPLAY"])
    return "no display: neither DISPLAY nor WAYLAND_DISPLAY is set"


def x_display_problem(display: str, timeout: float = 1.0) -> str | None:
    """None when the X server of ``display`` accepts a connection (or is remote and so not
    checked: no traffic leaves this machine for a check), else why not."""
    import re
    import socket

    m = re.fullmatch(r"(?:unix|localhost|127\.0\.0\.1)?:(\d+)(?:\.\d+)?", display.strip())
    if m is None:
        return None  # a remote X server (or a socket path, as XQuartz sets): trust it
    number = int(m.group(1))
    fail = f"the X display DISPLAY={display} cannot be reached (is its X server running?)"
    if display.startswith(("localhost", "127.")):  # ssh -X forwarding
        try:
            socket.create_connection(("127.0.0.1", 6000 + number), timeout).close()
            return None
        except OSError:
            return fail
    # the abstract socket first (it works where /tmp/.X11-unix is not shared), then the file
    for address in (f"\0/tmp/.X11-unix/X{number}", f"/tmp/.X11-unix/X{number}"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
            return None
        except OSError:
            continue
        finally:
            sock.close()
    return fail
