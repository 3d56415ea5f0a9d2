"""Gossip: the announce protocol (``GossipNode``) and its UDP transport (``UdpTransport``).

``GossipNode`` is the protocol with no sockets and no clock: it is given packets and the
time, and returns what to send. It builds this node's announcements (small heartbeats;
the full model lists on change, three times, and every 30 s), opens what arrives through
``wire.Gate``, challenges new senders and epochs before they are trusted, probes suspect
peers, answers probes and state requests, and applies what it learns to the
``core.peers.PeerTable``. The benchmark and the tests drive it with a fake clock.

``UdpTransport`` owns the sockets: IPv4 directed broadcast on every interface that has one
(computed at each send; 255.255.255.255 as the fallback), optional IPv6 multicast, unicast
to configured peers, a per-source token bucket *before* any crypto, and loss injection with
a seeded ``random.Random`` for the benchmark. ``GossipService`` runs both on an asyncio
loop. Must not import app/ or desktop packages.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import logging
import math
import os
import random
import socket
import struct
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..core.peers import NodeState, Peer, PeerTable
from . import wire

log = logging.getLogger(__name__)

Addr = tuple[str, int]

FULL_EVERY = 30.0  # seconds between full-state announcements when nothing changes
PROBES = 3  # unicast probes to a suspect node
PROBE_GAP = 0.3  # intervals between probes
RATE = 50.0  # packets per second per source address, before crypto
BURST = 100.0
MAX_NEWER_LOGGED = 64  # sources warned about a newer protocol, at most
MCAST6_GROUP = "ff12::4c52"  # transient, link-local scope ("LR")


@dataclass(frozen=True)
class Send:
    """A datagram to send: to ``dest``, or to everyone (broadcast + peers) when None."""

    dest: Addr | None
    data: bytes


@dataclass
class _Pending:
    ann: wire.Announcement
    epoch: int
    addr: Addr
    at: float


@dataclass
class _ProbeState:
    sent: int = 0
    last: float = -math.inf
    since: float = 0.0


@dataclass
class GossipStats:
    sent: int = 0
    sent_bytes: int = 0
    received: int = 0
    received_bytes: int = 0
    rate_limited: int = 0
    lost: int = 0  # dropped by loss injection
    send_errors: int = 0


class GossipNode:
    """The protocol of one node. Every method takes the time; none does I/O."""

    def __init__(self, node_id: str, epoch: int, keys: Callable[[], Mapping[bytes, bytes]],
                 active_key: Callable[[], bytes | None], table: PeerTable,
                 self_peer: Callable[[], Peer], interval: float = 1.0,
                 rand: Callable[[int], bytes] = os.urandom) -> None:
        self.node_id = node_id
        self.sender_id = bytes.fromhex(node_id)
        self.epoch = epoch
        self.table = table
        self.self_peer = self_peer
        self.interval = interval
        self.active_key = active_key
        key = active_key()
        if key is None:
            raise ValueError("no cluster key")
        self.sealer = wire.Sealer(key, self.sender_id, epoch)
        self.gate = wire.Gate(self.sender_id, keys, max_senders=table.max_peers, rand=rand)
        self.state_version = 0
        self._digest = ""
        self._last_full = -math.inf
        self._repeats: list[float] = []
        self._solicit_until = -math.inf
        self._pending: OrderedDict[bytes, _Pending] = OrderedDict()
        self._probes: dict[str, _ProbeState] = {}
        self._full_sv: dict[str, int] = {}
        self._state_req_at: dict[str, float] = {}
        self._newer_logged: set[str] = set()
        self.changed = False  # set when the table changed; the runner clears it

    # -------------------------------------------------------------- sending

    def _seal(self, ptype: int, body: Mapping[str, Any] | bytes, wall: float,
              flags: int = 0) -> bytes:
        key = self.active_key()
        if key is not None and key != self.sealer.cluster_key:
            self.sealer.set_key(key)
        return self.sealer.seal(ptype, body, wall, flags)

    def _state_digest(self, peer: Peer) -> str:
        view = {"p": [peer.paused, peer.pause_reason, peer.paused_until],
                "n": peer.name, "rp": peer.relay_port, "fp": peer.cert_fingerprint,
                "s": [[s.id, s.up, list(s.loaded), [m.name for m in s.models], s.error]
                      for s in peer.servers]}
        return hashlib.sha256(json.dumps(view, sort_keys=True).encode()).hexdigest()[:16]

    def start(self, now: float) -> None:
        """Start-up: announce with SOLICIT at 0, 0.25 and 1 interval."""
        self._repeats = [now, now + 0.25 * self.interval, now + self.interval]
        self._solicit_until = now + self.interval + 1e-6

    def next_repeat(self) -> float | None:
        return min(self._repeats) if self._repeats else None

    def announcement(self, now: float, wall: float, solicit: bool = False,
                     full: bool = False) -> bytes:
        """This node's announcement now; full state when it changed or is due."""
        peer = self.self_peer()
        digest = self._state_digest(peer)
        if digest != self._digest:
            if self._digest:
                # a change: full state now and twice more (loss tolerance)
                self._repeats = [now + 0.25 * self.interval, now + self.interval]
            self._digest = digest
            self.state_version += 1
            full = True
        due = [t for t in self._repeats if t <= now + 1e-9]
        if due:
            self._repeats = [t for t in self._repeats if t > now + 1e-9]
            full = True
        solicit = solicit or now <= self._solicit_until
        if now - self._last_full >= FULL_EVERY:
            full = True
        if full:
            self._last_full = now
        body, flags = wire.announce_body(peer, self.interval, self.state_version, full)
        return self._seal(wire.ANNOUNCE, body, wall, flags | (wire.SOLICIT if solicit else 0))

    def leave(self, wall: float) -> bytes:
        return self._seal(wire.LEAVE, {}, wall)

    # ------------------------------------------------------------ receiving

    def receive(self, data: bytes, src: Addr, now: float, wall: float) -> list[Send]:
        """Handle one datagram. Returns replies. Never raises for anything a packet says."""
        try:
            op = self.gate.open(data, now, wall)
        except wire.Drop as d:
            if d.reason == "newer_version" and src[0] not in self._newer_logged and \
                    len(self._newer_logged) < MAX_NEWER_LOGGED:
                # bounded: source addresses are spoofable, so "once per source" alone
                # would let a flood grow this set (and the log) without end
                self._newer_logged.add(src[0])
                log.warning("%s speaks a newer labrouter protocol (%s); update this machine",
                            src[0], d.detail)
            elif d.reason == "unknown_key":
                log.debug("packet from %s with unknown key id %s", src[0], d.detail)
            return []
        try:
            return self._handle(op, src, now, wall)
        except Exception:  # noqa: BLE001 - nothing a packet says may stop the daemon
            log.exception("could not handle a %s packet from %s",
                          wire.TYPES.get(op.header.type), src[0])
            return []

    def _handle(self, op: wire.Opened, src: Addr, now: float, wall: float) -> list[Send]:
        h, body, sender = op.header, op.body, op.sender
        out: list[Send] = []
        if h.type == wire.PROBE:
            c = body.get("c")
            if isinstance(c, str) and len(c) <= 64:
                out.append(Send(src, self._seal(wire.PROBE_ACK, {"c": c}, wall)))
            if op.trusted:
                self._heard(sender, now)
            elif sender not in self.table.peers or \
                    self.table.peers[sender].epoch != h.epoch:
                out += self._challenge(h.sender_id, src, now, wall)
            return out
        if h.type == wire.PROBE_ACK:
            if op.promoted:
                pend = self._pending.pop(h.sender_id, None)
                addr = pend.addr if pend else src
                if pend is not None and pend.epoch == h.epoch:
                    self._apply(pend.ann, sender, h.epoch, addr, now)
                    if pend.ann.full:
                        self._full_sv[sender] = pend.ann.state_version
                    else:
                        out += self._state_req(sender, addr, now, wall, force=True)
                else:
                    out += self._state_req(sender, addr, now, wall, force=True)
            elif op.trusted:
                self._heard(sender, now)
            return out
        if h.type == wire.LEAVE:
            if op.trusted:
                self.gate.forget(h.sender_id)
                if self.table.left(sender, now) is not None:
                    self.changed = True
            return out
        if h.type == wire.STATE_REQ:
            if op.trusted:
                body_, flags = wire.announce_body(self.self_peer(), self.interval,
                                                  self.state_version, True)
                out.append(Send(src, self._seal(wire.ANNOUNCE, body_, wall, flags)))
            return out
        # ANNOUNCE
        ann = wire.parse_announce(body, h.flags)
        addr = (ann.address or src[0], ann.port or src[1])
        if not op.trusted:
            self._pending[h.sender_id] = _Pending(ann, h.epoch, addr, now)
            self._pending.move_to_end(h.sender_id)
            while len(self._pending) > 64:
                self._pending.popitem(last=False)
            if sender not in self.table.peers:
                self._apply(ann, sender, h.epoch, addr, now, NodeState.JOINING)
            return self._challenge(h.sender_id, addr, now, wall)
        self._apply(ann, sender, h.epoch, addr, now)
        if h.flags & wire.SOLICIT:
            body_, flags = wire.announce_body(self.self_peer(), self.interval,
                                              self.state_version, True)
            out.append(Send(addr, self._seal(wire.ANNOUNCE, body_, wall, flags)))
        if ann.full:
            self._full_sv[sender] = ann.state_version
        elif self._full_sv.get(sender) != ann.state_version:
            out += self._state_req(sender, addr, now, wall)
        return out

    def _challenge(self, sender_id: bytes, addr: Addr, now: float, wall: float) -> list[Send]:
        c = self.gate.challenge(sender_id, now, min_gap=0.25 * self.interval)
        if c is None:
            return []
        return [Send(addr, self._seal(wire.PROBE, {"c": c.hex()}, wall))]

    def _state_req(self, sender: str, addr: Addr, now: float, wall: float,
                   force: bool = False) -> list[Send]:
        if not force and now - self._state_req_at.get(sender, -math.inf) < self.interval:
            return []
        self._state_req_at[sender] = now
        return [Send(addr, self._seal(wire.STATE_REQ, {}, wall))]

    def _heard(self, sender: str, now: float) -> None:
        old = self.table.peers.get(sender)
        new = self.table.heard(sender, now)
        if old is not None and new is not None and old.state != new.state:
            self.changed = True

    def _apply(self, ann: wire.Announcement, sender: str, epoch: int, addr: Addr, now: float,
               state: NodeState = NodeState.ALIVE) -> None:
        old = self.table.peers.get(sender)
        servers = ann.servers
        if not ann.full and old is not None:
            known = {s.id: s for s in old.servers}
            servers = tuple(
                replace(s, models=known[s.id].models,
                        models_truncated=known[s.id].models_truncated)
                if s.id in known else s for s in servers)
        # os, version, relay port and fingerprint ride only with the full state
        keep = old if (not ann.full and old is not None and old.epoch == epoch) else None
        peer = Peer(
            node_id=sender, name=ann.name, state=state, address=addr[0], port=addr[1],
            relay_port=keep.relay_port if keep else ann.relay_port,
            cert_fingerprint=keep.cert_fingerprint if keep else ann.cert_fingerprint,
            servers=servers, paused=ann.paused, pause_reason=ann.pause_reason,
            paused_until=ann.paused_until, os=keep.os if keep else ann.os,
            version=keep.version if keep else ann.version,
            in_flight=ann.in_flight, epoch=epoch, interval=ann.interval,
            since=old.since if old else now, last_seen=now)
        if old is not None and old.state == NodeState.LEFT and old.epoch == epoch:
            return  # a late copy after a goodbye
        new = self.table.upsert(peer, now)
        if new is None:
            return
        if old is None or replace(old, last_seen=0, since=0) != replace(new, last_seen=0,
                                                                        since=0):
            self.changed = True

    # ------------------------------------------------------------------ time

    def tick(self, now: float, wall: float) -> list[Send]:
        """Advance the table by silence; probe suspect peers. Returns the probes to send."""
        if self.table.tick(now):
            self.changed = True
        out: list[Send] = []
        for p in list(self.table.peers.values()):
            if p.is_self:
                continue
            if p.state != NodeState.SUSPECT:
                self._probes.pop(p.node_id, None)
                continue
            ps = self._probes.setdefault(p.node_id, _ProbeState(since=p.since))
            if ps.since != p.since:
                ps.sent, ps.last, ps.since = 0, -math.inf, p.since
            iv = self.table.interval_of(p)
            if ps.sent < PROBES and now - ps.last >= PROBE_GAP * iv and p.address:
                c = self.gate.challenge(bytes.fromhex(p.node_id), now, min_gap=0.0)
                if c is not None:
                    ps.sent += 1
                    ps.last = now
                    out.append(Send((p.address, p.port),
                                    self._seal(wire.PROBE, {"c": c.hex()}, wall)))
        for sid, pend in list(self._pending.items()):
            if now - pend.at > 10 * self.interval:
                del self._pending[sid]
        return out

    def drops(self) -> dict[str, int]:
        return dict(self.gate.drops)


# ---------------------------------------------------------------------- transport


def _linux_broadcasts() -> list[str]:
    import fcntl

    out: list[str] = []
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _idx, name in socket.if_nameindex():
            req = struct.pack("256s", name.encode()[:15])
            try:
                flags = struct.unpack_from("H", fcntl.ioctl(s.fileno(), 0x8913, req), 16)[0]
                if not flags & 0x1 or not flags & 0x2 or flags & 0x8:  # UP, BROADCAST, !LOOP
                    continue
                brd = fcntl.ioctl(s.fileno(), 0x8919, req)  # SIOCGIFBRDADDR
                addr = socket.inet_ntoa(brd[20:24])
            except OSError:
                continue
            if addr != "0.0.0.0" and addr not in out:
                out.append(addr)
    finally:
        s.close()
    return out


def broadcast_addresses() -> list[str]:
    """The IPv4 directed-broadcast address of every up, broadcast-capable interface."""
    found: list[str] = []
    try:
        if sys.platform.startswith("linux"):
            found = _linux_broadcasts()
        else:
            import ipaddress

            import ifaddr  # type: ignore[import-not-found]

            for adapter in ifaddr.get_adapters():
                for ip in adapter.ips:
                    if isinstance(ip.ip, str) and not ip.ip.startswith("127."):
                        net = ipaddress.ip_network(f"{ip.ip}/{ip.network_prefix}", strict=False)
                        if net.prefixlen < 31 and str(net.broadcast_address) not in found:
                            found.append(str(net.broadcast_address))
    except Exception:  # noqa: BLE001 - any failure: the limited broadcast below
        found = []
    return found or ["255.255.255.255"]


class TokenBuckets:
    """Per-source token buckets (checked before any crypto), bounded in number."""

    def __init__(self, rate: float = RATE, burst: float = BURST, max_sources: int = 1024) -> None:
        self.rate, self.burst, self.max_sources = rate, burst, max_sources
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, source: str, now: float) -> bool:
        tokens, at = self.buckets.get(source, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        ok = tokens >= 1.0
        self.buckets[source] = (tokens - 1.0 if ok else tokens, now)
        self.buckets.move_to_end(source)
        while len(self.buckets) > self.max_sources:
            self.buckets.popitem(last=False)
        return ok


def parse_peer(text: str, default_port: int) -> Addr:
    """``host``, ``host:port``, ``[v6]:port`` -> (host, port)."""
    t = text.strip()
    if t.startswith("["):
        host, _, rest = t[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if t.count(":") == 1:
        host, port = t.split(":")
        return host, int(port)
    return t, default_port


@dataclass
class TransportOptions:
    bind: str = "0.0.0.0"
    port: int = 47811
    broadcast: bool = True
    multicast6: bool = False
    peers: tuple[str, ...] = ()
    loss: float = 0.0  # injected loss on receive, for the benchmark
    seed: int = 0
    extra_targets: list[Addr] = field(default_factory=list)


class UdpTransport(asyncio.DatagramProtocol):
    """The sockets. Knows nothing of peers or packets beyond their bytes."""

    def __init__(self, opts: TransportOptions,
                 handler: Callable[[bytes, Addr], None], clock: Callable[[], float]) -> None:
        self.opts = opts
        self.handler = handler
        self.clock = clock
        self.buckets = TokenBuckets()
        self.rng = random.Random(opts.seed)
        self.stats = GossipStats()
        self.transport: asyncio.DatagramTransport | None = None
        self.transport6: asyncio.DatagramTransport | None = None
        self._errors_logged: set[tuple[str, int]] = set()
        self._peer_addrs: list[Addr] = []
        # A safety catch for tests and CI on shared machines: with LABROUTER_LOOPBACK_ONLY=1
        # no datagram leaves 127.0.0.0/8 or ::1, whatever the config says.
        self.loopback_only = os.environ.get("LABROUTER_LOOPBACK_ONLY") == "1"

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            if self.opts.broadcast:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.bind((self.opts.bind, self.opts.port))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self.transport, _ = await loop.create_datagram_endpoint(lambda: self, sock=sock)
        if self.opts.multicast6:
            try:
                s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
                s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s6.bind(("::", self.opts.port))
                mreq = socket.inet_pton(socket.AF_INET6, MCAST6_GROUP) + struct.pack("@I", 0)
                s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
                s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
                s6.setblocking(False)
                self.transport6, _ = await loop.create_datagram_endpoint(lambda: self, sock=s6)
            except OSError as exc:
                log.warning("IPv6 multicast is off: %s", exc)
        self._peer_addrs = await self._resolve_peers()

    async def _resolve_peers(self) -> list[Addr]:
        loop = asyncio.get_running_loop()
        out: list[Addr] = []
        for text in self.opts.peers:
            try:
                host, port = parse_peer(text, self.opts.port)
                infos = await loop.getaddrinfo(host, port, family=socket.AF_INET,
                                               type=socket.SOCK_DGRAM)
                out.extend((i[4][0], i[4][1]) for i in infos[:1])
            except (OSError, ValueError) as exc:
                log.warning("cluster peer %r cannot be resolved: %s", text, exc)
        return out

    @property
    def local_port(self) -> int:
        if self.transport is None:
            return self.opts.port
        return int(self.transport.get_extra_info("sockname")[1])

    def close(self) -> None:
        for t in (self.transport, self.transport6):
            if t is not None:
                t.close()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:  # type: ignore[override]
        src = (str(addr[0]), int(addr[1]))
        if not self.buckets.allow(src[0], self.clock()):
            self.stats.rate_limited += 1
            return
        if self.opts.loss and self.rng.random() < self.opts.loss:
            self.stats.lost += 1
            return
        self.stats.received += 1
        self.stats.received_bytes += len(data)
        self.handler(data, src)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)

    def targets(self, known: Iterable[Addr] = ()) -> list[Addr]:
        out: list[Addr] = []
        if self.opts.broadcast:
            out += [(b, self.opts.port) for b in broadcast_addresses()]
        for a in [*self._peer_addrs, *self.opts.extra_targets, *known]:
            if a not in out:
                out.append(a)
        return out

    def send(self, data: bytes, dest: Addr) -> None:
        t = self.transport6 if ":" in dest[0] else self.transport
        if t is None:
            return
        if self.loopback_only and not (dest[0].startswith("127.") or dest[0] == "::1"):
            self.stats.send_errors += 1
            return
        try:
            t.sendto(data, dest)
            self.stats.sent += 1
            self.stats.sent_bytes += len(data)
        except OSError as exc:
            self.stats.send_errors += 1
            if dest not in self._errors_logged:
                self._errors_logged.add(dest)
                extra = (" (macOS: allow labrouter under System Settings > Privacy & Security"
                         " > Local Network)" if exc.errno == errno.EHOSTUNREACH and
                         sys.platform == "darwin" else "")
                log.warning("cannot send to %s:%d: %s%s", dest[0], dest[1], exc, extra)

    def send_all(self, data: bytes, known: Iterable[Addr] = ()) -> None:
        for dest in self.targets(known):
            self.send(data, dest)
        if self.transport6 is not None:
            self.send(data, (MCAST6_GROUP, self.opts.port))


class GossipService:
    """Runs a GossipNode over a UdpTransport on the running asyncio loop."""

    def __init__(self, node: GossipNode, opts: TransportOptions,
                 clock: Callable[[], float], wall: Callable[[], float],
                 on_change: Callable[[], None] = lambda: None, seed: int | None = None) -> None:
        self.node = node
        self.opts = opts
        self.clock, self.wall = clock, wall
        self.on_change = on_change
        self.transport = UdpTransport(opts, self._received, clock)
        self.rng = random.Random(seed)
        self._trigger = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_triggered = -math.inf

    @property
    def stats(self) -> GossipStats:
        return self.transport.stats

    async def start(self) -> None:
        await self.transport.open()
        self.node.start(self.clock())
        self._tasks = [asyncio.create_task(self._announce_loop(), name="gossip-announce"),
                       asyncio.create_task(self._tick_loop(), name="gossip-tick")]

    def announce_now(self) -> None:
        self._trigger.set()

    async def stop(self, goodbye: bool = True) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        self._tasks = []
        if goodbye and self.transport.transport is not None:
            # three copies (0, 50, 150 ms): loss-tolerant without delaying shutdown much
            for delay in (0.0, 0.05, 0.1):
                await asyncio.sleep(delay)
                self.transport.send_all(self.node.leave(self.wall()), self._known())
        self.transport.close()

    def _known(self) -> list[Addr]:
        """Unicast also to every peer we know when broadcast is off (asymmetric configs)."""
        if self.opts.broadcast:
            return []
        return [(p.address, p.port) for p in self.node.table.peers.values()
                if not p.is_self and p.address and p.port and
                p.state not in (NodeState.LEFT, NodeState.DOWN)]

    def _received(self, data: bytes, src: Addr) -> None:
        for s in self.node.receive(data, src, self.clock(), self.wall()):
            self._send(s)
        self._changed()

    def _send(self, s: Send) -> None:
        if s.dest is None:
            self.transport.send_all(s.data, self._known())
        else:
            self.transport.send(s.data, s.dest)

    def _changed(self) -> None:
        if self.node.changed:
            self.node.changed = False
            try:
                self.on_change()
            except Exception:  # noqa: BLE001
                log.exception("on_change callback failed")

    async def _announce_loop(self) -> None:
        next_hb = self.clock()
        while True:
            now = self.clock()
            rep = self.node.next_repeat()
            wake = min(next_hb, rep if rep is not None else math.inf)
            if self._trigger.is_set():
                # a change: announce at once, but at most 4 triggered announcements a second
                wake = min(wake, max(now, self._last_triggered + 0.25))
                if wake > now:
                    await asyncio.sleep(wake - now)
            elif wake > now:
                try:
                    await asyncio.wait_for(self._trigger.wait(), wake - now)
                except TimeoutError:
                    pass
                continue
            now = self.clock()
            if self._trigger.is_set():
                self._trigger.clear()
                self._last_triggered = now
            try:
                self.transport.send_all(self.node.announcement(now, self.wall()), self._known())
            except Exception:  # noqa: BLE001
                log.exception("could not announce")
            next_hb = now + self.node.interval * self.rng.uniform(0.75, 1.25)

    async def _tick_loop(self) -> None:
        step = max(0.02, self.node.interval / 10)
        while True:
            await asyncio.sleep(step)
            try:
                for s in self.node.tick(self.clock(), self.wall()):
                    self._send(s)
            except Exception:  # noqa: BLE001
                log.exception("gossip tick failed")
            self._changed()
