"""Pausing this machine (rented out): the persisted state and the auto-pause check.

Owns ``PauseState`` (paused, reason, until as wall-clock seconds, auto), its file
(``paths.pause_file``, so a pause survives a restart until its until-time), parsing of
``--until`` (a time of day ``18:30``, a date-time ``2026-12-01T09:00``, or a duration
``90m``, ``2h``, ``1d``, ``1h30m``), and ``running_process(names)``: which of the named
processes runs now (``/proc`` on Linux, ``tasklist`` on Windows, ``ps`` on macOS).
Must not import asyncio or desktop packages.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from ..core.errors import UsageError
from .paths import write_atomic

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

    def expired(self, wall: float) -> bool:
        return self.paused and self.until is not None and wall >= self.until


def load_pause(path: Path, wall: float) -> PauseState:
    """The saved pause; not paused when there is none, it is unreadable or it expired."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        st = PauseState(paused=bool(d.get("paused")), reason=str(d.get("reason", ""))[:200],
                        until=float(d["until"]) if d.get("until") is not None else None,
                        auto=bool(d.get("auto")))
    except (OSError, ValueError, TypeError, KeyError):
        return PauseState()
    if st.until is not None and not valid_until(st.until):
        return PauseState()  # unreadable, as above
    return PauseState() if st.expired(wall) or st.auto else st


def save_pause(path: Path, st: PauseState) -> None:
    write_atomic(path, json.dumps(asdict(st)))


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
    """The first of ``names`` (case-insensitive, without .exe) that runs now, or ""."""
    want = {n.lower().removesuffix(".exe") for n in names if n.strip()}
    if not want:
        return ""
    for name in _process_names():
        if name.lower().removesuffix(".exe") in want:
            return name
    return ""


def _process_names() -> list[str]:
    if sys.platform.startswith("linux"):
        out = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as fh:
                    out.append(fh.read().strip())
            except OSError:
                continue
        return out
    try:
        if sys.platform == "win32":
            res = subprocess.run(["tasklist", "/fo", "csv", "/nh"], capture_output=True,
                                 text=True, timeout=10, check=False)
            return [line.split('","')[0].strip('"') for line in res.stdout.splitlines() if line]
        res = subprocess.run(["ps", "-axco", "comm="], capture_output=True, text=True,
                             timeout=10, check=False)
        return [line.strip() for line in res.stdout.splitlines() if line.strip()]
    except (OSError, subprocess.SubprocessError):
        return []
