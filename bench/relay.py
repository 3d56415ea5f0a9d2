"""Benchmark: the relay's overhead per request and its throughput with concurrent streams.

Time to first token through the relay (TLS, key proof, one more HTTP hop, NDJSON re-framing)
vs direct to the same fake Ollama, median over N requests, with a kept-alive connection
(the router's case: one session per peer) and with a new TLS connection per request; then
tokens per second delivered with 1..K concurrent streams, direct and through the relay.

The fake Ollama and the relay each run on their own event loop thread (as on two machines,
minus the network); the client runs on the main loop. Everything is on 127.0.0.1.

    python bench/relay.py [--requests 100] [--streams 1,8,32] [--tokens 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from labrouter.app.paths import write_private  # noqa: E402
from labrouter.backends import make_backend  # noqa: E402
from labrouter.backends.base import Backend, ChatMessage  # noqa: E402
from labrouter.core.config import TimeoutConfig  # noqa: E402
from labrouter.core.peers import ServerState  # noqa: E402
from labrouter.relay.auth import ProofVerifier  # noqa: E402
from labrouter.relay.client import RelayBackend, new_session  # noqa: E402
from labrouter.relay.server import RelayServer, RelaySite  # noqa: E402
from labrouter.relay.tls import ensure_identity  # noqa: E402
from tests.fakes.loop_thread import LoopThread  # noqa: E402
from tests.fakes.ollama_server import FakeOllama  # noqa: E402

KEY = bytes(range(32))
MODEL = "qwen3:4b"
TIMEOUTS = TimeoutConfig(connect=3, first_token=30, gap=30, total=300)




class Host:
    """The relay's view of its node: one local server, never paused."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self.in_flight: dict[str, int] = {}

    def backend(self, server_id: str) -> Backend | None:
        return self._backend if server_id == "ollama" else None

    def server_ids(self) -> list[str]:
        return ["ollama"]

    def paused(self) -> str | None:
        return None

    def in_flight_changed(self) -> None:
        return None


async def ttft(backend: Backend) -> tuple[float, int]:
    """Seconds to the first text chunk, and the number of chunks of the whole answer."""
    t0 = time.perf_counter()
    first = 0.0
    n = 0
    async for chunk in backend.chat(MODEL, [ChatMessage("user", "hello")]):
        if chunk.text and not first:
            first = time.perf_counter() - t0
        n += 1
    return first, n


async def series(make: Callable[[], Awaitable[Backend]], n: int, close_each: bool
                 ) -> list[float]:
    out = []
    backend = await make()
    await ttft(backend)  # warm-up: connection, first-use costs
    for _ in range(n):
        if close_each:
            await backend.aclose()
            backend = await make()
        first, _ = await ttft(backend)
        out.append(first)
    await backend.aclose()
    return out


async def throughput(make: Callable[[], Awaitable[Backend]], streams: int, rounds: int
                     ) -> tuple[float, float]:
    """(answer tokens per second over all streams, median seconds per stream)."""
    backends = [await make() for _ in range(streams)]
    for b in backends:
        await ttft(b)
    durations: list[float] = []

    async def one(b: Backend) -> int:
        total = 0
        for _ in range(rounds):
            t0 = time.perf_counter()
            _, chunks = await ttft(b)
            durations.append(time.perf_counter() - t0)
            total += chunks - 1  # the final chunk carries no token
        return total

    t0 = time.perf_counter()
    counts = await asyncio.gather(*(one(b) for b in backends))
    elapsed = time.perf_counter() - t0
    for b in backends:
        await b.aclose()
    return sum(counts) / elapsed, statistics.median(durations)


def ms(values: list[float]) -> str:
    q = statistics.quantiles(values, n=10)
    return (f"median {statistics.median(values) * 1000:6.2f} ms   p10 {q[0] * 1000:6.2f}   "
            f"p90 {q[-1] * 1000:6.2f}")


async def main(args: argparse.Namespace) -> None:
    answer = " ".join(f"w{i}" for i in range(args.tokens))
    fake = FakeOllama(models=[MODEL], answer=answer, tokens_per_s=1e9, ttft=0.0)
    fake_thread = LoopThread("fake-ollama")
    fake_thread.run(fake.start())

    tmp = Path(tempfile.mkdtemp(prefix="labrouter-bench-"))
    identity = ensure_identity(tmp / "tls", write_private)
    relay_thread = LoopThread("relay")

    async def start_relay() -> tuple[RelaySite, int]:
        local = make_backend(ServerState(id="ollama", url=fake.url), TIMEOUTS)
        server = RelayServer(Host(local), ProofVerifier([KEY]),
                             max_concurrent_per_model=1000)
        site = RelaySite(server, identity.server_context(), 0, host="127.0.0.1")
        return site, await site.start()

    site, port = relay_thread.run(start_relay())
    session = new_session(TIMEOUTS)

    async def direct() -> Backend:
        return make_backend(ServerState(id="ollama", url=fake.url), TIMEOUTS)

    async def relayed() -> Backend:  # one shared session per peer, as RelayConnector does
        return RelayBackend("127.0.0.1", port, identity.fingerprint, "ollama", KEY, TIMEOUTS,
                            session=session)

    async def relayed_fresh() -> Backend:  # a new TLS connection for every request
        return RelayBackend("127.0.0.1", port, identity.fingerprint, "ollama", KEY, TIMEOUTS)

    print(f"labrouter relay benchmark: {args.requests} requests, answers of {args.tokens} "
          f"tokens, fake Ollama with no model delay; Python {sys.version.split()[0]}")
    print("\ntime to first token (sequential requests)")
    d = await series(direct, args.requests, close_each=False)
    r = await series(relayed, args.requests, close_each=False)
    f = await series(relayed_fresh, max(10, args.requests // 4), close_each=True)
    print(f"  direct (httpx, kept-alive)        {ms(d)}")
    print(f"  relay  (TLS, kept-alive)          {ms(r)}")
    print(f"  relay  (new TLS conn each time)   {ms(f)}")
    over = statistics.median(r) - statistics.median(d)
    print(f"  relay overhead, kept-alive: {over * 1000:+.2f} ms per request (median)")
    over_f = statistics.median(f) - statistics.median(d)
    print(f"  relay overhead, new connection: {over_f * 1000:+.2f} ms per request (median)")

    print(f"\nthroughput: concurrent streams, {args.rounds} answers each")
    for n in args.streams:
        dt, dd = await throughput(direct, n, args.rounds)
        rt, rd = await throughput(relayed, n, args.rounds)
        print(f"  {n:3d} streams   direct {dt:9.0f} tok/s ({dd * 1000:6.1f} ms/answer)   "
              f"relay {rt:9.0f} tok/s ({rd * 1000:6.1f} ms/answer)   ratio {rt / dt:4.2f}")

    await session.close()
    relay_thread.run(site.stop())
    relay_thread.run(site.server.host._backend.aclose())  # type: ignore[attr-defined]
    fake_thread.run(fake.stop())
    relay_thread.close()
    fake_thread.close()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=100)
    p.add_argument("--tokens", type=int, default=200)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--streams", type=lambda s: [int(x) for x in s.split(",")],
                   default=[1, 8, 32])
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
