"""Usage log: append-only JSON lines, tolerant reading, statistics, `labrouter stats`."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

from labrouter.app.usagelog import UsageLog
from labrouter.core.usage import UsageRecord, parse_lines, summarise

NOW = dt.datetime(2026, 11, 26, 12, 0).timestamp()


def rec(route: str, model: str, node: str, ms: float, outcome: str = "ok", pt: int = 10,
        ct: int = 20, ts: float = NOW, **kw: object) -> UsageRecord:
    return UsageRecord(ts=ts, route=route, node=node, server="ollama", model=model,
                       outcome=outcome, prompt_tokens=pt, completion_tokens=ct,
                       duration_ms=ms, ttft_ms=ms / 10, **kw)  # type: ignore[arg-type]


def test_a_partial_last_line_is_skipped_and_counted(tmp_path: Path) -> None:
    log = UsageLog(tmp_path, clock=lambda: NOW)
    log.append(rec("quick", "qwen3:4b", "mac", 300))
    log.append(rec("code", "qwen3-coder:30b", "gpu", 9000))
    path = log.file_for(NOW)
    with path.open("a") as f:
        f.write('{"ts": 1, "route": "qu')  # a crash mid-write
    records, bad = log.read(1)
    assert [r.route for r in records] == ["quick", "code"] and bad == 1
    # and appending after the torn line still gives readable lines after it
    log.append(rec("quick", "qwen3:4b", "mac", 280))
    records, bad = log.read(1)
    # the torn line is ended first: the new record is not lost to it
    assert [r.duration_ms for r in records] == [300, 9000, 280]
    assert bad == 1
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_prompts_are_not_logged_unless_asked(tmp_path: Path) -> None:
    r = rec("quick", "m", "n", 1)
    assert "prompt" not in json.loads(r.to_json())
    r2 = UsageRecord(**{**r.__dict__, "prompt": "secret text"})
    assert json.loads(r2.to_json())["prompt"] == "secret text"


def test_summary_shares_and_medians() -> None:
    records = [rec("quick", "qwen3:4b", "mac", 300)] * 7 + [
        rec("code", "qwen3-coder:30b", "gpu", 9000),
        rec("code", "qwen3:4b", "mac", 400, fallbacks=({"model": "qwen3-coder:30b",
                                                        "node": "gpu", "reason": "down"},)),
        rec("reasoning", "", "", 0, outcome="failed", pt=0, ct=0),
    ]
    s = summarise(records)
    assert s.requests == 10 and s.answered == 9 and s.fallovers == 1
    assert list(s.by_route) == ["quick", "code", "reasoning"]
    assert s.by_route["quick"].share == 0.7
    assert s.by_route["code"].median_ms == 4700
    assert s.by_model["qwen3:4b"].requests == 8
    assert "" not in s.by_node and "?" not in s.by_node


def test_old_files_are_removed_after_retention(tmp_path: Path) -> None:
    old = tmp_path / "usage-2026-01-01.jsonl"
    old.write_text("")
    keep = tmp_path / "usage-2026-11-20.jsonl"
    keep.write_text("")
    UsageLog(tmp_path, retention_days=30, clock=lambda: NOW).append(rec("quick", "m", "n", 1))
    assert not old.exists() and keep.exists()


def test_unreadable_lines_of_any_kind(tmp_path: Path) -> None:
    records, bad = parse_lines(["", "[]", "nope", '{"ts": 1, "route": "q", "node": "n", '
                                '"server": "s", "model": "m", "outcome": "ok", "new": 1}'])
    assert len(records) == 1 and bad == 2
    # wrong types in a hand-edited line are skipped, not a crash in `labrouter stats`
    good = {"ts": 1, "route": "q", "node": "n", "server": "s", "model": "m", "outcome": "ok"}
    wrong = [{"prompt_tokens": "x"}, {"route": 5}, {"duration_ms": None}, {"cost_usd": "NaN"},
             {"ts": True}, {"fallbacks": 5}, {"fallbacks": ["x"]}, {"prompt": 3}]
    records, bad = parse_lines([json.dumps({**good, **w}) for w in wrong]
                               + ['{"ts": 1, "route": "q", "node": "n", "server": "s", '
                                  '"model": "m", "outcome": "ok", "cost_usd": NaN}'])
    assert records == [] and bad == len(wrong) + 1
    summarise(parse_lines([json.dumps(good)])[0])


def test_stats_command_reads_real_logs(tmp_path: Path, labrouter_home: Path) -> None:
    log = UsageLog(labrouter_home / "data")
    import time
    for _ in range(3):
        log.append(rec("quick", "qwen3:4b", "mac", 300, ts=time.time()))
    log.append(rec("code", "qwen3-coder:30b", "gpu", 9000, ts=time.time()))
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-m", "labrouter", "stats", "--json"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["requests"] == 4 and d["by_route"]["quick"]["share"] == 0.75
    text = subprocess.run([sys.executable, "-m", "labrouter", "stats"], capture_output=True,
                          text=True, env=env, timeout=60).stdout
    assert "75% of your requests went to the quick route" in text


def test_a_cancelled_request_counts_but_is_not_answered() -> None:
    s = summarise([rec("quick", "qwen3:4b", "mac", 300),
                   rec("quick", "qwen3:4b", "mac", 5000, outcome="cancelled"),
                   rec("code", "", "", 10, outcome="cancelled", pt=0, ct=0)])
    assert s.requests == 3 and s.answered == 1
    assert s.by_model["qwen3:4b"].requests == 2 and "?" not in s.by_model
    assert s.by_route["quick"].median_ms == 300  # a cut-off answer is no latency figure


def test_spent_today_sees_what_other_processes_appended(tmp_path: Path) -> None:
    daemon = UsageLog(tmp_path, clock=lambda: NOW)
    daemon.append(rec("code", "gpt", "mac", 1, cost_usd=0.5))
    assert daemon.spent_today() == 0.5
    UsageLog(tmp_path, clock=lambda: NOW).append(rec("code", "gpt", "mac", 1, cost_usd=1.25))
    assert daemon.spent_today() == 1.75  # a `labrouter ask` spent this, not the daemon
    daemon.append(rec("code", "gpt", "mac", 1, cost_usd=0.25))
    assert daemon.spent_today() == 2.0


def test_spent_today_reads_only_what_was_appended(tmp_path: Path) -> None:
    log = UsageLog(tmp_path, clock=lambda: NOW)
    log.append(rec("code", "gpt", "mac", 1, cost_usd=0.5))
    assert log.spent_today() == 0.5
    path = log.file_for(NOW)
    # rewrite the counted line in place (same length): a reader that starts over would see
    # 0.7; the running total does not read it again
    path.write_bytes(path.read_bytes().replace(b'"cost_usd":0.5', b'"cost_usd":0.7'))
    assert log.spent_today() == 0.5
    line = rec("code", "gpt", "mac", 1, cost_usd=2.0).to_json().encode()
    with path.open("ab") as f:  # a line being written by another process: not yet counted
        f.write(line[:-5])
    assert log.spent_today() == 0.5
    with path.open("ab") as f:
        f.write(line[-5:] + b"\n")
    assert log.spent_today() == 2.5
    path.write_text("")  # replaced by a smaller file: counted again from its start
    log.append(rec("code", "gpt", "mac", 1, cost_usd=0.25))
    assert log.spent_today() == 0.25


def test_spent_today_starts_from_zero_on_a_new_day(tmp_path: Path) -> None:
    now = [NOW]
    log = UsageLog(tmp_path, clock=lambda: now[0])
    log.append(rec("code", "gpt", "mac", 1, cost_usd=1.0))
    assert log.spent_today() == 1.0
    now[0] = NOW + 86400
    assert log.spent_today() == 0.0


def test_reading_any_number_of_days(tmp_path: Path) -> None:
    log = UsageLog(tmp_path, clock=lambda: NOW, retention_days=0)
    log.append(rec("quick", "m", "n", 1, ts=NOW - 400 * 86400))
    log.append(rec("code", "m", "n", 1, ts=NOW - 86400))
    log.append(rec("quick", "m", "n", 1))
    (tmp_path / "usage-notadate.jsonl").write_text("x\n")
    assert [r.route for r in log.read(1)[0]] == ["quick"]
    assert [r.route for r in log.read(2)[0]] == ["code", "quick"]
    assert len(log.read(10**12)[0]) == 3  # `stats --days 99999999999`: all, no overflow
    assert log.read(0) == ([], 0)


def test_stats_with_only_unreadable_lines_says_so(labrouter_home: Path) -> None:
    import time
    data = labrouter_home / "data"
    data.mkdir(parents=True)
    UsageLog(data).file_for(time.time()).write_text('{"ts": 1, "route": 5}\n')
    out = subprocess.run([sys.executable, "-m", "labrouter", "stats"], capture_output=True,
                         text=True, env=dict(os.environ), timeout=60)
    assert out.returncode == 0 and "1 unreadable line(s) skipped" in out.stdout, out
