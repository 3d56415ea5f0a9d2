"""The usage page and the figures behind it: a known log in, the numbers in the HTML out;
who may read the page; `labrouter stats` with its charts, ASCII and --json; --open."""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiohttp import web

from labrouter.app.usagelog import UsageLog
from labrouter.app.usagepage import (
    PageSettings,
    axis,
    is_local_request,
    page_headers,
    render_page,
    usage_handler,
)
from labrouter.commands.stats import ASCII, UNICODE, charset_for
from labrouter.core.usage import UsageRecord, percentile, reason_kind, summarise

NOW = dt.datetime(2026, 11, 26, 15, 0).timestamp()
HOUR = 3600.0


def rec(route: str, model: str, node: str, *, classified: str = "", ts: float = NOW - HOUR,
        ttft: float = 100.0, ms: float = 1000.0, pt: int = 10, ct: int = 20,
        outcome: str = "ok", **kw: object) -> UsageRecord:
    return UsageRecord(ts=ts, route=route, node=node, server="ollama", model=model,
                       outcome=outcome, prompt_tokens=pt, completion_tokens=ct, ttft_ms=ttft,
                       duration_ms=ms, classified_route=classified, **kw)  # type: ignore[arg-type]


def known_log() -> list[UsageRecord]:
    """20 quick; 12 code of which 9 answered by the quick model because no code model was
    up; 2 reasoning on the cloud (one fell over from a timed-out try); 4 requests served
    for the laptop over the relay; one old record without the classified route."""
    out = [rec("quick", "qwen3:4b", "mac", classified="quick", ttft=100 + i, ms=900)
           for i in range(20)]
    out += [rec("quick", "qwen3:4b", "mac", classified="code", outcome="fallback",
                ttft=150, ms=2000) for _ in range(9)]
    out += [rec("code", "qwen3-coder:30b", "gpu", classified="code", ttft=800, ms=9000)
            for _ in range(3)]
    out += [rec("reasoning", "gpt-4.1-mini", "cloud", classified="reasoning", cost_usd=0.25,
                ttft=400, ms=5000),
            rec("reasoning", "gpt-4.1-mini", "cloud", classified="reasoning", cost_usd=0.5,
                ttft=400, ms=5000, outcome="fallback",
                fallbacks=({"node": "gpu", "server": "ollama", "model": "deepseek-r1:14b",
                            "reason": "deepseek-r1:14b on gpu: gpu (relay): no answer in "
                                      "time"},))]
    out += [rec("code", "qwen3-coder:30b", "gpu", served_for="laptop", pt=100, ct=400,
                ttft=300, ms=4000, ts=NOW - 2 * HOUR) for _ in range(4)]
    out.append(rec("vision", "qwen2.5vl:7b", "gpu", ts=NOW - 3 * HOUR))  # written before
    return sorted(out, key=lambda r: r.ts)


def text_of(page: str) -> str:
    """The page's text as read: no style, inline tags dropped, cells apart, entities
    decoded, whitespace squeezed."""
    page = re.sub(r"<style>.*?</style>", "", page, flags=re.S)
    page = re.sub(r"</?(b|span|i|small)\b[^>]*>", "", page)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


# ------------------------------------------------------------------ figures


def test_summary_tells_where_each_classified_route_was_answered() -> None:
    s = summarise(known_log())
    assert s.requests == 35 and s.served_for_requests == 4  # the peer's are kept apart
    assert s.fallovers == 10  # 9 code -> quick, 1 timed-out try
    assert s.flows["code"].requests == 12
    assert s.flows["code"].answered == {("quick", "qwen3:4b"): 9, ("code", "qwen3-coder:30b"): 3}
    assert s.crossings() == [("code", "quick", 9, "no code model was up")]
    assert s.fallover_reasons == {"no code model was up": 9, "timed out": 1}
    # an old record (no classified route) is taken as classified == served: no fallover
    assert s.flows["vision"].requests == 1 and not s.flows["vision"].reasons
    assert s.by_node["gpu"].peer_tokens == 4 * 500 and s.by_node["gpu"].requests == 4
    assert s.served_for["laptop"].busy_ms == 16000
    assert s.by_model["qwen3:4b"].median_ttft_ms == 114  # 15th of 29
    assert s.by_model["qwen3:4b"].p95_ttft_ms == 150
    assert round(s.cost_usd, 2) == 0.75 and s.day_cost == {"2026-11-26": 0.75}
    d = s.to_dict()
    assert d["served_for_others"]["requests"] == 4
    assert d["classified"]["code"]["answered"][0] == {"route": "quick", "model": "qwen3:4b",
                                                      "requests": 9}


def test_an_old_fallback_record_still_counts_as_a_fallover() -> None:
    # written before the classified route was logged: `"route":"quick","outcome":"fallback"`
    s = summarise([rec("quick", "qwen3:4b", "mac", outcome="fallback")])
    assert s.fallovers == 1 and s.flows["quick"].requests == 1
    assert s.fallover_reasons == {"a later choice answered": 1}


def test_percentile_and_reason_kinds() -> None:
    assert percentile([], 95) == 0.0
    assert percentile([5.0], 95) == 5.0
    assert percentile([float(i) for i in range(1, 101)], 95) == 95.0
    assert percentile([1.0, 2.0, 3.0], 50) == 2.0
    assert reason_kind("qwen3:8b on gpu: gpu (relay): cannot connect (refused)") == \
        "could not connect"
    assert reason_kind("m on n: n (relay): paused: rented out") == "machine paused"
    assert reason_kind("m on n: something odd happened (details)") == "something odd happened"


def test_axis_steps_are_round() -> None:
    assert axis(230) == (300.0, 100.0)
    assert axis(40) == (40.0, 10.0)
    assert axis(0.275, 2) == (0.4, 0.2)
    assert axis(0) == (1.0, 0.25)


# ------------------------------------------------------------------ the page


def test_the_page_shows_the_numbers_of_a_known_log() -> None:
    page = render_page(known_log(), "today", NOW,
                       PageSettings(node="gpu", daily_budget_usd=2.0))
    text = text_of(page)
    tile = dict(re.findall(r'data-figure="(\w+)"><b>([^<]*)</b>', page))
    assert "1,050 tokens" in text
    assert tile == {"requests": "35", "tokens": "1.1k", "fallovers": "10", "served_for": "4",
                    "spend": "$0.75"}
    assert "code: 12 requests, 9 answered by the quick model (no code model was up)" in text
    assert "Fallovers: 10 (29% of requests)" in text
    assert "no code model was up 9" in text and "timed out 1" in text
    # per machine: the gpu's own tokens plus the laptop's, and the split named
    assert "2.0k tok, 16.0 s for peers" in text
    assert "Served for others: laptop 4 requests" in text
    # median and p95 time to first token per model
    assert re.search(r"qwen3:4b \S* ?114 ms 150 ms 29", text), text
    assert "$0.75 of $2.00 today (38%)" in text
    # the last requests: the crossing shown as classified -> served
    assert "code → quick" in text
    assert "Last 25 requests" in text
    # the hour chart, by serving route; the laptop's requests (13:00) are not ours
    assert "<title>14:00: 34 requests (29 quick, 3 code, 2 reasoning)</title>" in page
    assert "<title>12:00: 1 request (1 vision)</title>" in page
    assert "13:00:" not in page
    assert "<script" not in page.lower() and "http://" not in page and "https://" not in page
    assert 'href="?range=today" class="on"' in page


def test_prompts_show_only_when_logged() -> None:
    records = [rec("quick", "qwen3:4b", "mac")]
    assert "<th>prompt</th>" not in render_page(records, "7d", NOW)
    logged = [rec("quick", "qwen3:4b", "mac", prompt="<b>secret</b> plan")]
    page = render_page(logged, "7d", NOW, PageSettings(log_prompts=True))
    assert "<th>prompt</th>" in page and "&lt;b&gt;secret&lt;/b&gt; plan" in page


def test_names_from_the_network_are_escaped() -> None:
    evil = '<img src=x onerror="alert(1)">'
    page = render_page([rec("quick", evil, evil, served_for=evil),
                        rec(evil, "m", "n", classified=evil)], "30d", NOW)
    assert "<img" not in page and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page


def test_an_empty_range_says_so_and_an_unknown_range_is_the_default() -> None:
    page = render_page([], "today", NOW)
    assert "No requests today" in text_of(page)
    assert 'href="?range=7d" class="on"' in render_page([], "nonsense", NOW)


def test_the_page_may_not_be_framed_nor_run_anything() -> None:
    h = page_headers()
    assert h["X-Frame-Options"] == "DENY"
    csp = h["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert "script-src" not in csp and "unsafe-inline" not in csp


def test_only_loopback_clients_with_a_loopback_host() -> None:
    assert is_local_request("127.0.0.1:47813", "127.0.0.1")
    assert is_local_request("localhost:47813", "::1")
    assert not is_local_request("evil.example:47813", "127.0.0.1")  # DNS rebinding
    assert not is_local_request("127.0.0.1:47813", "192.168.1.20")  # allow_lan: not this page
    assert not is_local_request("127.0.0.1:47813", None)


async def _serve(tmp_path: Path, records: list[UsageRecord]) -> tuple[web.AppRunner, int]:
    log = UsageLog(tmp_path / "data", retention_days=0, clock=lambda: NOW)
    for r in records:
        log.append(r)
    app = web.Application()
    app.router.add_get("/usage", usage_handler(log.read, lambda: PageSettings(node="gpu"),
                                               clock=lambda: NOW))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port


async def test_the_handler_reads_the_range_and_refuses_foreign_hosts(tmp_path: Path) -> None:
    import aiohttp

    old = rec("quick", "qwen3:4b", "mac", ts=NOW - 3 * 86400)
    runner, port = await _serve(tmp_path, [old, *known_log()])
    try:
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{port}/usage"
            async with http.get(base + "?range=today") as r:
                assert r.status == 200 and r.headers["X-Frame-Options"] == "DENY"
                assert r.content_type == "text/html"
                today = await r.text()
            async with http.get(base + "?range=7d") as r:
                week = await r.text()
            async with http.get(base, headers={"Host": "evil.example"}) as r:
                assert r.status == 403
        assert 'data-figure="requests"><b>35<' in today
        assert 'data-figure="requests"><b>36<' in week  # the older one is in the week
    finally:
        await runner.cleanup()


# ------------------------------------------------------------------ labrouter stats


def _write_known_log(home: Path) -> None:
    log = UsageLog(home / "data", retention_days=0)
    now = time.time()
    for r in known_log():
        log.append(UsageRecord(**{**r.__dict__, "ts": now - (NOW - r.ts)}))


def _stats(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "labrouter", "stats", *args],
                          capture_output=True, text=True, env={**os.environ, **env},
                          timeout=60)


def test_stats_says_where_routes_were_answered_and_draws_bars(labrouter_home: Path) -> None:
    _write_known_log(labrouter_home)
    out = _stats(PYTHONIOENCODING="utf-8")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "code: 12 requests, 9 answered by the quick model (no code model was up)" in text
    assert "35 requests" in text and "10 fell over" in text
    assert "served for others: 4 requests" in text and "laptop" in text
    assert "█" in text and "#" not in text
    # the per-day sparkline: today has the requests
    spark = next(line for line in text.splitlines() if line.startswith("per day"))
    assert spark.split()[2][-1] in UNICODE.spark


def test_stats_draws_ascii_when_the_terminal_cannot_show_blocks(labrouter_home: Path) -> None:
    _write_known_log(labrouter_home)
    out = _stats(PYTHONIOENCODING="ascii")
    assert out.returncode == 0, out.stderr
    assert "#" in out.stdout and "█" not in out.stdout
    out.stdout.encode("ascii")  # nothing the terminal cannot show


def test_stats_json_has_no_charts(labrouter_home: Path) -> None:
    _write_known_log(labrouter_home)
    out = _stats("--json", PYTHONIOENCODING="utf-8")
    d = json.loads(out.stdout)
    assert d["fallovers"] == 10 and d["served_for_others"]["by_peer"]["laptop"]["requests"] == 4
    assert not set(out.stdout) & set(UNICODE.full + UNICODE.eighths + UNICODE.spark)


def test_charsets() -> None:
    assert UNICODE.bar(0.5, 4) == "██  " and UNICODE.bar(0.01, 4) == "▏   "
    assert ASCII.bar(0.5, 4) == "##.." and ASCII.bar(0.01, 4) == "#..."
    assert UNICODE.bar(0, 3) == "   " and ASCII.bar(2.0, 3) == "###"
    assert UNICODE.sparkline([0, 1, 8]) == " ▂█"
    assert ASCII.sparkline([0, 4, 8]) == " =#"

    class Latin1:
        encoding = "latin-1"

    assert charset_for(Latin1()) is ASCII  # type: ignore[arg-type]
    assert charset_for(sys.stdout, force_ascii=True) is ASCII


def test_stats_open_without_a_daemon_opens_a_private_snapshot(labrouter_home: Path,
                                                              tmp_path: Path) -> None:
    _write_known_log(labrouter_home)
    seen = tmp_path / "browser-got"
    browser = tmp_path / "browser.py"
    browser.write_text(f"import sys; open({str(seen)!r}, 'w').write(sys.argv[1])\n")
    # the front door's port is closed in this test home: a snapshot file is opened
    (labrouter_home / "config").mkdir(parents=True, exist_ok=True)
    (labrouter_home / "config" / "config.toml").write_text("[api]\nport = 1\n")
    out = _stats("--open", BROWSER=f"{sys.executable} {browser} %s")
    assert out.returncode == 0, out.stderr
    assert "front door is not running" in out.stderr
    url = seen.read_text()
    assert url.startswith("file://") and url.endswith("usage.html")
    page = labrouter_home / "data" / "usage.html"
    assert oct(page.stat().st_mode & 0o777) == "0o600"  # it may hold prompts
    assert "code</b>: 12 requests" in page.read_text()


@pytest.mark.parametrize("days,expected", [(1, "today"), (7, "7d"), (30, "30d"), (90, "30d")])
def test_open_range_follows_days(days: int, expected: str) -> None:
    from labrouter.app.usagepage import range_for_days

    assert range_for_days(days) == expected
