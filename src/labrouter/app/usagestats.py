"""Statistics over many days of the usage log, fast: one cached tally per closed day.

Owns ``summarise_days()``, what `labrouter stats` reads. A year of a busy lab is some
75,000 lines; parsing them all on every run takes seconds on a small machine. A day that
is over does not change, so its tally (``core.usage.tally``: counts plus the raw times
the medians need) is kept in ``<data>/cache/usage-YYYY-MM-DD.tally.json``, keyed by the
log file's size and modification time; a run parses only today's file and files that
changed (a late append, a hand edit) and merges the rest. Cache files are private (they
name models and peers), written atomically, and any that cannot be read or written are
ignored: the log files stay the truth. Caches whose log file is gone are removed.

Must not import desktop packages.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
from pathlib import Path

from ..core.usage import Summary, finish, parse_lines, tally

log = logging.getLogger(__name__)

CACHE_VERSION = 1
CACHE_DIR = "cache"


def log_files(data_dir: Path, days: int, today: dt.date) -> list[tuple[dt.date, Path]]:
    """The usage files of the last ``days`` days (today included), oldest first."""
    days = max(0, min(days, (today - dt.date.min).days + 1))
    if not days:
        return []
    first = today - dt.timedelta(days=days - 1)
    out = []
    for path in data_dir.glob("usage-*.jsonl"):
        try:
            day = dt.date.fromisoformat(path.stem[len("usage-"):])
        except ValueError:
            continue
        if first <= day <= today:
            out.append((day, path))
    return sorted(out)


def summarise_days(data_dir: Path, days: int, now: float) -> tuple[Summary, int]:
    """The finished Summary of the last ``days`` days and the count of unreadable lines."""
    today = dt.date.fromtimestamp(now)
    cache_dir = data_dir / CACHE_DIR
    total = Summary()
    bad = 0
    for day, path in log_files(data_dir, days, today):
        try:
            st = path.stat()
        except OSError:
            continue
        key = [CACHE_VERSION, st.st_size, st.st_mtime_ns]
        cache = cache_dir / f"{path.stem}.tally.json"
        closed = day < today
        got = _load(cache, key) if closed else None
        if got is None:
            try:
                with path.open(encoding="utf-8", errors="replace") as f:
                    records, b = parse_lines(f)
            except OSError as exc:
                log.warning("could not read %s: %s", path, exc)
                continue
            got = (tally(records), b)
            if closed:
                _save(cache, key, *got)
        total.merge(got[0])
        bad += got[1]
    _drop_orphans(data_dir, cache_dir)
    return finish(total), bad


def _load(cache: Path, key: list[int]) -> tuple[Summary, int] | None:
    try:
        data = json.loads(cache.read_bytes())
        if data.get("key") != key:
            return None
        return Summary.from_state(data["tally"]), int(data["bad"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.debug("usage cache %s not used: %s", cache, exc)
        return None


def _save(cache: Path, key: list[int], t: Summary, bad: int) -> None:
    """Write a day's tally: private, replaced atomically, not synced (a lost cache file
    costs one parse; syncing 365 of them on the first run costs seconds)."""
    data = json.dumps({"key": key, "bad": bad, "tally": t.state()},
                      separators=(",", ":")).encode()
    tmp = cache.with_name(cache.name + f".{os.getpid()}.tmp")
    try:
        cache.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, cache)
    except OSError as exc:  # a read-only data folder: just slower next time
        log.debug("could not write the usage cache %s: %s", cache, exc)
        with contextlib.suppress(OSError):
            tmp.unlink()


def _drop_orphans(data_dir: Path, cache_dir: Path) -> None:
    """Remove the tallies of log files that were removed (retention, by hand)."""
    try:
        caches = list(cache_dir.glob("usage-*.tally.json"))
    except OSError:
        return
    for cache in caches:
        stem = cache.name[: -len(".tally.json")]
        if not (data_dir / f"{stem}.jsonl").exists():
            try:
                cache.unlink()
            except OSError:
                pass
