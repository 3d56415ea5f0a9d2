"""GossipNode driven with a fake clock and an in-memory network: no sockets, no sleeps."""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from labrouter.cluster import wire
from labrouter.cluster.protocol import GossipNode, Send
from labrouter.cluster.ratelimit import TokenBuckets
from labrouter.cluster.udp import parse_peer
from labrouter.core.peers import ModelInfo, NodeState, Peer, PeerTable, ServerState

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


@dataclass
class SimNode:
    addr: tuple[str, int]
    node: GossipNode
    me: Peer
    up: bool = True


@dataclass
class Net:
    """A lossless (or lossy) broadcast network between GossipNodes, with a fake clock."""

    now: float = 0.0
    wall: float = 1_700_000_000.0
    nodes: list[SimNode] = field(default_factory=list)
    loss: float = 0.0
    rng: random.Random = field(default_factory=lambda: random.Random(1))
    queue: list[tuple[tuple[str, int], tuple[str, int], bytes]] = field(default_factory=list)

    def add(self, name: str, key: bytes = KEY, interval: float = 1.0) -> SimNode:
        i = len(self.nodes) + 1
        node_id = f"{i:032x}"
        me = Peer(node_id=node_id, name=name, is_self=True, port=47811, servers=(
            ServerState(id="ollama", url="http://127.0.0.1:11434",
                        models=(ModelInfo("qwen3:4b", 2_500_000_000, 4.0),),
                        loaded=("qwen3:4b",)),))
        table = PeerTable(interval=interval)
        table.set_self(me)
        sim = SimNode((f"10.0.0.{i}", 47811), None, me)  # type: ignore[arg-type]
        rng = random.Random(i)
        sim.node = GossipNode(node_id, epoch=1000 + i, keys=lambda: {wire.key_id(key): key},
                              active_key=lambda: key, table=table, self_peer=lambda: sim.me,
                              interval=interval, rand=rng.randbytes)
        sim.node.start(self.now)
        self.nodes.append(sim)
        return sim

    def send(self, src: SimNode, sends: list[Send]) -> None:
        for s in sends:
            dests = [n.addr for n in self.nodes if n is not src] if s.dest is None else [s.dest]
            for d in dests:
                self.queue.append((src.addr, d, s.data))

    def deliver(self) -> None:
        for _ in range(20):
            if not self.queue:
                return
            q, self.queue = self.queue, []
            for src, dst, data in q:
                if self.loss and self.rng.random() < self.loss:
                    continue
                for n in self.nodes:
                    if n.addr == dst and n.up:
                        self.send(n, n.node.receive(data, src, self.now, self.wall))

    def step(self, dt: float = 0.1) -> None:
        self.now += dt
        self.wall += dt
        for n in self.nodes:
            if not n.up:
                continue
            self.send(n, n.node.tick(self.now, self.wall))
            # announce at each whole interval (the service adds jitter; not needed here)
            nr = n.node.next_repeat()
            if round(self.now / n.node.interval, 6) % 1 == 0 or (nr is not None and
                                                                  nr <= self.now):
                self.send(n, [Send(None, n.node.announcement(self.now, self.wall))])
        self.deliver()

    def run(self, seconds: float, dt: float = 0.1) -> None:
        for _ in range(round(seconds / dt)):
            self.step(dt)


def view(n: SimNode, other: SimNode) -> Peer | None:
    return n.node.table.peers.get(other.me.node_id)


def test_three_nodes_find_each_other_and_carry_models() -> None:
    net = Net()
    a, b, c = net.add("a"), net.add("b"), net.add("c")
    net.run(1.0)
    for x in (a, b, c):
        for y in (a, b, c):
            if x is not y:
                p = view(x, y)
                assert p is not None and p.state == NodeState.ALIVE, (x.me.name, y.me.name)
                assert p.servers[0].models[0].name == "qwen3:4b"
                assert p.servers[0].loaded == ("qwen3:4b",)
                assert p.address == y.addr[0]


def test_crash_is_suspected_then_down_within_documented_time() -> None:
    net = Net()
    a, b = net.add("a"), net.add("b")
    net.run(2.0)
    b.up = False
    crashed = net.now
    suspect_at = down_at = None
    for _ in range(100):
        net.step(0.05)
        p = view(a, b)
        assert p is not None
        if p.state == NodeState.SUSPECT and suspect_at is None:
            suspect_at = net.now - crashed
        if p.state == NodeState.DOWN:
            down_at = net.now - crashed
            break
    assert suspect_at is not None and suspect_at <= 3.5 + 0.1
    assert down_at is not None and down_at <= 4.5 + 0.1


def test_suspect_node_that_answers_probes_stays_up() -> None:
    net = Net()
    a, b = net.add("a"), net.add("b")
    net.run(2.0)
    # b's announcements are lost, but it still answers probes: never down
    orig = b.node.announcement
    b.node.announcement = lambda now, wall, **kw: b"x" * 10  # type: ignore[method-assign]
    net.run(8.0, dt=0.05)
    p = view(a, b)
    assert p is not None and p.state in (NodeState.ALIVE, NodeState.SUSPECT)
    b.node.announcement = orig  # type: ignore[method-assign]
    net.run(1.5)
    assert view(a, b).state == NodeState.ALIVE  # type: ignore[union-attr]


def test_pause_is_seen_at_the_next_announcement() -> None:
    net = Net()
    a, b = net.add("a"), net.add("b")
    net.run(2.0)
    b.me = replace(b.me, paused=True, pause_reason="rented")
    net.send(b, [Send(None, b.node.announcement(net.now, net.wall))])
    net.deliver()
    p = view(a, b)
    assert p is not None and p.paused and p.pause_reason == "rented" and not p.routable


def test_goodbye_marks_left_and_late_copies_are_refused() -> None:
    net = Net()
    a, b = net.add("a"), net.add("b")
    net.run(2.0)
    old = b.node.announcement(net.now, net.wall)
    net.send(b, [Send(None, b.node.leave(net.wall))])
    net.deliver()
    assert view(a, b).state == NodeState.LEFT  # type: ignore[union-attr]
    net.send(b, [Send(None, old)])
    net.deliver()
    assert view(a, b).state == NodeState.LEFT  # type: ignore[union-attr]


def test_wrong_key_is_never_listed() -> None:
    net = Net()
    a = net.add("a")
    rogue = net.add("rogue", key=OTHER_KEY)
    net.run(3.0)
    assert view(a, rogue) is None
    assert a.node.drops().get("unknown_key", 0) > 0


def test_restart_with_new_epoch_is_challenged_then_trusted() -> None:
    net = Net()
    a, b = net.add("a"), net.add("b")
    net.run(2.0)
    captured = b.node.announcement(net.now, net.wall)
    # b restarts: same id, new epoch
    key = KEY
    b.node = GossipNode(b.me.node_id, epoch=99, keys=lambda: {wire.key_id(key): key},
                        active_key=lambda: key, table=PeerTable(), self_peer=lambda: b.me)
    b.node.start(net.now)
    net.run(1.0)
    assert view(a, b).epoch == 99 and view(a, b).state == NodeState.ALIVE  # type: ignore
    # the old epoch replayed: refused
    before = a.node.drops().get("old_epoch", 0)
    net.queue.append((b.addr, a.addr, captured))
    net.deliver()
    assert a.node.drops().get("old_epoch", 0) == before + 1
    assert view(a, b).epoch == 99  # type: ignore[union-attr]


def test_replay_to_a_fresh_receiver_stays_joining() -> None:
    net = Net()
    _a, b = net.add("a"), net.add("b")
    net.run(2.0)
    captured = b.node.announcement(net.now, net.wall)
    b.up = False
    fresh = net.add("fresh")
    net.queue.append((b.addr, fresh.addr, captured))
    net.deliver()
    p = view(fresh, b)
    assert p is not None and p.state == NodeState.JOINING and not p.routable
    net.run(5.0)
    assert view(fresh, b).state == NodeState.DOWN  # type: ignore[union-attr]


def test_many_models_are_truncated_and_flagged() -> None:
    net = Net()
    a, b = net.add("a"), net.add("b")
    models = tuple(ModelInfo(f"some-org/very-long-model-name-{i:03d}:q4_K_M", 10**10, 7.0)
                   for i in range(64))
    b.me = replace(b.me, servers=(replace(b.me.servers[0], models=models),))
    data = b.node.announcement(net.now, net.wall)
    assert len(data) <= wire.MAX_PACKET
    assert wire.parse_header(data).flags & wire.TRUNCATED
    net.run(2.0)
    s = view(a, b).servers[0]  # type: ignore[union-attr]
    assert s.models_truncated and 0 < len(s.models) < 64


def test_five_percent_loss_never_goes_down() -> None:
    net = Net(loss=0.05)
    a, b = net.add("a"), net.add("b")
    net.run(600.0, dt=0.1)
    assert view(a, b).state != NodeState.DOWN  # type: ignore[union-attr]
    assert view(b, a).state != NodeState.DOWN  # type: ignore[union-attr]


def test_token_bucket_limits_a_flood() -> None:
    tb = TokenBuckets(rate=50, burst=100)
    allowed = sum(tb.allow("10.0.0.9", 0.0) for _ in range(1000))
    assert allowed == 100
    assert tb.allow("10.0.0.9", 0.1)  # refilled 5 tokens
    assert tb.allow("10.0.0.8", 0.0)  # another source is unaffected


def test_garbage_never_raises() -> None:
    net = Net()
    a = net.add("a")
    rng = random.Random(5)
    for _ in range(2000):
        data = rng.randbytes(rng.randrange(0, 1300))
        if rng.random() < 0.5:
            data = wire.MAGIC + bytes([1, rng.randrange(1, 6)]) + data
        assert a.node.receive(data, ("10.9.9.9", 1), net.now, net.wall) == []


def test_parse_peer() -> None:
    assert parse_peer("100.64.0.2", 47811) == ("100.64.0.2", 47811)
    assert parse_peer("host:9", 47811) == ("host", 9)
    assert parse_peer("[fd00::1]:5", 47811) == ("fd00::1", 5)


def test_hostile_key_holder_body_is_cleaned_not_crashing() -> None:
    """NaN numbers, escape sequences and a host name as address: applied, cleaned."""
    net = Net()
    a = net.add("a")
    sealer = wire.Sealer(KEY, bytes.fromhex("ee" * 16), 77)
    raw = (b'{"n":"x\\u001b[2Jy","iv":NaN,"sv":1,"q":NaN,"a":"evil.example","pt":NaN,'
           b'"s":[{"i":"o","q":Infinity}]}')
    sends = a.node.receive(sealer.seal(wire.ANNOUNCE, raw, net.wall), ("10.0.0.66", 4000),
                           net.now, net.wall)
    p = a.node.table.peers["ee" * 16]
    assert p.name == "x[2Jy" and p.state == NodeState.JOINING
    # the challenge goes to the source address, not to a name to resolve
    assert [s.dest for s in sends] == [("10.0.0.66", 4000)]


def test_newer_version_warnings_are_bounded() -> None:
    """Spoofed sources must not grow the once-per-source warning set without end."""
    net = Net()
    a = net.add("a")
    pkt = bytearray(wire.Sealer(KEY, bytes(16), 1).seal(wire.ANNOUNCE, {}, net.wall))
    pkt[4] = wire.VERSION + 1
    for i in range(5000):
        a.node.receive(bytes(pkt), (f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 1),
                       net.now, net.wall)
    assert len(a.node._newer_logged) <= 64
    assert a.node.drops()["newer_version"] == 5000


# ------------------------------------------------------------ liveness needs freshness


@dataclass
class TapNet(Net):
    """A Net with an attacker on the path: ``tap(src, dst, data)`` False swallows a packet;
    ``hold`` delivers one later (``release`` at each step)."""

    tap: Any = None
    held: list[tuple[float, tuple[str, int], tuple[str, int], bytes]] = field(
        default_factory=list)

    def send(self, src: SimNode, sends: list[Send]) -> None:
        for s in sends:
            dests = [n.addr for n in self.nodes if n is not src] if s.dest is None else [s.dest]
            for d in dests:
                if self.tap is None or self.tap(src.addr, d, s.data):
                    self.queue.append((src.addr, d, s.data))

    def hold(self, at: float, src: tuple[str, int], dst: tuple[str, int], data: bytes) -> None:
        self.held.append((at, src, dst, data))

    def step(self, dt: float = 0.1) -> None:
        due = [h for h in self.held if h[0] <= self.now + dt]
        self.held = [h for h in self.held if h[0] > self.now + dt]
        self.queue += [(src, dst, data) for _, src, dst, data in due]
        super().step(dt)


def _routable_after_crash(mode: str, lag: float) -> float:
    net = TapNet()
    c, a, b = net.add("c"), net.add("a"), net.add("b")
    net.run(5.0)
    assert view(c, a).state == NodeState.ALIVE  # type: ignore[union-attr]

    def tap(src: tuple[str, int], dst: tuple[str, int], data: bytes) -> bool:
        if src != a.addr:
            return True
        if mode == "delay" and dst == c.addr:
            net.hold(net.now + lag, src, dst, data)
            return False
        if mode == "replay" and dst == b.addr:
            net.hold(net.now + lag, src, c.addr, data)  # a copy of B's packet, to C
        return dst != c.addr

    net.tap = tap
    net.run(lag + 5.0)
    a.up = False
    crash = net.now
    while net.now < crash + lag + 30:
        net.step(0.1)
        p = view(c, a)
        if p is None or not p.routable:
            return net.now - crash
    return math.inf


@pytest.mark.parametrize("mode", ["replay", "delay"])
@pytest.mark.parametrize("lag", [2.0, 30.0, 290.0])
def test_held_back_or_replayed_packets_do_not_keep_a_dead_node(mode: str, lag: float) -> None:
    """Before: routable for lag + 4.5 T (up to 300 s); now at most the detection time."""
    assert _routable_after_crash(mode, lag) <= 4.5 + 0.2


def test_a_down_node_is_not_revived_by_a_replayed_announcement() -> None:
    net = Net()
    a, b = net.add("a"), net.add("b")
    net.run(3.0)
    captured = b.node.announcement(net.now, net.wall)  # sent, never delivered
    b.up = False
    net.run(6.0)
    assert view(a, b).state == NodeState.DOWN  # type: ignore[union-attr]
    replies = a.node.receive(captured, b.addr, net.now, net.wall)
    assert view(a, b).state == NodeState.DOWN  # type: ignore[union-attr]
    assert [r for r in replies if r.dest == b.addr]  # challenged instead (nobody answers)
    net.run(3.0)
    assert view(a, b).state == NodeState.DOWN  # type: ignore[union-attr]
    # the real node back: it answers the challenge and is alive again
    b.up = True
    net.run(3.0)
    assert view(a, b).state == NodeState.ALIVE  # type: ignore[union-attr]


def test_probe_challenge_must_be_short_hex(caplog: pytest.LogCaptureFixture) -> None:
    net = Net()
    a, b = net.add("a"), net.add("b")
    net.run(2.0)
    for c in (b'"\\ud800"', b'"' + b"a" * 65 + b'"', b'"not hex"', b"5", b'"ABCDEF"'):
        packet = b.node._seal(wire.PROBE, b'{"c":' + c + b"}", net.wall)
        with caplog.at_level(logging.WARNING):
            replies = a.node.receive(packet, b.addr, net.now, net.wall)
        acks = [r for r in replies if wire.parse_header(r.data).type == wire.PROBE_ACK]
        assert acks == [], c
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    packet = b.node._seal(wire.PROBE, {"c": "00ff" * 8}, net.wall)
    replies = a.node.receive(packet, b.addr, net.now, net.wall)
    assert [r for r in replies if wire.parse_header(r.data).type == wire.PROBE_ACK]


def test_the_sender_clamps_its_interval() -> None:
    net = Net()
    assert net.add("fast", interval=0.000001).node.interval == 0.05
    assert net.add("slow", interval=1e300).node.interval == 60.0
