"""`stats` over many days: one cached tally per finished day, the log files stay the truth."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

from labrouter.app.usagelog import UsageLog
from labrouter.app.usagestats import summarise_days
from labrouter.core.usage import UsageRecord, summarise

NOW = dt.datetime(2026, 11, 26, 15, 0).timestamp()
DAY = 86400.0


def rec(route: str, ts: float, ms: float = 1000.0, **kw: object) -> UsageRecord:
    return UsageRecord(ts=ts, route=route, node="mac", server="ollama", model="qwen3:4b",
                       outcome="ok", prompt_tokens=5, completion_tokens=7, ttft_ms=ms / 10,
                       duration_ms=ms, classified_route=route, **kw)  # type: ignore[arg-type]


def write(data: Path, records: list[UsageRecord]) -> UsageLog:
    log = UsageLog(data, retention_days=0, clock=lambda: NOW)
    for r in records:
        log.append(r)
    return log


def test_cached_days_give_the_same_figures_as_parsing_everything(tmp_path: Path) -> None:
    records = [rec(r, NOW - back * DAY - i, ms=100.0 * (i + 1))
               for back in range(5) for i, r in enumerate(["quick", "code", "quick"])]
    records.append(rec("code", NOW - DAY, served_for="laptop"))
    log = write(tmp_path, sorted(records, key=lambda r: r.ts))
    expected = summarise(log.read(5)[0]).to_dict()
    first, bad = summarise_days(tmp_path, 5, NOW)
    assert bad == 0 and first.to_dict() == expected
    caches = sorted(p.name for p in (tmp_path / "cache").iterdir())
    # today is still being written: never cached
    assert caches == [f"usage-2026-11-{d}.tally.json" for d in (22, 23, 24, 25)]
    assert oct((tmp_path / "cache" / caches[0]).stat().st_mode & 0o777) == "0o600"
    again, _ = summarise_days(tmp_path, 5, NOW)
    assert again.to_dict() == expected
    assert again.by_route["quick"].median_ms == first.by_route["quick"].median_ms


def test_a_changed_day_is_parsed_again_and_a_damaged_cache_ignored(tmp_path: Path) -> None:
    log = write(tmp_path, [rec("quick", NOW - 2 * DAY), rec("quick", NOW)])
    assert summarise_days(tmp_path, 3, NOW)[0].requests == 2
    # a late append to a finished day (the file's size changes): counted
    log.append(rec("code", NOW - 2 * DAY + 60))
    s, _ = summarise_days(tmp_path, 3, NOW)
    assert s.requests == 3 and s.by_route["code"].requests == 1
    # a cache that is not JSON, or not a tally, or lies about its key: the file decides
    cache = next((tmp_path / "cache").iterdir())
    for junk in (b"{", b'{"key": 1}', b"[]"):
        cache.write_bytes(junk)
        assert summarise_days(tmp_path, 3, NOW)[0].requests == 3
    good = json.loads(cache.read_text())
    good["tally"]["by_route"]["quick"][0] = "many"
    cache.write_text(json.dumps(good))
    assert summarise_days(tmp_path, 3, NOW)[0].by_route["quick"].requests == 2


def test_orphaned_caches_are_removed_and_a_read_only_folder_still_works(
        tmp_path: Path) -> None:
    write(tmp_path, [rec("quick", NOW - 3 * DAY), rec("quick", NOW - DAY)])
    summarise_days(tmp_path, 5, NOW)
    (tmp_path / "usage-2026-11-23.jsonl").unlink()  # retention removed it
    assert summarise_days(tmp_path, 5, NOW)[0].requests == 1
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["usage-2026-11-25.tally.json"]
    if os.geteuid() != 0:  # root writes anywhere
        cache_dir = tmp_path / "cache"
        for p in cache_dir.iterdir():
            p.unlink()
        cache_dir.chmod(0o500)
        try:
            assert summarise_days(tmp_path, 5, NOW)[0].requests == 1
        finally:
            cache_dir.chmod(0o700)


def test_unreadable_lines_are_counted_from_the_cache_too(tmp_path: Path) -> None:
    log = write(tmp_path, [rec("quick", NOW - DAY)])
    with log.file_for(NOW - DAY).open("a") as f:
        f.write('{"ts": 1, "route": 5}\n')
    assert summarise_days(tmp_path, 2, NOW)[1] == 1
    assert summarise_days(tmp_path, 2, NOW)[1] == 1  # from the cache
