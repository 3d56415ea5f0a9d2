"""GossipService over real UDP sockets on 127.0.0.1 (in-process, no broadcast)."""

from __future__ import annotations

import asyncio
import socket
import time

from labrouter.cluster import wire
from labrouter.cluster.gossip import (
    GossipNode,
    GossipService,
    TransportOptions,
    broadcast_addresses,
)
from labrouter.core.peers import NodeState, Peer, PeerTable

KEY = bytes(range(32))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service(i: int, port: int, peer_port: int, loss: float = 0.0) -> GossipService:
    node_id = f"{i:032x}"
    me = Peer(node_id=node_id, name=f"n{i}", is_self=True, port=port)
    table = PeerTable(interval=0.05)
    table.set_self(me)
    node = GossipNode(node_id, i, keys=lambda: {wire.key_id(KEY): KEY}, active_key=lambda: KEY,
                      table=table, self_peer=lambda: me, interval=0.05)
    opts = TransportOptions(bind="127.0.0.1", port=port, broadcast=False,
                            peers=(f"127.0.0.1:{peer_port}",), loss=loss, seed=i)
    return GossipService(node, opts, time.monotonic, time.time, seed=i)


async def wait_until(cond, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "timed out"
        await asyncio.sleep(0.01)


async def test_two_services_find_each_other_and_goodbye() -> None:
    pa, pb = free_port(), free_port()
    a, b = service(1, pa, pb), service(2, pb, pa)
    await a.start()
    await b.start()
    try:
        peer_b = f"{2:032x}"
        await wait_until(lambda: peer_b in a.node.table.peers and
                         a.node.table.peers[peer_b].state == NodeState.ALIVE)
        assert a.node.table.peers[peer_b].port == pb
        assert a.stats.sent > 0 and a.stats.received > 0
    finally:
        await b.stop(goodbye=True)
    await wait_until(lambda: a.node.table.peers[f"{2:032x}"].state == NodeState.LEFT)
    await a.stop()


async def test_loss_injection_and_flood_limit() -> None:
    pa, pb = free_port(), free_port()
    a = service(1, pa, pb, loss=1.0)
    b = service(2, pb, pa)
    await a.start()
    await b.start()
    try:
        await wait_until(lambda: a.stats.lost >= 5)
        assert a.stats.received == 0 and not [p for p in a.node.table.peers.values()
                                              if not p.is_self]
        # a flood from one source: the token bucket drops it before any crypto
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(400):
                s.sendto(b"garbage" * 10, ("127.0.0.1", pb))
        await wait_until(lambda: b.stats.rate_limited > 0)
    finally:
        await a.stop(goodbye=False)
        await b.stop(goodbye=False)


def test_broadcast_addresses_never_raise() -> None:
    addrs = broadcast_addresses()
    assert addrs and all(a.count(".") == 3 for a in addrs)
