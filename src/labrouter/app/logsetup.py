"""Logging for the daemon: to ``paths.daemon_log`` (rotated) and to stderr.

Owns the one place where handlers are configured (libraries only call
``logging.getLogger(__name__)``). ``LABROUTER_LOG_LEVEL`` (DEBUG, INFO, ...) overrides the
level. Must not import desktop packages.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys

from .paths import Paths, ensure_dir

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(paths: Paths, level: str | int | None = None, stderr: bool = True) -> None:
    lvl = level or os.environ.get("LABROUTER_LOG_LEVEL", "INFO").upper()
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_labrouter", False):
            root.removeHandler(h)
            h.close()
    handlers: list[logging.Handler] = []
    try:
        ensure_dir(paths.log_dir)
        handlers.append(logging.handlers.RotatingFileHandler(
            paths.daemon_log, maxBytes=2_000_000, backupCount=3, encoding="utf-8"))
    except OSError as exc:
        print(f"labrouter: cannot write the log {paths.daemon_log}: {exc}", file=sys.stderr)
    if stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    for h in handlers:
        h.setFormatter(logging.Formatter(FORMAT))
        h._labrouter = True  # type: ignore[attr-defined]
        root.addHandler(h)
    try:
        root.setLevel(lvl)
    except ValueError:
        root.setLevel(logging.INFO)
