"""The gossip protocol of one node (``GossipNode``): a state machine with no I/O and no clock.

It is given packets and the time, and returns what to send. It builds this node's
announcements (small heartbeats; the full model lists on change, three times, and every
30 s), opens what arrives through ``wire.Gate``, challenges new senders and epochs before
they are trusted, probes suspect peers, answers probes and state requests, and applies
what it learns to the ``core.peers.PeerTable``. The benchmark and the tests drive it with a
fake clock; ``service.GossipService`` drives it over ``udp.UdpTransport``.

Must not import sockets, asyncio, app/ or desktop packages.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..core.peers import NodeState, Peer, PeerTable
from . import wire

log = logging.getLogger(__name__)

Addr = tuple[str, int]

FULL_EVERY = 30.0  # seconds between full-state announcements when nothing changes
PROBES = 3  # unicast probes to a suspect node
PROBE_GAP = 0.3  # intervals between probes
MAX_NEWER_LOGGED = 64  # sources warned about a newer protocol, at most
MIN_INTERVAL = wire.MIN_INTERVAL_MS / 1000.0  # 50 ms
MAX_INTERVAL = 60.0
#: intervals: a packet older than this (by the sender's clock, measured at its last
#: challenge answer) is no evidence that the sender lives
FRESH = 3.0
_HEX = re.compile(r"[0-9a-f]{1,64}")  # a probe's challenge: ours are 32 hex digits


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
        # the receivers' clamps (wire.parse_announce): a typo in the config must neither
        # flood the LAN nor silence the node, whatever config validation let through
        self.interval = min(MAX_INTERVAL, max(MIN_INTERVAL, interval))
        self.active_key = active_key
        key = active_key()
        if key is None:
            raise ValueError("no cluster key")
        self.sealer = wire.Sealer(key, self.sender_id, epoch)
        # a challenge is answered within a few intervals or not at all; the answer proves
        # life as of when the challenge was sent, so this only bounds what is remembered
        self.gate = wire.Gate(self.sender_id, keys, max_senders=table.max_peers, rand=rand,
                              answer_within=max(2.0, 3 * interval))
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
        #: sender -> our wall clock minus its, measured when it answered a challenge
        self._offset: dict[str, float] = {}
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
            if isinstance(c, str) and _HEX.fullmatch(c):
                out.append(Send(src, self._seal(wire.PROBE_ACK, {"c": c}, wall)))
            fresh = op.trusted and self._evidence(op, sender, now, wall)
            known = sender in self.table.peers and self.table.peers[sender].epoch == h.epoch
            if not fresh and (op.trusted or not known):
                # stale or from a suspect node: a challenge; a new sender or epoch: trust
                out += self._challenge(h.sender_id, src, now, wall, reuse=op.trusted)
            return out
        if h.type == wire.PROBE_ACK:
            if op.answered_at is not None:
                # a fresh challenge of ours answered: the only way back from suspect or
                # down, and the measure of the sender's clock against ours
                self._offset[sender] = wall - h.ts_ms / 1000.0
                pend = self._pending.pop(h.sender_id, None)
                addr = pend.addr if pend else src
                if pend is not None and pend.epoch == h.epoch:
                    self._apply(pend.ann, sender, h.epoch, addr, now, seen=op.answered_at)
                    if pend.ann.full:
                        self._full_sv[sender] = pend.ann.state_version
                    elif op.promoted:
                        out += self._state_req(sender, addr, now, wall, force=True)
                elif op.promoted:
                    out += self._state_req(sender, addr, now, wall, force=True)
                else:
                    self._heard(sender, op.answered_at)
            elif op.trusted:
                self._evidence(op, sender, now, wall)
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
            self._pend(h.sender_id, ann, h.epoch, addr, now)
            if sender not in self.table.peers:
                self._apply(ann, sender, h.epoch, addr, now, NodeState.JOINING)
            return self._challenge(h.sender_id, addr, now, wall)
        seen = self._fresh(sender, h, now, wall)
        if seen is None:
            # stale (held back or replayed), or from a node we hold suspect or down: kept
            # until the sender answers a challenge sent now
            self._pend(h.sender_id, ann, h.epoch, addr, now)
            return self._challenge(h.sender_id, addr, now, wall, reuse=True)
        self._apply(ann, sender, h.epoch, addr, now, seen=seen)
        if h.flags & wire.SOLICIT:
            body_, flags = wire.announce_body(self.self_peer(), self.interval,
                                              self.state_version, True)
            out.append(Send(addr, self._seal(wire.ANNOUNCE, body_, wall, flags)))
        if ann.full:
            self._full_sv[sender] = ann.state_version
        elif self._full_sv.get(sender) != ann.state_version:
            out += self._state_req(sender, addr, now, wall)
        return out

    def _pend(self, sender_id: bytes, ann: wire.Announcement, epoch: int, addr: Addr,
              now: float) -> None:
        self._pending[sender_id] = _Pending(ann, epoch, addr, now)
        self._pending.move_to_end(sender_id)
        while len(self._pending) > 64:
            self._pending.popitem(last=False)

    def _fresh(self, sender: str, h: wire.Header, now: float, wall: float) -> float | None:
        """When a trusted packet shows its sender alive (monotonic), or None.

        None when the sender is not alive in the table (suspect, down: only an answered
        challenge brings it back) or the packet is older than FRESH intervals by the
        sender's clock as measured at its last challenge answer. The time returned is the
        packet's sending time, not its arrival: a packet held back on the path extends
        nothing.
        """
        peer = self.table.peers.get(sender)
        off = self._offset.get(sender)
        if peer is None or peer.state != NodeState.ALIVE or off is None:
            return None
        observed = wall - h.ts_ms / 1000.0
        if observed < off:
            # nothing arrives before it was sent: the clocks moved; the smaller offset is
            # the truer one (and a path can only make it larger)
            self._offset[sender] = off = observed
        age = observed - off
        if age > FRESH * self.table.interval_of(peer):
            return None
        return max(peer.last_seen, now - age)

    def _evidence(self, op: wire.Opened, sender: str, now: float, wall: float) -> bool:
        """Refresh the sender's liveness from a trusted PROBE or PROBE_ACK if it is fresh."""
        seen = self._fresh(sender, op.header, now, wall)
        if seen is None:
            return False
        self._heard(sender, seen)
        return True

    def _challenge(self, sender_id: bytes, addr: Addr, now: float, wall: float,
                   reuse: bool = False) -> list[Send]:
        """A PROBE to a sender. ``reuse`` (a trusted sender we hold suspect, down or stale):
        the challenge still outstanding from the last interval is sent again rather than
        replaced, so an answer already on its way still counts."""
        if reuse:
            c = self.gate.challenge(sender_id, now, min_gap=0.0, reuse_within=self.interval)
        else:
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

    def _heard(self, sender: str, seen: float) -> None:
        old = self.table.peers.get(sender)
        if old is not None:
            seen = max(seen, old.last_seen)
        new = self.table.heard(sender, seen)
        if old is not None and new is not None and old.state != new.state:
            self.changed = True

    def _apply(self, ann: wire.Announcement, sender: str, epoch: int, addr: Addr, now: float,
               state: NodeState = NodeState.ALIVE, seen: float | None = None) -> None:
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
        if seen is not None:
            # alive as of when the packet was sent (or the challenge it answered), not now
            last = max(seen, old.last_seen) if old is not None else seen
            new = self.table.peers[sender] = replace(new, last_seen=min(last, now))
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
                c = self.gate.challenge(bytes.fromhex(p.node_id), now, min_gap=0.0,
                                        reuse_within=iv)
                if c is not None:
                    ps.sent += 1
                    ps.last = now
                    out.append(Send((p.address, p.port),
                                    self._seal(wire.PROBE, {"c": c.hex()}, wall)))
        for sid, pend in list(self._pending.items()):
            if now - pend.at > 10 * self.interval:
                del self._pending[sid]
        for sender in [s for s in self._offset if s not in self.table.peers]:
            del self._offset[sender]
        return out

    def drops(self) -> dict[str, int]:
        return dict(self.gate.drops)
