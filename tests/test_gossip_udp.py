"""GossipService over real UDP sockets on 127.0.0.1 (in-process, no broadcast)."""

from __future__ import annotations

import asyncio
import socket
import time

from labrouter.cluster import wire
from labrouter.cluster.interfaces import broadcast_addresses
from labrouter.cluster.protocol import GossipNode
from labrouter.cluster.service import GossipService
from labrouter.cluster.udp import TransportOptions, UdpTransport, is_loopback
from labrouter.core.peers import NodeState, Peer, PeerTable

KEY = bytes(range(32))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def drop_everything(transport: UdpTransport) -> list[int]:
    """Loss injection for a test: wraps the transport's handler; returns the drop counter."""
    lost = [0]

    def dropped(data: bytes, src: tuple[str, int]) -> None:
        lost[0] += 1

    transport.handler = dropped
    return lost


def service(i: int, port: int, peer_port: int) -> GossipService:
    node_id = f"{i:032x}"
    me = Peer(node_id=node_id, name=f"n{i}", is_self=True, port=port)
    table = PeerTable(interval=0.05)
    table.set_self(me)
    node = GossipNode(node_id, i, keys=lambda: {wire.key_id(KEY): KEY}, active_key=lambda: KEY,
                      table=table, self_peer=lambda: me, interval=0.05)
    opts = TransportOptions(bind="127.0.0.1", port=port, broadcast=False,
                            peers=(f"127.0.0.1:{peer_port}",))
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
    a = service(1, pa, pb)
    b = service(2, pb, pa)
    lost = drop_everything(a.transport)
    await a.start()
    await b.start()
    try:
        await wait_until(lambda: lost[0] >= 5)
        assert not [p for p in a.node.table.peers.values() if not p.is_self]
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


def test_loopback_only_is_the_default_send_filter(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("LABROUTER_LOOPBACK_ONLY", "1")
    assert TransportOptions().send_filter is is_loopback
    monkeypatch.setenv("LABROUTER_LOOPBACK_ONLY", "0")
    assert TransportOptions().send_filter is None


async def test_send_filter_stops_datagrams_off_loopback() -> None:
    """The catch CI relies on: a broadcast target off loopback is filtered, not sent."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        rx.setblocking(False)
        t = UdpTransport(TransportOptions(bind="127.0.0.1", port=0, broadcast=False,
                                          extra_targets=[("192.0.2.1", 9),
                                                         rx.getsockname()]),
                         lambda d, s: None, time.monotonic)
        await t.open()
        try:
            t.send_all(b"hello")
            assert t.stats.filtered == 1 and t.stats.sent == 1
            await asyncio.sleep(0.05)
            assert rx.recv(100) == b"hello"
        finally:
            t.close()
