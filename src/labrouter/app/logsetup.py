"""Logging for the daemon: to ``paths.daemon_log`` (rotated) and to stderr.

Owns the one place where handlers are configured (libraries only call
``logging.getLogger(__name__)``) and what the default level shows: state changes, errors
and one line per request, never one line per probe. httpx logs every HTTP request at INFO
(the monitor probes each server every second or two), so the HTTP libraries are held at
WARNING unless the level is DEBUG (`labrouter run --verbose`, or
``LABROUTER_LOG_LEVEL=DEBUG``), which shows them at INFO. Must not import desktop
packages.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys

from .paths import Paths, ensure_dir, storage_error

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# per-request or per-connection chatter: httpx's "HTTP Request: GET ..." at INFO, httpcore
# and hpack at DEBUG (every frame), aiohttp's access log
CHATTY = ("httpx", "httpcore", "hpack", "aiohttp.access", "urllib3", "PIL", "asyncio")
# what --verbose lets through of them: httpx's one line per request, not httpcore's frames
VERBOSE = {"httpx": logging.INFO, "aiohttp.access": logging.INFO, "asyncio": logging.INFO}


def parse_level(name: str | int) -> int:
    """A level from a name (``debug``, ``INFO``) or a number; INFO when it is neither."""
    if isinstance(name, int):
        return name
    text = name.strip().upper()
    lvl = int(text) if text.isdigit() else logging.getLevelName(text)
    return lvl if isinstance(lvl, int) else logging.INFO


def configure(paths: Paths, level: str | int | None = None, stderr: bool = True,
              verbose: bool = False) -> None:
    """Handlers on the root logger: the rotated file and, with ``stderr``, the terminal.

    The level: ``level`` when given, DEBUG with ``verbose``, else ``LABROUTER_LOG_LEVEL``,
    else INFO."""
    if level is not None:
        lvl = parse_level(level)
    elif verbose:
        lvl = logging.DEBUG
    else:
        lvl = parse_level(os.environ.get("LABROUTER_LOG_LEVEL", "INFO"))
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
        err = storage_error(exc)
        print(f"labrouter: no log file ({err.message if err else exc}); logging to the "
              "terminal only", file=sys.stderr)
    if stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    for h in handlers:
        h.setFormatter(logging.Formatter(FORMAT))
        h._labrouter = True  # type: ignore[attr-defined]
        root.addHandler(h)
    root.setLevel(lvl)
    for name in CHATTY:
        quiet = logging.WARNING if lvl > logging.DEBUG else VERBOSE.get(name, logging.WARNING)
        logging.getLogger(name).setLevel(quiet)

