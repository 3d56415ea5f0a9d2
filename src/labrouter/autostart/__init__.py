"""Start at login: one back-end per platform behind one small interface.

Owns the shared types (``EntryStatus``, ``Runner``), the description of the current
installation (``detect_installation``) and the choice of back-end (``backend_for``).
What an entry contains is in ``render.py`` (pure); writing it and talking to the service
manager (launchctl, systemctl, the Windows registry) is in ``macos.py``, ``linux.py`` and
``windows.py``, each with its external calls injected so that all of it is tested on Linux.

Must not import ``labrouter.desktop`` (and desktop must not import this), nor ``app``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .render import Entry, Installation

__all__ = [
    "Autostart",
    "EntryStatus",
    "Entry",
    "Installation",
    "Runner",
    "backend_for",
    "detect_installation",
    "has_display",
    "run_command",
    "same_program",
]

ENABLED = "enabled"  # present, and starts this installation
STALE = "stale"  # present, but starts another (moved, upgraded, removed) installation
DISABLED_BY_USER = "disabled-by-user"  # present, switched off in Task Manager / GNOME
ABSENT = "absent"  # nothing installed

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


def run_command(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run a service-manager command; a missing program is rc 127, a hang is rc 124."""
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=20,
                              check=False)
    except FileNotFoundError as exc:
        return subprocess.CompletedProcess(list(argv), 127, "", str(exc))
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(list(argv), 124, "", "timed out after 20 s")


@dataclass(frozen=True)
class EntryStatus:
    """One start-at-login entry as found on disk (or in the registry)."""

    kind: str  # "LaunchAgent", "Run key", "XDG autostart", "systemd user unit"
    location: str
    state: str  # ENABLED, STALE, DISABLED_BY_USER or ABSENT
    entry: Entry | None = None
    why: tuple[str, ...] = ()
    running: str = ""  # what the service manager says, "" when it was not asked
    notes: tuple[str, ...] = field(default_factory=tuple)


class Autostart(Protocol):
    """A platform back-end. ``enable`` and ``disable`` return lines to show the user."""

    platform: str

    def enable(self, inst: Installation) -> list[str]: ...

    def disable(self) -> list[str]: ...

    def status(self, inst: Installation) -> list[EntryStatus]: ...


def same_program(a: str, b: str) -> bool:
    """Whether two interpreter paths start the same installation.

    Equal paths are; so are two names in one folder for one file (``venv/bin/python`` and
    ``venv/bin/python3``, pyenv's ``python`` and ``python3.11``). Two venvs of one base
    Python are not, although their interpreters resolve to the same file: the folder
    decides which site-packages is used.
    """
    if a == b:
        return True
    if not a or not b or os.path.dirname(a) != os.path.dirname(b):
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def has_display(env: Mapping[str, str]) -> bool:
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def detect_installation(log_dir: str | Path, headless: bool,
                        env: Mapping[str, str] | None = None,
                        executable: str | None = None,
                        frozen: bool | None = None,
                        platform: str | None = None) -> Installation:
    """The installation this process belongs to, as an entry should start it."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    frozen = bool(getattr(sys, "frozen", False)) if frozen is None else frozen
    # absolute but not resolved: a venv's python is a symlink to the base interpreter, and
    # starting the resolved path would run without the venv's site-packages
    python = os.path.abspath(executable or sys.executable)
    gui_python: str | None = None
    if platform == "win32":
        # the windowless twin: a venv's pythonw.exe, or the PyInstaller build's
        # labrouter-gui.exe (see packaging/labrouter.spec)
        candidate = Path(python).with_name("labrouter-gui.exe" if frozen else "pythonw.exe")
        gui_python = str(candidate) if candidate.exists() else None
    home = (env.get("LABROUTER_HOME") or "").strip() or None
    if home:
        home = os.path.abspath(os.path.expanduser(home))
    default_path = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
    return Installation(python=python, log_dir=str(log_dir), headless=headless, home=home,
                        path_env=env.get("PATH") or default_path, gui_python=gui_python,
                        frozen=frozen)


def backend_for(platform: str | None = None, *, env: Mapping[str, str] | None = None,
                home: Path | None = None, runner: Runner | None = None,
                winreg: object | None = None) -> Autostart:
    """The back-end for this (or the given) platform."""
    platform = sys.platform if platform is None else platform
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    runner = run_command if runner is None else runner
    if platform == "darwin":
        from .macos import LaunchAgentAutostart

        return LaunchAgentAutostart(home=home, runner=runner)
    if platform == "win32":
        from .windows import RunKeyAutostart

        return RunKeyAutostart(winreg=winreg)
    from .linux import LinuxAutostart

    return LinuxAutostart(home=home, env=env, runner=runner)
