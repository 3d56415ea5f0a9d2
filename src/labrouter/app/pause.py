"""Pausing this machine (rented out): the persisted state and the auto-pause check.

Owns ``PauseState`` (paused, reason, until as wall-clock seconds, auto), its file
(``paths.pause_file``, so a pause survives a restart until its until-time), parsing of
``--until`` (a time of day ``18:30``, a date-time ``2026-12-01T09:00``, or a duration
``90m``, ``2h``, ``1d``, ``1h30m``), and ``running_process(names)``: which of the named
processes runs now (psutil: the full name, not Linux's 15-character ``comm``).

A pause file that exists but cannot be read keeps the machine paused (``PauseState.damaged``,
the safe side for a machine rented out) until ``labrouter resume`` writes a good one.
Must not import asyncio or desktop packages.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from ..core.errors import UsageError
from .paths import write_atomic

log = logging.getLogger(__name__)

#: the latest until-time accepted (9999-12-31): later ones, Infinity and NaN cannot be
#: shown, compared or announced (an announcement that fails makes peers mark us down)
MAX_UNTIL = 253402300799.0


def valid_until(until: float) -> bool:
    return math.isfinite(until) and 0 < until <= MAX_UNTIL


@dataclass(frozen=True)
class PauseState:
    paused: bool = False
    reason: str = ""
    until: float | None = None  # wall-clock seconds; None: until resumed
    auto: bool = False  # set by pause_when_running, lifted when the process ends
    damaged: bool = False  # the pause file could not be read: paused to be safe

    def expired(self, wall: float) -> bool:
        return self.paused and self.until is not None and wall >= self.until


DAMAGED_REASON = "the pause file is damaged; `labrouter resume` takes work again"


def damaged_pause(path: Path, why: str) -> PauseState:
    log.warning("the pause file %s is damaged (%s): staying paused until `labrouter resume`",
                path, why)
    return PauseState(paused=True, reason=DAMAGED_REASON, damaged=True)


def load_pause(path: Path, wall: float) -> PauseState:
    """The saved pause; not paused when there is none or it expired.

    A file that is there but unreadable (bad JSON, bad types, an until-time that cannot be
    a date) keeps the machine paused, with ``damaged`` set: a GPU box rented out must not
    start taking work because its pause file was cut short.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return PauseState()
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8
        return damaged_pause(path, str(exc))
    try:
        d = json.loads(text)
        if not isinstance(d, dict):
            raise TypeError("not a JSON object")
        until = d.get("until")
        st = PauseState(paused=bool(d.get("paused")), reason=str(d.get("reason", ""))[:200],
                        until=float(until) if until is not None else None,
                        auto=bool(d.get("auto")))
    except (ValueError, TypeError, RecursionError) as exc:
        return damaged_pause(path, str(exc))
    if st.until is not None and not valid_until(st.until):
        return damaged_pause(path, "until is not a date")
    return PauseState() if st.expired(wall) or st.auto else st


def save_pause(path: Path, st: PauseState) -> None:
    """Write the pause (forced to disk before it replaces the old file)."""
    d = asdict(st)
    d.pop("damaged")
    write_atomic(path, json.dumps(d))


_DUR = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])", re.I)


def parse_until(text: str, now: dt.datetime | None = None) -> float:
    """Wall-clock seconds from ``90m``, ``2h``, ``1h30m``, ``18:30`` or an ISO date-time."""
    now = now or dt.datetime.now().astimezone()
    t = text.strip()
    if _DUR.fullmatch(t) or re.fullmatch(r"(\d+(?:\.\d+)?\s*[smhd]\s*)+", t, re.I):
        mult = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        secs = sum(float(n) * mult[u.lower()] for n, u in _DUR.findall(t))
        return _checked(now.timestamp() + secs, text)
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", t)
    if m:
        h, mi = int(m.group(1)), int(m.group(2))
        if h > 23 or mi > 59:
            raise UsageError(f"--until {text}: not a time of day")
        at = now.replace(hour=h, minute=mi, second=0, microsecond=0)
        if at <= now:
            at += dt.timedelta(days=1)
        return at.timestamp()
    try:
        at = dt.datetime.fromisoformat(t)
    except ValueError:
        raise UsageError(
            f"--until {text}: not a duration, time or date",
            hint="Examples: --until 2h, --until 90m, --until 18:30, "
                 "--until 2026-12-01T09:00") from None
    if at.tzinfo is None:
        at = at.astimezone()
    return _checked(at.timestamp(), text)


def _checked(until: float, text: str) -> float:
    if not valid_until(until):
        raise UsageError(f"--until {text}: too far in the future",
                         hint="Leave --until out to pause until `labrouter resume`.")
    return until


def running_process(names: Iterable[str]) -> str:
    """The first of ``names`` (case-insensitive, without .exe) that runs now, or "".

    A process matches by its name, its executable's file name or its command's first word:
    the name alone is cut to 15 characters on Linux and may be changed by the program.
    """
    want = {n.strip().lower().removesuffix(".exe") for n in names if n.strip()}
    if not want:
        return ""
    for candidates in _process_names():
        for name in candidates:
            if name.lower().removesuffix(".exe") in want:
                return name
    return ""


def _basename(path: str) -> str:
    return re.split(r"[\\/]", path)[-1]


def _process_names() -> Iterator[list[str]]:
    """For each process: its name, executable file name and first command word (if known)."""
    for proc in psutil.process_iter(["name", "exe", "cmdline"], ad_value=None):
        info = proc.info
        out = [info["name"]] if info.get("name") else []
        if info.get("exe"):
            out.append(_basename(info["exe"]))
        cmd = info.get("cmdline") or []
        if cmd and cmd[0]:
            out.append(_basename(cmd[0]))
        yield out
