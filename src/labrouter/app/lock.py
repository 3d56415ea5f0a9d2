"""One daemon per LABROUTER_HOME: an exclusive lock on ``paths.lock_file``.

Owns ``InstanceLock``: an OS lock (``fcntl.flock`` on POSIX, ``msvcrt.locking`` on
Windows) held for the daemon's lifetime and released by the OS when the process dies, so
a kill -9 never leaves a stale lock. Must not import asyncio or desktop packages.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO

from ..core.errors import AlreadyRunning
from .paths import ensure_dir


class InstanceLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock or raise AlreadyRunning naming the other daemon's pid."""
        ensure_dir(self.path.parent, private=True)
        fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release()
        try:
            if sys.platform == "win32":
                import msvcrt

                fh.seek(0)
                msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            pid = fh.read().strip() or "?"
            fh.close()
            raise AlreadyRunning(
                f"a labrouter daemon already runs for this user (pid {pid}, lock {self.path})",
                hint="Use `labrouter status`, or stop it first; to run a second one, give it "
                     "its own LABROUTER_HOME.") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is None:
            return
        try:
            self._fh.seek(0)
            self._fh.truncate()
        except OSError:
            pass
        self._fh.close()  # closing drops the lock
        self._fh = None

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
