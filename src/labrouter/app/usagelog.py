"""The usage log on disk: one JSON line per request in ``usage-YYYY-MM-DD.jsonl``.

Owns appending (one ``write`` of one whole line on a file opened for append, so a crash
leaves at worst one partial last line, which readers skip, and which the next append ends
first so that the new record stays whole), reading the last N days,
today's cloud spend (a running total: each call reads only the bytes appended since the
last, so the cost of asking does not grow with the day's requests), and removing files
older than ``retention_days``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..core.usage import UsageRecord, parse_lines

log = logging.getLogger(__name__)


class UsageLog:
    def __init__(self, data_dir: Path, retention_days: int = 90,
                 clock: Callable[[], float] = time.time) -> None:
        self.dir = data_dir
        self.retention_days = retention_days
        self.clock = clock
        self._spent = _RunningSpend("", 0, 0.0)
        self._pruned_day = ""

    def file_for(self, ts: float) -> Path:
        day = dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d")
        return self.dir / f"usage-{day}.jsonl"

    def append(self, record: UsageRecord) -> None:
        """Append one record. A full disk or a read-only folder is logged, never raised:
        losing a usage line must not lose the user's answer."""
        _log_request(record)
        line = (record.to_json() + "\n").encode("utf-8")
        path = self.file_for(record.ts)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                # a crash mid-write left a torn last line: end it first, or this whole
                # record would fuse with it and be skipped by readers (a lost request)
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = b"\n" + line
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("could not write the usage log %s: %s", path, exc)
            return
        self._prune(path.stem[len("usage-"):])

    def read(self, days: int = 7) -> tuple[list[UsageRecord], int]:
        """Records of the last ``days`` days (today included) and the count of bad lines."""
        today = dt.datetime.fromtimestamp(self.clock()).date()
        # `--days 100000000` is the same as "everything": no date arithmetic overflow
        days = max(0, min(days, (today - dt.date.min).days + 1))
        first = today - dt.timedelta(days=days - 1) if days else today + dt.timedelta(days=1)
        out: list[UsageRecord] = []
        bad = 0
        # the files that are there, oldest first, rather than one lookup per day asked for
        paths: list[tuple[dt.date, Path]] = []
        for path in self.dir.glob("usage-*.jsonl"):
            try:
                day = dt.date.fromisoformat(path.stem[len("usage-"):])
            except ValueError:
                continue
            if first <= day <= today:
                paths.append((day, path))
        for _, path in sorted(paths):
            try:
                with path.open(encoding="utf-8", errors="replace") as f:
                    recs, b = parse_lines(f)
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("could not read %s: %s", path, exc)
                continue
            out.extend(recs)
            bad += b
        return out, bad

    def spent_today(self) -> float:
        """Today's cloud spend, read incrementally.

        The daemon and every `labrouter ask` append to the same file, so a figure kept by
        one process alone would let the others' cloud calls overrun the day's budget: each
        call reads what was appended since the last one (nothing, when the size is the
        same), never the whole file again. A file that shrank (edited, replaced) is read
        again from its start.
        """
        now = self.clock()
        day = dt.datetime.fromtimestamp(now).strftime("%Y-%m-%d")
        run = self._spent
        if run.day != day:
            run = self._spent = _RunningSpend(day, 0, 0.0)
        path = self.file_for(now)
        try:
            size = path.stat().st_size
        except OSError:
            return run.usd
        if size == run.offset:
            return run.usd
        if size < run.offset:
            run.offset, run.usd = 0, 0.0
        try:
            with path.open("rb") as f:
                f.seek(run.offset)
                chunk = f.read(size - run.offset)
        except OSError as exc:
            log.warning("could not read %s: %s", path, exc)
            return run.usd
        # only whole lines count: a line being written right now is read next time
        end = chunk.rfind(b"\n") + 1
        if end:
            for line in chunk[:end].splitlines():
                run.usd += _line_cost(line)
            run.offset += end
        return run.usd

    def _prune(self, day: str) -> None:
        if self._pruned_day == day or self.retention_days <= 0:
            return
        self._pruned_day = day
        cutoff = dt.datetime.fromtimestamp(self.clock()).date() - dt.timedelta(
            days=self.retention_days)
        for path in self.dir.glob("usage-*.jsonl"):
            try:
                d = dt.date.fromisoformat(path.stem[len("usage-"):])
            except ValueError:
                continue
            if d < cutoff:
                try:
                    path.unlink()
                except OSError:
                    pass


def _log_request(r: UsageRecord) -> None:
    """The daemon log's one line per request (never the prompt)."""
    route = f"{r.classified_route}->{r.route}" if r.classified_route not in ("", r.route) \
        else r.route
    log.info("request from %s%s: %s, %s on %s (%s), %d+%d tokens, %.0f ms%s", r.source,
             f" for {r.served_for}" if r.served_for else "", r.outcome, route,
             r.node or "-", r.model or "-", r.prompt_tokens, r.completion_tokens,
             r.duration_ms, f", {len(r.fallbacks)} fell over" if r.fallbacks else "")


_FREE = re.compile(rb'"cost_usd"\s*:\s*0(\.0*)?\s*[,}]')


@dataclass
class _RunningSpend:
    day: str
    offset: int  # bytes of the day's file already counted (whole lines only)
    usd: float


def _line_cost(line: bytes) -> float:
    # most lines cost nothing: skip the JSON parse unless the line names a cost above 0
    if b'"cost_usd"' not in line or _FREE.search(line):
        return 0.0
    recs, _ = parse_lines([line.decode("utf-8", "replace")])
    return recs[0].cost_usd if recs else 0.0
