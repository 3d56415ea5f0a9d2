"""The front door with real clients: the `ollama` and `openai` packages pointed at it.

Behind it: the real Asker over two fake Ollama servers, one "own" (reached directly) and
one on a peer reached through the pinned relay, so `auto`, `auto:<route>` and concrete
model names are routed over the whole cluster.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import ollama
import openai
import pytest

from labrouter.app.frontdoor import FrontDoor, FrontDoorSite, check_bind
from labrouter.ask import Asker
from labrouter.core.config import Config, ConfigError, TimeoutConfig
from labrouter.core.peers import ModelInfo, NodeState, Peer, ServerState
from labrouter.core.usage import UsageRecord
from labrouter.relay.client import RelayConnector
from tests.fakes.ollama_server import FakeOllama
from tests.test_relay import KEY, Node, start_node, stop_node

OWN = "qwen3:4b"
REMOTE = "qwen2.5-coder:7b"


@dataclass
class Usage:
    records: list[UsageRecord] = field(default_factory=list)

    def append(self, record: UsageRecord) -> None:
        self.records.append(record)

    def spent_today(self) -> float:
        return 0.0


@dataclass
class Door:
    url: str
    own: FakeOllama
    peer: Node
    usage: Usage


@pytest.fixture
async def door(tmp_path: Path) -> AsyncIterator[Door]:
    own = await FakeOllama(models=[OWN], name="mac").start()
    peer = await start_node(tmp_path, "gpu-box")
    peer.fake.models.clear()
    from tests.fakes import FakeModel

    peer.fake.models[REMOTE] = FakeModel(REMOTE)
    peer.fake.loaded = {REMOTE: 1e12}
    me = Peer(node_id="me", name="mac", is_self=True,
              servers=(ServerState(id="ollama", url=own.url,
                                   models=(ModelInfo(OWN, size=2_400_000_000, params_b=4.0,
                                                     family="qwen3"),),
                                   loaded=(OWN,)),))
    gpu = Peer(node_id="gpu", name="gpu-box", state=NodeState.ALIVE, address="127.0.0.1",
               relay_port=peer.port, cert_fingerprint=peer.identity.fingerprint,
               servers=(ServerState(id="ollama", url="http://127.0.0.1:11434",
                                    models=(ModelInfo(REMOTE, params_b=7.0),)),))
    usage = Usage()
    timeouts = TimeoutConfig(connect=2, first_token=5, gap=5, total=20)
    connector = RelayConnector(KEY, timeouts)
    asker = Asker(Config(), lambda: [me, gpu], usage_log=usage, connector=connector)
    site = FrontDoorSite(FrontDoor(asker, lambda: [me, gpu], Config()), "127.0.0.1", 0)
    port = await site.start()
    try:
        yield Door(f"http://127.0.0.1:{port}", own, peer, usage)
    finally:
        await site.stop()
        await connector.aclose()
        await stop_node(peer)
        await own.stop()


# ------------------------------------------------------------------ ollama client


async def test_ollama_lists_the_cluster_and_the_auto_names(door: Door) -> None:
    client = ollama.AsyncClient(host=door.url)
    names = [m.model for m in (await client.list()).models]
    assert names[:5] == ["auto", "auto:quick", "auto:code", "auto:reasoning", "auto:vision"]
    assert OWN in names and REMOTE in names
    ps = [m.model for m in (await client.ps()).models]
    assert ps == [OWN]
    assert (await client.show(OWN)).capabilities == ["completion"]


async def test_ollama_chat_auto_not_streaming(door: Door) -> None:
    client = ollama.AsyncClient(host=door.url)
    r = await client.chat(model="auto", messages=[{"role": "user", "content": "hi there"}],
                          stream=False)
    assert r.message.content == door.own.answer_for(OWN)
    assert r.done and r.model == OWN
    assert door.usage.records[-1].source == "api:/api/chat"


async def test_ollama_chat_concrete_remote_model_streams_through_the_relay(door: Door) -> None:
    client = ollama.AsyncClient(host=door.url)
    parts = []
    last = None
    async for chunk in await client.chat(
            model=REMOTE, stream=True,
            messages=[{"role": "system", "content": "be brief"},
                      {"role": "user", "content": "first"},
                      {"role": "assistant", "content": "ok"},
                      {"role": "user", "content": "explain this"}]):
        parts.append(chunk.message.content or "")
        last = chunk
    assert "".join(parts) == door.peer.fake.answer_for(REMOTE)
    assert last is not None and last.done and last.eval_count
    sent = [r for r in door.peer.fake.received if r.path == "/api/chat"]
    assert [(m["role"], m["content"]) for m in sent[0].body["messages"]] == [
        ("system", "be brief"), ("user", "first"), ("assistant", "ok"),
        ("user", "explain this")]
    assert door.own.received == [] or all(r.path != "/api/chat" for r in door.own.received)


async def test_ollama_generate_with_a_forced_route(door: Door) -> None:
    client = ollama.AsyncClient(host=door.url)
    r = await client.generate(model="auto:code", prompt="def f(): pass", stream=False)
    assert r.response == door.peer.fake.answer_for(REMOTE)  # the coder is on the peer
    parts = [c.response async for c in await client.generate(model="auto:quick",
                                                               prompt="hello", stream=True)]
    assert "".join(parts) == door.own.answer_for(OWN)
    assert door.usage.records[-1].source == "api:/api/generate"


async def test_ollama_errors(door: Door) -> None:
    client = ollama.AsyncClient(host=door.url)
    with pytest.raises(ollama.ResponseError) as info:
        await client.chat(model="llama9:70b", messages=[{"role": "user", "content": "x"}],
                          stream=False)
    assert info.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as info:
        await client.chat(model="auto:nope", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 404
    version = await client._request_raw("GET", "/api/version")  # type: ignore[attr-defined]
    assert "version" in version.json()


# ------------------------------------------------------------------ openai client


async def test_openai_models(door: Door) -> None:
    client = openai.AsyncOpenAI(base_url=door.url + "/v1", api_key="unused")
    ids = [m.id async for m in client.models.list()]
    assert "auto" in ids and "auto:code" in ids and OWN in ids and REMOTE in ids
    assert (await client.models.retrieve(REMOTE)).owned_by == "gpu-box"
    await client.close()


async def test_openai_chat_not_streaming(door: Door) -> None:
    client = openai.AsyncOpenAI(base_url=door.url + "/v1", api_key="unused")
    r = await client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "hello"}])
    assert r.choices[0].message.content == door.own.answer_for(OWN)
    assert r.model == OWN and r.usage is not None and r.usage.completion_tokens > 0
    assert door.usage.records[-1].source == "api:/v1/chat/completions"
    await client.close()


async def test_openai_chat_streaming_concrete_remote_with_usage(door: Door) -> None:
    client = openai.AsyncOpenAI(base_url=door.url + "/v1", api_key="unused")
    stream = await client.chat.completions.create(
        model=REMOTE, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "developer", "content": "terse"},
                  {"role": "user", "content": [{"type": "text", "text": "review this"}]}])
    text = []
    usage = None
    finish = None
    async for chunk in stream:
        if chunk.choices:
            text.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            usage = chunk.usage
    assert "".join(text) == door.peer.fake.answer_for(REMOTE)
    assert finish == "stop" and usage is not None and usage.total_tokens > 0
    await client.close()


async def test_a_cut_off_answer_says_length_in_both_dialects(door: Door) -> None:
    # issue 12: the server stopped at max_tokens; the client must be able to tell
    oc = openai.AsyncOpenAI(base_url=door.url + "/v1", api_key="unused")
    r = await oc.chat.completions.create(model=OWN, max_tokens=2,
                                         messages=[{"role": "user", "content": "hello"}])
    assert r.choices[0].finish_reason == "length" and r.usage is not None
    assert r.usage.completion_tokens == 2  # as served
    finish = None
    async for chunk in await oc.chat.completions.create(
            model=OWN, max_tokens=2, stream=True,
            messages=[{"role": "user", "content": "hello"}]):
        if chunk.choices:
            finish = chunk.choices[0].finish_reason or finish
    assert finish == "length"
    full = await oc.chat.completions.create(model=OWN,
                                            messages=[{"role": "user", "content": "hello"}])
    assert full.choices[0].finish_reason == "stop"
    await oc.close()
    client = ollama.AsyncClient(host=door.url)
    cut = await client.chat(model=OWN, messages=[{"role": "user", "content": "hi"}],
                            options={"num_predict": 2}, stream=False)
    assert cut.done_reason == "length" and cut.eval_count == 2
    last = None
    async for chunk in await client.generate(model=OWN, prompt="hi", stream=True,
                                             options={"num_predict": 2}):
        last = chunk
    assert last is not None and last.done_reason == "length"
    whole = await client.chat(model=OWN, messages=[{"role": "user", "content": "hi"}],
                              stream=False)
    assert whole.done_reason == "stop"
    assert [r.finish_reason for r in door.usage.records] == ["length", "length", "stop",
                                                             "length", "length", "stop"]


async def test_openai_image_as_data_url_only(door: Door) -> None:
    client = openai.AsyncOpenAI(base_url=door.url + "/v1", api_key="unused")
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="auto", messages=[{"role": "user", "content": [
            {"type": "text", "text": "what is this"},
            {"type": "image_url", "image_url": {"url": "http://example.com/cat.png"}}]}])
    png = base64.b64encode(b"\x89PNG fake").decode()
    r = await client.chat.completions.create(model="auto", messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}]}])
    assert r.choices[0].message.content
    await client.close()


async def test_openai_unknown_model_is_404(door: Door) -> None:
    client = openai.AsyncOpenAI(base_url=door.url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        await client.chat.completions.create(model="gpt-9",
                                             messages=[{"role": "user", "content": "x"}])
    await client.close()


# ------------------------------------------------------------------ guard


async def test_web_pages_and_foreign_hosts_are_refused(door: Door) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(door.url + "/api/tags", headers={"Host": "evil.example"}) as r:
            assert r.status == 403
        async with s.post(door.url + "/api/chat", headers={"Origin": "https://evil.example"},
                          data=json.dumps({"model": "auto", "messages": []})) as r:
            assert r.status == 403
        # a local web page too: only origins on [api] allowed_origins (none by default)
        async with s.get(door.url + "/api/tags",
                         headers={"Origin": "http://localhost:3000"}) as r:
            assert r.status == 403
        async with s.get(door.url + "/") as r:
            assert await r.text() == "Ollama is running"
    assert door.own.received == []


def test_a_lan_bind_needs_explicit_permission() -> None:
    check_bind("127.0.0.1", False)
    check_bind("::1", False)
    with pytest.raises(ConfigError, match="without a"):
        check_bind("0.0.0.0", False)
    check_bind("0.0.0.0", True)
