"""The router over the relay: a paused peer answers 503 and the Asker moves on."""

from __future__ import annotations

from pathlib import Path

import pytest

from labrouter.app.paths import write_private
from labrouter.ask import Asker, AskRequest
from labrouter.core.config import Config, TimeoutConfig
from labrouter.core.errors import Refused
from labrouter.core.peers import ModelInfo, NodeState, Peer, ServerState
from labrouter.relay.client import RelayConnector
from labrouter.relay.tls import ensure_identity
from tests.test_relay import KEY, Node, start_node, stop_node

MODEL = "qwen3:4b"


def remote(node: Node, node_id: str, name: str, fingerprint: str | None = None) -> Peer:
    server = ServerState(id="ollama", url="http://127.0.0.1:11434",
                         models=(ModelInfo(MODEL, params_b=4.0),), loaded=(MODEL,))
    return Peer(node_id=node_id, name=name, state=NodeState.ALIVE, address="127.0.0.1",
                relay_port=node.port,
                cert_fingerprint=fingerprint or node.identity.fingerprint, servers=(server,))


async def test_a_paused_peer_answers_503_and_the_router_moves_on(tmp_path: Path) -> None:
    a = await start_node(tmp_path, "a-box")
    b = await start_node(tmp_path, "b-box")
    a.host.reason = "rented out"  # the table still says a is free: the destination decides
    peers = [remote(a, "aaaa", "a-box"), remote(b, "bbbb", "b-box")]
    connector = RelayConnector(KEY, TimeoutConfig(connect=2, first_token=5, gap=5, total=20))
    asker = Asker(Config(), lambda: peers, connector=connector)
    try:
        res = await asker.ask(AskRequest("hello there", model=MODEL, source="test"))
    finally:
        await connector.aclose()
        await stop_node(a)
        await stop_node(b)
    assert res.node == "b-box"
    assert res.answer == b.fake.answer_for(MODEL)
    assert any("rented out" in at.reason for at in res.attempts)
    assert a.fake.received == []


async def test_a_spoofed_peer_gets_nothing_and_the_router_moves_on(tmp_path: Path) -> None:
    a = await start_node(tmp_path, "a-box")
    b = await start_node(tmp_path, "b-box")
    impostor = ensure_identity(tmp_path / "impostor", write_private)
    # "a-box" announced a certificate that the device at its address does not hold
    peers = [remote(a, "aaaa", "a-box", impostor.fingerprint), remote(b, "bbbb", "b-box")]
    connector = RelayConnector(lambda: KEY)
    asker = Asker(Config(), lambda: peers, connector=connector)
    try:
        res = await asker.ask(AskRequest("my private text", model=MODEL, source="test"))
    finally:
        await connector.aclose()
        await stop_node(a)
        await stop_node(b)
    assert res.node == "b-box"
    assert a.fake.received == [] and a.host.asked == []


async def test_own_servers_are_reached_directly(tmp_path: Path) -> None:
    from tests.fakes.ollama_server import FakeOllama

    async with FakeOllama(models=[MODEL]) as fake:
        me = Peer(node_id="self", name="me", is_self=True,
                  servers=(ServerState(id="ollama", url=fake.url,
                                       models=(ModelInfo(MODEL),), loaded=(MODEL,)),))
        connector = RelayConnector(KEY)
        backend = connector(type("C", (), {"peer": me, "server": me.servers[0]})())
        try:
            assert backend.url.startswith(fake.url)
        finally:
            await backend.aclose()
            await connector.aclose()


async def test_a_peer_without_a_relay_is_never_dialled_directly() -> None:
    from labrouter.core.errors import Unreachable

    server = ServerState(id="ollama", url="http://127.0.0.1:11434",
                         models=(ModelInfo(MODEL),))
    peer = Peer(node_id="x", name="old-box", address="127.0.0.1", servers=(server,))
    connector = RelayConnector(KEY)
    backend = connector(type("C", (), {"peer": peer, "server": server})())
    with pytest.raises(Unreachable, match="no relay"):
        await backend.list_models()
    await connector.aclose()


async def test_the_cli_connector_reads_the_keyring_file(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from labrouter.app.paths import resolve_paths
    from labrouter.app.runtime import keyring_key
    from labrouter.cluster.keys import Keyring, save_keyring

    node = await start_node(tmp_path, "gpu-box")
    paths = resolve_paths(env={"LABROUTER_HOME": str(tmp_path / "cli")})
    ring = Keyring()
    ring.add(KEY)
    save_keyring(paths.keyring_file, ring, write_private)
    ctx = SimpleNamespace(paths=paths, config=Config())
    connector = RelayConnector(keyring_key(ctx), Config().timeouts)  # type: ignore[arg-type]
    peer = remote(node, "gggg", "gpu-box")
    try:
        backend = connector(SimpleNamespace(peer=peer, server=peer.servers[0]))
        assert {m.name for m in await backend.list_models()} == {"qwen3:4b", "llava:7b"}
        # without a key file, a peer is refused with a hint instead of being asked unsigned
        empty = RelayConnector(keyring_key(SimpleNamespace(  # type: ignore[arg-type]
            paths=resolve_paths(env={"LABROUTER_HOME": str(tmp_path / "nokey")}),
            config=Config())), Config().timeouts)
        with pytest.raises(Refused, match="no cluster key"):
            await empty(SimpleNamespace(peer=peer, server=peer.servers[0])).list_models()
        await empty.aclose()
    finally:
        await connector.aclose()
        await stop_node(node)
