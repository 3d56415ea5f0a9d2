"""The relay over real TLS on 127.0.0.1: pinning, key proof, replay, pause, limits, streaming.

Each "node" here is a RelayServer in front of a FakeOllama, reached by a RelayBackend that
pins the node's certificate fingerprint, exactly as a peer daemon would.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from labrouter.app.paths import write_private
from labrouter.backends import make_backend
from labrouter.backends.base import Backend, ChatMessage, ChatOptions
from labrouter.core.config import TimeoutConfig
from labrouter.core.errors import (
    BackendTimeout,
    ModelNotFound,
    Refused,
    ServerFailure,
    Unreachable,
)
from labrouter.core.peers import ServerState
from labrouter.relay.auth import ProofVerifier, RequestSigner
from labrouter.relay.client import RelayBackend
from labrouter.relay.server import RelayServer, RelaySite
from labrouter.relay.tls import RelayIdentity, ensure_identity
from tests.fakes.ollama_server import FakeOllama

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
FAST = TimeoutConfig(connect=2.0, first_token=5.0, gap=5.0, total=20.0)


@dataclass
class Host:
    """A RelayHost: the node's own servers, its pause state and in-flight table."""

    backends: dict[str, Backend]
    reason: str | None = None
    in_flight: dict[str, int] = field(default_factory=dict)
    changes: int = 0
    asked: list[str] = field(default_factory=list)

    def backend(self, server_id: str) -> Backend | None:
        self.asked.append(server_id)
        return self.backends.get(server_id)

    def server_ids(self) -> list[str]:
        return list(self.backends)

    def paused(self) -> str | None:
        return self.reason

    def in_flight_changed(self) -> None:
        self.changes += 1


@dataclass
class Node:
    fake: FakeOllama
    host: Host
    identity: RelayIdentity
    site: RelaySite
    port: int
    server: RelayServer

    def client(self, key: bytes = KEY, fingerprint: str | None = None,
               timeouts: TimeoutConfig = FAST) -> RelayBackend:
        return RelayBackend("127.0.0.1", self.port, fingerprint or self.identity.fingerprint,
                            "ollama", key, timeouts, peer_name="gpu-box")


async def start_node(tmp: Path, name: str = "gpu", max_per_model: int = 2,
                     **fake_kw: object) -> Node:
    fake = FakeOllama(models=["qwen3:4b", "llava:7b"], name=name, **fake_kw)  # type: ignore[arg-type]
    await fake.start()
    backend = make_backend(ServerState(id="ollama", url=fake.url), FAST)
    host = Host({"ollama": backend})
    identity = ensure_identity(tmp / name / "tls", write_private, common_name=name)
    server = RelayServer(host, ProofVerifier([KEY]), max_concurrent_per_model=max_per_model)
    site = RelaySite(server, identity.server_context(), 0, host="127.0.0.1")
    port = await site.start()
    return Node(fake, host, identity, site, port, server)


async def stop_node(node: Node) -> None:
    await node.site.stop()
    for b in node.host.backends.values():
        await b.aclose()
    await node.fake.stop()


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    n = await start_node(tmp_path)
    yield n
    await stop_node(n)


def chats(fake: FakeOllama) -> list[object]:
    return [r for r in fake.received if r.path == "/api/chat"]


async def collect(backend: Backend, model: str = "qwen3:4b", text: str = "hello") -> str:
    parts = []
    async for chunk in backend.chat(model, [ChatMessage("user", text)], ChatOptions()):
        parts.append(chunk.text)
    return "".join(parts)


async def test_pinned_client_reaches_the_relay(node: Node) -> None:
    client = node.client()
    try:
        assert await client.version()
        assert {m.name for m in await client.list_models()} == {"qwen3:4b", "llava:7b"}
        assert set(await client.loaded_models()) == {"qwen3:4b", "llava:7b"}
        info = await client.show("llava:7b")
        assert info.name == "llava:7b"
        answer = await collect(client, text="what is a relay?")
    finally:
        await client.aclose()
    assert answer == node.fake.answer_for("qwen3:4b")
    sent = chats(node.fake)
    assert len(sent) == 1
    assert sent[0].body["messages"][-1]["content"] == "what is a relay?"  # type: ignore[attr-defined]
    assert node.host.in_flight == {}  # counted while serving, released after
    assert node.host.changes == 2


async def test_wrong_fingerprint_is_refused_before_any_prompt_is_sent(node: Node,
                                                                      tmp_path: Path) -> None:
    impostor = ensure_identity(tmp_path / "impostor" / "tls", write_private)
    client = node.client(fingerprint=impostor.fingerprint)
    try:
        with pytest.raises(Unreachable, match="not the one this peer announced"):
            await collect(client, text="my secret text")
    finally:
        await client.aclose()
    assert node.host.asked == []  # the relay never saw a request
    assert node.fake.received == []  # and nothing reached the model server


async def test_a_malformed_fingerprint_never_connects(node: Node) -> None:
    client = node.client(fingerprint="not-a-fingerprint")
    with pytest.raises(Unreachable, match="no valid certificate fingerprint"):
        await collect(client)
    await client.aclose()
    assert node.host.asked == [] and node.fake.received == []


async def _raw_post(node: Node, path: str, body: bytes,
                    headers: dict[str, str]) -> tuple[int, dict[str, object]]:
    pin = aiohttp.Fingerprint(bytes.fromhex(node.identity.fingerprint))
    async with aiohttp.ClientSession() as s, s.post(
            f"https://127.0.0.1:{node.port}{path}", data=body, headers=headers,
            ssl=pin) as r:
        return r.status, json.loads(await r.text())


async def test_a_request_without_proof_gets_401(node: Node) -> None:
    body = json.dumps({"server": "ollama", "model": "qwen3:4b",
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    status, data = await _raw_post(node, "/relay/v1/chat", body,
                                   {"Content-Type": "application/json"})
    assert status == 401
    assert data["error"]["type"] == "Unauthorized"  # type: ignore[index]
    assert node.host.asked == [] and node.fake.received == []


async def test_a_tampered_body_gets_401(node: Node) -> None:
    signer = RequestSigner.from_cluster_key(KEY)
    signed = b'{"server":"ollama"}'
    headers = signer.headers("POST", "/relay/v1/models", signed, time.time())
    status, _ = await _raw_post(node, "/relay/v1/models", b'{"server":"other"}', headers)
    assert status == 401


async def test_a_different_cluster_key_is_refused_with_a_hint(node: Node) -> None:
    client = node.client(key=OTHER_KEY)
    try:
        with pytest.raises(Refused, match="cluster keys differ") as info:
            await collect(client)
    finally:
        await client.aclose()
    assert "key show" in info.value.hint
    assert node.fake.received == []


async def test_a_replayed_request_is_refused(node: Node) -> None:
    signer = RequestSigner.from_cluster_key(KEY)
    body = b'{"server":"ollama"}'
    headers = {"Content-Type": "application/json",
               **signer.headers("POST", "/relay/v1/models", body, time.time())}
    first, _ = await _raw_post(node, "/relay/v1/models", body, headers)
    again, data = await _raw_post(node, "/relay/v1/models", body, headers)
    assert first == 200
    assert again == 401
    assert "replayed" in data["error"]["message"]  # type: ignore[index]


async def test_a_stranger_is_refused_before_the_body_is_read(node: Node) -> None:
    """Fresh-looking headers and a huge announced body: 401 at once, nothing buffered.

    Anyone can write a current timestamp; only the proof over the body's digest, checked
    from the headers, keeps a stranger from making the relay buffer 64 MiB per connection.
    """
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port, ssl=ctx)
    try:
        head = (f"POST /relay/v1/chat HTTP/1.1\r\nHost: x\r\n"
                f"Content-Type: application/json\r\nContent-Length: {60 * 2**20}\r\n"
                f"X-Labrouter-Time: {int(time.time() * 1000)}\r\n"
                f"X-Labrouter-Nonce: {'ab' * 16}\r\nX-Labrouter-Proof: {'0' * 64}\r\n"
                f"X-Labrouter-Body: {'1' * 64}\r\n\r\n")
        writer.write(head.encode() + b"{" * 1024)  # and never the rest
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 5)
        assert status.split()[1] == b"401"
    finally:
        writer.close()
    assert node.fake.received == []


async def test_a_key_holders_deeply_nested_body_is_400_not_500(node: Node) -> None:
    signer = RequestSigner.from_cluster_key(KEY)
    body = b"[" * 100_000
    headers = signer.headers("POST", "/relay/v1/models", body, time.time())
    status, data = await _raw_post(node, "/relay/v1/models", body, headers)
    assert status == 400 and "JSON" in data["error"]["message"]  # type: ignore[index]


async def test_a_stale_request_is_refused(node: Node) -> None:
    signer = RequestSigner.from_cluster_key(KEY)
    body = b'{"server":"ollama"}'
    headers = signer.headers("POST", "/relay/v1/models", body, time.time() - 3600)
    status, data = await _raw_post(node, "/relay/v1/models", body, headers)
    assert status == 401 and "clock" in data["error"]["message"]  # type: ignore[index]


async def test_a_paused_node_answers_503_with_its_reason(node: Node) -> None:
    node.host.reason = "rented out until 18:00"
    client = node.client()
    try:
        with pytest.raises(Refused, match="rented out until 18:00"):
            await collect(client)
    finally:
        await client.aclose()
    assert node.fake.received == []
    status, data = await _raw_post(
        node, "/relay/v1/chat", b'{"server":"ollama","model":"qwen3:4b","messages":[]}',
        {**RequestSigner.from_cluster_key(KEY).headers(
            "POST", "/relay/v1/chat", b'{"server":"ollama","model":"qwen3:4b","messages":[]}',
            time.time())})
    assert status == 503 and data["error"]["type"] == "Refused"  # type: ignore[index]


async def test_429_when_the_models_limit_is_full(tmp_path: Path) -> None:
    node = await start_node(tmp_path, max_per_model=1, ttft=1.0)
    first = node.client()
    second = node.client()
    try:
        task = asyncio.create_task(collect(first))
        for _ in range(200):  # until the first request is being served
            if node.host.in_flight.get("ollama"):
                break
            await asyncio.sleep(0.01)
        assert node.host.in_flight == {"ollama": 1}
        with pytest.raises(Refused, match="busy"):
            await collect(second)
        # another model of the same server is not limited by this one
        assert await collect(second, model="llava:7b")
        assert await task == node.fake.answer_for("qwen3:4b")
        assert node.host.in_flight == {}
        assert await collect(second)  # free again
    finally:
        await first.aclose()
        await second.aclose()
        await stop_node(node)


async def test_backend_errors_cross_the_relay_as_their_own_types(node: Node) -> None:
    client = node.client()
    try:
        with pytest.raises(ModelNotFound):
            await collect(client, model="nope:1b")
        node.fake.set_fault("error_mid", "qwen3:4b", times=1)
        got: list[str] = []
        with pytest.raises(ServerFailure):
            async for chunk in client.chat("qwen3:4b", [ChatMessage("user", "x")]):
                got.append(chunk.text)
        assert got  # the text before the failure did arrive
        with pytest.raises(Unreachable, match="no server"):
            other = RelayBackend("127.0.0.1", node.port, node.identity.fingerprint, "lmstudio",
                                 KEY, FAST)
            try:
                await collect(other)
            finally:
                await other.aclose()
    finally:
        await client.aclose()


async def test_a_hung_server_times_out_through_the_relay(tmp_path: Path) -> None:
    node = await start_node(tmp_path)
    node.fake.set_fault("hang", "qwen3:4b")
    quick = TimeoutConfig(connect=2.0, first_token=0.5, gap=0.5, total=5.0)
    client = node.client(timeouts=quick)
    try:
        with pytest.raises(BackendTimeout):
            await collect(client)
    finally:
        await client.aclose()
        await stop_node(node)


async def test_nothing_listening_is_unreachable(tmp_path: Path) -> None:
    from tests.fakes import free_port

    ident = ensure_identity(tmp_path / "tls", write_private)
    client = RelayBackend("127.0.0.1", free_port(), ident.fingerprint, "ollama", KEY, FAST)
    with pytest.raises(Unreachable, match="cannot reach"):
        await collect(client)
    await client.aclose()


async def test_a_request_served_for_a_peer_is_logged_under_the_peers_name(node: Node) -> None:
    from labrouter.core.usage import UsageRecord, summarise

    served: list[UsageRecord] = []
    node.server.on_served = served.append
    node.server.node_name = "gpu"
    named = RelayBackend("127.0.0.1", node.port, node.identity.fingerprint, "ollama", KEY,
                         FAST, peer_name="gpu", requester="mac\x1b[31m", route="code")
    old = node.client()  # an older peer: sends no name, so its address stands in
    try:
        assert await collect(named) == node.fake.answer_for("qwen3:4b")
        with pytest.raises(ModelNotFound):
            await collect(named, model="nope:1b")
        assert await collect(old)
    finally:
        await named.aclose()
        await old.aclose()
    ok, failed, anon = served
    assert (ok.served_for, ok.node, ok.server, ok.model, ok.route, ok.outcome, ok.source) == \
        ("mac[31m", "gpu", "ollama", "qwen3:4b", "code", "ok", "relay")
    assert ok.completion_tokens > 0 and ok.finish_reason == "stop"
    assert ok.duration_ms >= ok.ttft_ms > 0
    assert (failed.outcome, failed.model, failed.completion_tokens) == ("failed", "nope:1b", 0)
    assert anon.served_for == "127.0.0.1" and anon.route == ""
    s = summarise(served)
    assert s.requests == 0 and s.served_for_requests == 3  # work for others, not ours
    assert s.by_node["gpu"].peer_requests == 3


async def test_a_peer_that_hangs_up_is_logged_as_cancelled(tmp_path: Path) -> None:
    from labrouter.core.usage import UsageRecord

    node = await start_node(tmp_path, tokens_per_s=20.0,
                            answer="one two three four five six seven eight nine ten " * 4)
    served: list[UsageRecord] = []
    node.server.on_served = served.append
    client = RelayBackend("127.0.0.1", node.port, node.identity.fingerprint, "ollama", KEY,
                          FAST, peer_name="gpu", requester="mac")
    try:
        stream = client.chat("qwen3:4b", [ChatMessage("user", "count")], ChatOptions())
        assert (await anext(aiter(stream))).text
        await stream.aclose()  # type: ignore[attr-defined]
        deadline = time.monotonic() + 10
        while not served and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
    finally:
        await client.aclose()
        await stop_node(node)
    (r,) = served
    assert (r.served_for, r.outcome) == ("mac", "cancelled")
    assert r.completion_tokens > 0  # what was sent before the hang-up, roughly counted
