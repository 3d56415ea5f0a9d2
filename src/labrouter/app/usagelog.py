"""The usage log on disk: one JSON line per request in ``usage-YYYY-MM-DD.jsonl``.

Owns appending (one ``write`` of one whole line on a file opened for append, so a crash
leaves at worst one partial last line, which readers skip), reading the last N days,
today's cloud spend, and removing files older than ``retention_days``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from ..core.usage import UsageRecord, parse_lines

log = logging.getLogger(__name__)


class UsageLog:
    def __init__(self, data_dir: Path, retention_days: int = 90,
                 clock: Callable[[], float] = time.time) -> None:
        self.dir = data_dir
        self.retention_days = retention_days
        self.clock = clock
        self._spent: tuple[str, float] | None = None  # (day, usd) cache
        self._pruned_day = ""

    def file_for(self, ts: float) -> Path:
        day = dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d")
        return self.dir / f"usage-{day}.jsonl"

    def append(self, record: UsageRecord) -> None:
        """Append one record. A full disk or a read-only folder is logged, never raised:
        losing a usage line must not lose the user's answer."""
        line = (record.to_json() + "\n").encode("utf-8")
        path = self.file_for(record.ts)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("could not write the usage log %s: %s", path, exc)
            return
        day = path.stem[len("usage-"):]
        if self._spent and self._spent[0] == day:
            self._spent = (day, self._spent[1] + record.cost_usd)
        self._prune(day)

    def read(self, days: int = 7) -> tuple[list[UsageRecord], int]:
        """Records of the last ``days`` days (today included) and the count of bad lines."""
        today = dt.datetime.fromtimestamp(self.clock()).date()
        out: list[UsageRecord] = []
        bad = 0
        for i in range(days - 1, -1, -1):
            day = today - dt.timedelta(days=i)
            path = self.dir / f"usage-{day:%Y-%m-%d}.jsonl"
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
        day = dt.datetime.fromtimestamp(self.clock()).strftime("%Y-%m-%d")
        if self._spent is None or self._spent[0] != day:
            recs, _ = self.read(1)
            self._spent = (day, sum(r.cost_usd for r in recs))
        return self._spent[1]

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
