"""What `[timeouts]` mean, decided once for both HTTP clients (``backends/deadlines.py``).

``total`` counts from the request's start, whatever the time went to, the caller's own
time between chunks included; ``first_token`` from the start; ``gap`` from each wait's
start. The unit tests run on a hand-moved clock; the end-to-end test checks that the
direct client (httpx) and the relay client (aiohttp) both keep that meaning.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from labrouter.backends.base import Backend, ChatMessage
from labrouter.backends.deadlines import Deadlines, Expired
from labrouter.backends.failures import Failure, classify
from labrouter.backends.ollama import OllamaBackend
from labrouter.core.config import TimeoutConfig
from labrouter.core.errors import BackendTimeout
from tests.fakes import FakeModel
from tests.fakes.ollama_server import FakeOllama
from tests.test_relay import KEY, start_node, stop_node

T = TimeoutConfig(connect=1.0, first_token=10.0, gap=3.0, total=20.0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_first_token_from_the_start_gap_from_each_wait_total_caps_both() -> None:
    clock = Clock()
    dl = Deadlines.begin(T, clock)
    assert dl.next() == (110.0, "first_token")
    clock.now = 105.0
    assert dl.next() == (110.0, "first_token")  # from the start, not from this wait
    dl.got_token()
    assert dl.next() == (108.0, "gap")  # from this wait
    clock.now = 118.5
    assert dl.next() == (120.0, "total")  # the total comes first


async def test_a_passed_total_expires_even_when_the_data_is_there() -> None:
    clock = Clock()
    dl = Deadlines.begin(T, clock)
    dl.got_token()
    clock.now = 121.0  # the caller spent the time, not the server

    async def ready() -> str:
        return "buffered line"

    with pytest.raises(Expired) as info:
        await dl.wait(ready())
    assert info.value.which == "total"


def test_one_table_for_both_libraries() -> None:
    import aiohttp
    import httpx

    assert classify(httpx.ConnectTimeout("x")) is Failure.CONNECT_TIMEOUT
    assert classify(httpx.ReadTimeout("x")) is Failure.READ_TIMEOUT
    assert classify(httpx.RemoteProtocolError("x")) is Failure.BROKEN_HTTP
    assert classify(aiohttp.ServerDisconnectedError()) is Failure.CONNECTION_LOST
    assert classify(aiohttp.ClientPayloadError("x")) is Failure.BROKEN_HTTP
    assert classify(ValueError("a bug")) is None


async def _slow_reader(backend: Backend) -> None:
    async for _chunk in backend.chat("qwen3:4b", [ChatMessage("user", "hi")]):
        await asyncio.sleep(0.1)  # the caller's own time: never the server's silence


@pytest.mark.parametrize("client", ["direct", "relay"])
async def test_total_counts_the_callers_time_on_both_clients(client: str,
                                                             tmp_path: Path) -> None:
    # the server streams at once; the caller takes 0.1 s per chunk, far below the gap;
    # 60 chunks would take 6 s, so only the total of 1 s can stop it
    timeouts = TimeoutConfig(connect=2.0, first_token=5.0, gap=5.0, total=1.0)
    long = FakeModel("qwen3:4b", answer="word " * 60)
    if client == "direct":
        async with FakeOllama(models=[long], tokens_per_s=0) as srv:
            backend: Backend = OllamaBackend(srv.url, timeouts)
            with pytest.raises(BackendTimeout, match="timeouts.total"):
                await _slow_reader(backend)
            await backend.aclose()
        return
    node = await start_node(tmp_path)
    node.fake.models["qwen3:4b"] = long
    node.fake.tokens_per_s = 0
    relay = node.client(KEY, timeouts=timeouts)
    try:
        with pytest.raises(BackendTimeout, match="timeouts.total"):
            await _slow_reader(relay)
    finally:
        await relay.aclose()
        await stop_node(node)
