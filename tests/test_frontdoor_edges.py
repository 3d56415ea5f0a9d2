"""Front door edge cases: a restart mid-answer, a client that hangs up, nothing up at all."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import ollama
import openai
import pytest

from labrouter.app.frontdoor import FrontDoor, FrontDoorSite
from labrouter.ask import Asker, AskEvent, AskRequest, Text
from labrouter.core.config import Config, RoutingConfig
from labrouter.core.errors import NoCandidate
from labrouter.core.peers import ModelInfo, Peer, ServerState
from tests.fakes.ollama_server import FakeOllama

MODEL = "qwen3:4b"


JSON = {"Content-Type": "application/json"}


async def _door(asker: Any, peers: Callable[[], list[Peer]]) -> tuple[FrontDoorSite, str]:
    site = FrontDoorSite(FrontDoor(asker, peers, Config()), "127.0.0.1", 0)
    port = await site.start()
    return site, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("continued", [False, True])
async def test_a_restart_mid_answer_is_marked_in_the_stream(continued: bool) -> None:
    async with FakeOllama(models=[MODEL], name="one") as one, \
            FakeOllama(models=[MODEL], name="two", loaded=[]) as two:
        one.set_fault("error_mid", MODEL, times=1)
        peers = [Peer(node_id="me", name="me", is_self=True, servers=(
            ServerState(id="one", url=one.url, models=(ModelInfo(MODEL),), loaded=(MODEL,)),
            ServerState(id="two", url=two.url, models=(ModelInfo(MODEL),))))]
        asker = Asker(Config(routing=RoutingConfig(continue_stalled=continued)), lambda: peers)
        site, url = await _door(asker, lambda: peers)
        try:
            client = ollama.AsyncClient(host=url)
            text = "".join([c.message.content or "" async for c in await client.chat(
                model=MODEL, stream=True, messages=[{"role": "user", "content": "hi"}])])
        finally:
            await site.stop()
            await asker.connector.aclose()  # type: ignore[attr-defined]
    assert text.endswith(two.answer_for(MODEL))
    if continued:  # the next model goes on from the words sent: one answer, no note
        assert "[labrouter:" not in text
        partial = " ".join(one.answer_for(MODEL).split(" ")[:3])  # the 3 words before it broke
        assert text == partial + two.answer_for(MODEL)
    else:
        assert "[labrouter: the answer continues from" in text


class HangingAsker:
    """Says one word, then waits forever; records whether it was cancelled."""

    def __init__(self) -> None:
        self.cancelled = asyncio.Event()

    async def stream(self, req: AskRequest) -> AsyncIterator[AskEvent]:
        yield Text("Hello")
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        raise AssertionError("not reached")


@pytest.mark.parametrize("path,body", [
    ("/api/chat", {"model": "auto", "messages": [{"role": "user", "content": "x"}]}),
    ("/v1/chat/completions", {"model": "auto", "stream": True,
                              "messages": [{"role": "user", "content": "x"}]}),
])
async def test_a_client_that_hangs_up_cancels_its_request(path: str,
                                                          body: dict[str, Any]) -> None:
    asker = HangingAsker()
    site, url = await _door(asker, list)
    try:
        async with aiohttp.ClientSession() as s:
            resp = await s.post(url + path, data=json.dumps(body), headers=JSON)
            assert resp.status == 200
            assert b"Hello" in await resp.content.readany()
            resp.close()  # hang up mid-answer
        await asyncio.wait_for(asker.cancelled.wait(), 5)
    finally:
        await site.stop()


class NobodyAsker:
    async def stream(self, req: AskRequest) -> AsyncIterator[AskEvent]:
        raise NoCandidate("no live server has a model for this request",
                          hint="Run `labrouter nodes`.")
        yield Text("")  # an async generator


async def test_nothing_up_is_503_for_auto() -> None:
    site, url = await _door(NobodyAsker(), list)
    try:
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.InternalServerError) as info:
            await client.chat.completions.create(model="auto",
                                                 messages=[{"role": "user", "content": "x"}])
        assert info.value.status_code == 503
        await client.close()
        with pytest.raises(ollama.ResponseError) as oinfo:
            await ollama.AsyncClient(host=url).chat(
                model="auto", messages=[{"role": "user", "content": "x"}])
        assert oinfo.value.status_code == 503 and "labrouter nodes" in oinfo.value.error
    finally:
        await site.stop()


async def test_bad_requests_are_400() -> None:
    site, url = await _door(NobodyAsker(), list)
    try:
        async with aiohttp.ClientSession() as s:
            for path, body in (("/api/chat", "not json"),
                               ("/api/chat", json.dumps({"model": "auto", "messages": []})),
                               ("/api/chat", json.dumps({"messages": [
                                   {"role": "user", "content": "x"}]})),
                               ("/api/generate", json.dumps({"model": "auto"})),
                               ("/v1/chat/completions", json.dumps({"model": "auto", "messages": [
                                   {"role": "assistant", "content": "x"}]})),
                               # nested too deep for json.loads (RecursionError), not a 500
                               ("/api/chat", "[" * 100_000),
                               ("/v1/chat/completions", "[" * 100_000)):
                async with s.post(url + path, data=body, headers=JSON) as r:
                    assert r.status == 400, (path, body)
    finally:
        await site.stop()
