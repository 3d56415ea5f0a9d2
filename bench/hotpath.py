"""Benchmark: the daemon's hot path through the front door.

A fake Ollama (its own event loop thread, as on another machine) and the front door with
its Asker (another thread, as the daemon); the client (httpx) on the main loop. Prints:

- time to first token through the front door after 0, 1,000 and 10,000 lines in today's
  usage log, with a paying cloud server configured (so the day's spend is needed on every
  request): must be flat
- TCP connections the model server saw for 50 sequential chats: must be 1
- the daemon thread's CPU per request and per token
- 32 concurrent streams through the front door against 32 straight to the server

    python bench/hotpath.py [--requests 50] [--tokens 200] [--streams 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LABROUTER_LOOPBACK_ONLY", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

import httpx  # noqa: E402

from labrouter.app.frontdoor import FrontDoor, FrontDoorSite  # noqa: E402
from labrouter.app.local import probe_servers  # noqa: E402
from labrouter.app.usagelog import UsageLog  # noqa: E402
from labrouter.ask import Asker  # noqa: E402
from labrouter.core.config import parse_config  # noqa: E402
from labrouter.core.peers import static_peers  # noqa: E402
from labrouter.core.usage import UsageRecord  # noqa: E402
from tests.fakes.loop_thread import LoopThread  # noqa: E402
from tests.fakes.ollama_server import FakeOllama  # noqa: E402
from tests.fakes.openai_server import FakeOpenAI  # noqa: E402

MODEL = "qwen3:4b"




async def _thread_cpu() -> float:
    return time.thread_time()


async def chat(client: httpx.AsyncClient, url: str) -> tuple[float, float, int]:
    """(time to first token, time to the end, lines) of one streamed /api/chat."""
    body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    t0 = time.perf_counter()
    first = 0.0
    n = 0
    async with client.stream("POST", url + "/api/chat", json=body) as resp:
        async for line in resp.aiter_lines():
            if not line:
                continue
            if not first:
                first = time.perf_counter() - t0
            if not json.loads(line).get("done"):
                n += 1
    return first, time.perf_counter() - t0, n


def fill_log(log: UsageLog, n: int) -> None:
    path = log.file_for(time.time())
    path.parent.mkdir(parents=True, exist_ok=True)
    line = UsageRecord(ts=time.time(), route="quick", node="bench", server="s0", model=MODEL,
                       outcome="ok", prompt_tokens=10, completion_tokens=200, ttft_ms=5.0,
                       duration_ms=50.0, cost_usd=0.0).to_json() + "\n"
    with path.open("a", encoding="utf-8") as f:
        f.write(line * n)


async def main(args: argparse.Namespace) -> None:
    answer = " ".join(f"w{i}" for i in range(args.tokens))
    fake = FakeOllama(models=[MODEL], answer=answer, tokens_per_s=1e9, ttft=0.0)
    cloud = FakeOpenAI(models=["gpt-x"])
    servers = LoopThread("fake-servers", timeout=120)
    servers.run(fake.start())
    servers.run(cloud.start())
    tmp = Path(tempfile.mkdtemp(prefix="labrouter-hotpath-"))
    cfg = parse_config(
        f'[[servers]]\nurl = "{fake.url}"\nname = "s0"\n'
        f'[[servers]]\nurl = "{cloud.url}"\nkind = "openai"\nname = "cloud"\n'
        'cost_input_per_1k = 0.001\ncost_output_per_1k = 0.002\n'
        f'[routes.quick]\nmodels = ["{MODEL}", "gpt-x"]\nallow_cloud = true\n'
        "[budget]\ndaily_usd = 5.0\n", hostname="bench")
    daemon = LoopThread("daemon", timeout=120)
    log = UsageLog(tmp / "data")

    async def start() -> tuple[FrontDoorSite, Asker, int]:
        peers = static_peers("bench", await probe_servers(cfg.servers))
        asker = Asker(cfg, lambda: peers, usage_log=log)
        site = FrontDoorSite(FrontDoor(asker, lambda: peers, cfg), "127.0.0.1", 0)
        return site, asker, await site.start()

    site, asker, port = daemon.run(start())
    door = f"http://127.0.0.1:{port}"
    direct = fake.root_url
    print(f"labrouter hot path: answers of {args.tokens} tokens from a fake Ollama with no "
          f"model delay; {os.cpu_count()} cores; Python {sys.version.split()[0]}")
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(timeout=60, limits=limits, trust_env=False) as client:
        await chat(client, door)  # warm-up
        print("\nfront door time to first token vs lines in today's usage log "
              "(a paying server is configured, so the day's spend is needed every time)")
        have = 0
        for lines in (0, 1000, 10000):
            fill_log(log, lines - have)
            have = lines
            firsts = [(await chat(client, door))[0] for _ in range(args.requests)]
            print(f"  {lines:6d} lines: median {statistics.median(firsts) * 1000:6.2f} ms  "
                  f"p90 {statistics.quantiles(firsts, n=10)[-1] * 1000:6.2f} ms")

        before = set(fake.connections)
        cpu0 = daemon.run(_thread_cpu())
        for _ in range(50):
            await chat(client, door)
        cpu = daemon.run(_thread_cpu()) - cpu0
        tokens = 50 * args.tokens  # the fake's answer: one token per word
        print(f"\n50 sequential chats: {len(fake.connections - before)} new TCP connection(s) "
              f"to the model server ({len(fake.connections)} in all since start)")
        print(f"daemon CPU: {cpu / 50 * 1000:.2f} ms per request, "
              f"{cpu / max(tokens, 1) * 1e6:.1f} us per token")

        async def concurrent(url: str) -> float:
            t0 = time.perf_counter()
            await asyncio.gather(*(chat(client, url) for _ in range(args.streams)))
            return time.perf_counter() - t0

        await concurrent(direct)
        await concurrent(door)
        d = statistics.median([await concurrent(direct) for _ in range(args.rounds)])
        f = statistics.median([await concurrent(door) for _ in range(args.rounds)])
        print(f"\n{args.streams} concurrent streams: direct {d * 1000:.0f} ms, through the "
              f"front door {f * 1000:.0f} ms: {f / d:.2f}x (target <= 1.5x)")

    async def stop() -> None:
        await site.stop()
        close: Any = getattr(asker.connector, "aclose", None)
        if close:
            await close()

    daemon.run(stop())
    daemon.close()
    servers.run(fake.stop())
    servers.run(cloud.stop())
    servers.close()


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=50)
    p.add_argument("--tokens", type=int, default=200)
    p.add_argument("--streams", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5)
    return p.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse()))
