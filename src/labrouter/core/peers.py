"""The peer table: which machines are known, their state, servers and models.

Owns the data that describes a node as seen by this daemon (``Peer``, ``ServerState``,
``ModelInfo``), the node state machine (joining -> alive -> suspect -> down, and left),
and the ``PeerTable`` that applies announcements and silence to it.

Knows nothing of sockets or packets (``cluster/`` decodes those and calls in here) and
reads no clock: every method that needs the time is given ``now`` (monotonic seconds).
Standard library only.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

log = logging.getLogger(__name__)

_PARAMS_RE = re.compile(r"(?:^|[:\-_])(\d+(?:\.\d+)?)([bm])(?:$|[\-_:])", re.I)


class NodeState(enum.StrEnum):
    JOINING = "joining"  # heard from, not yet proven to own its address: gets no work
    ALIVE = "alive"
    SUSPECT = "suspect"  # silent for a while, being probed; still routable as a last resort
    DOWN = "down"
    LEFT = "left"  # said goodbye


@dataclass(frozen=True)
class ModelInfo:
    """A model installed on a server."""

    name: str
    size: int = 0  # bytes on disk (Ollama /api/tags)
    params_b: float = 0.0  # billions of parameters, 0 when unknown
    vision: bool = False
    family: str = ""

    @staticmethod
    def guess_params(name: str, parameter_size: str = "") -> float:
        """Parameter count in billions from Ollama's "7.6B" or from a name like qwen3:4b."""
        for text in (parameter_size, name.split("/")[-1]):
            m = _PARAMS_RE.search(text) or re.fullmatch(r"(\d+(?:\.\d+)?)([bm])", text.strip(),
                                                        re.I)
            if m:
                n = float(m.group(1))
                return n / 1000 if m.group(2).lower() == "m" else n
        return 0.0


@dataclass(frozen=True)
class ServerState:
    """One inference server offered by a node, as that node last saw it."""

    id: str  # unique within its node (the server's label)
    url: str  # as the owning node reaches it (often http://127.0.0.1:11434)
    kind: str = "ollama"  # "ollama" or "openai"
    up: bool = True
    models: tuple[ModelInfo, ...] = ()
    loaded: tuple[str, ...] = ()  # names of models in memory now (Ollama /api/ps)
    in_flight: int = 0
    cost_input_per_1k: float = 0.0
    cost_output_per_1k: float = 0.0
    models_truncated: bool = False  # the announcement could not carry every model
    api_key_env: str = ""  # only for this node's own servers; never announced
    error: str = ""  # why it is down, when it is
    #: models its own node saw miss a deadline or break off an answer lately, and whose
    #: probe has not passed yet: other nodes try them last (``core.health``)
    degraded: tuple[str, ...] = ()

    @property
    def is_cloud(self) -> bool:
        return self.cost_input_per_1k > 0 or self.cost_output_per_1k > 0

    def model(self, name: str) -> ModelInfo | None:
        for m in self.models:
            if m.name == name:
                return m
        return None


@dataclass(frozen=True)
class Peer:
    """A node of the cluster (this machine included), as this daemon sees it."""

    node_id: str
    name: str
    state: NodeState = NodeState.ALIVE
    since: float = 0.0  # monotonic time of the last state change
    last_seen: float = 0.0
    address: str = ""  # host as peers reach it; "" for this machine
    port: int = 0  # its UDP port
    relay_port: int = 0
    cert_fingerprint: str = ""  # SHA-256 of the relay's certificate, hex
    servers: tuple[ServerState, ...] = ()
    paused: bool = False
    pause_reason: str = ""
    paused_until: float | None = None  # wall-clock seconds, None: until resumed
    is_self: bool = False
    os: str = ""
    version: str = ""
    in_flight: int = 0
    epoch: int = 0
    interval: float = 0.0  # the node's announced interval; 0: the table's own

    @property
    def routable(self) -> bool:
        return self.state in (NodeState.ALIVE, NodeState.SUSPECT) and not self.paused


@dataclass
class PeerTable:
    """All known nodes by id. Mutated only on the event loop's thread.

    The states advance by ``tick(now)``; thresholds are multiples of the interval the
    node announced (else the table's), see docs/protocol.md for why these multiples:
    suspect after 3.5 silent intervals (at 5 % loss that is three heartbeats lost in a row,
    ~14 false suspicions per pair per day, which cost nothing but three probes), down one
    interval later when neither a heartbeat nor any of the three probes came back.
    """

    interval: float = 1.0
    suspect_after: float = 3.5  # intervals of silence before suspect (probes start)
    down_after: float = 4.5  # intervals of silence before down (the probes failed meanwhile)
    forget_after: float = 3600.0  # seconds a down or left node stays listed
    max_peers: int = 256
    peers: dict[str, Peer] = field(default_factory=dict)
    #: (node_id, server_id) -> monotonic time until which a failed server is suspect
    server_suspect: dict[tuple[str, str], float] = field(default_factory=dict)

    def set_self(self, peer: Peer) -> None:
        self.peers[peer.node_id] = replace(peer, is_self=True, state=NodeState.ALIVE)

    def self_peer(self) -> Peer | None:
        for p in self.peers.values():
            if p.is_self:
                return p
        return None

    def upsert(self, peer: Peer, now: float) -> Peer | None:
        """Apply what a node announced. Returns the new entry, or None when refused."""
        old = self.peers.get(peer.node_id)
        if old is None and len(self.peers) >= self.max_peers:
            self._evict(now)
            if len(self.peers) >= self.max_peers:
                return None
        if old is not None and old.is_self:
            return old
        state = peer.state
        since = now
        if old is not None and old.state == state:
            since = old.since
        new = replace(peer, last_seen=now, since=since)
        if old is None or old.state != new.state:
            log.info("node %s (%s): %s", new.name, new.node_id[:8], new.state.value)
        self.peers[peer.node_id] = new
        return new

    def mark(self, node_id: str, state: NodeState, now: float) -> None:
        old = self.peers.get(node_id)
        if old is None or old.is_self or old.state == state:
            return
        log.info("node %s (%s): %s -> %s", old.name, node_id[:8], old.state.value, state.value)
        self.peers[node_id] = replace(old, state=state, since=now)

    def heard(self, node_id: str, now: float) -> Peer | None:
        """Proof of life without new state (a probe answered): back to alive if suspect."""
        old = self.peers.get(node_id)
        if old is None or old.is_self:
            return old
        new = replace(old, last_seen=now)
        if old.state in (NodeState.SUSPECT, NodeState.DOWN):
            log.info("node %s (%s): %s -> alive", old.name, node_id[:8], old.state.value)
            new = replace(new, state=NodeState.ALIVE, since=now)
        self.peers[node_id] = new
        return new

    def left(self, node_id: str, now: float) -> Peer | None:
        """A goodbye: the node is listed as left (and never routable) until forgotten."""
        self.mark(node_id, NodeState.LEFT, now)
        return self.peers.get(node_id)

    def interval_of(self, peer: Peer) -> float:
        return peer.interval if peer.interval > 0 else self.interval

    def tick(self, now: float) -> list[Peer]:
        """Advance states by silence. Returns the peers whose state changed."""
        changed = []
        for p in list(self.peers.values()):
            if p.is_self:
                continue
            silent = now - p.last_seen
            iv = self.interval_of(p)
            target = p.state
            if p.state in (NodeState.ALIVE, NodeState.JOINING) and \
                    silent > self.suspect_after * iv:
                target = NodeState.SUSPECT if p.state == NodeState.ALIVE else NodeState.DOWN
            if p.state == NodeState.SUSPECT and silent > self.down_after * iv:
                target = NodeState.DOWN
            if p.state in (NodeState.DOWN, NodeState.LEFT) and silent > self.forget_after:
                del self.peers[p.node_id]
                continue
            if target != p.state:
                self.mark(p.node_id, target, now)
                changed.append(self.peers[p.node_id])
        for key, until in list(self.server_suspect.items()):
            if until <= now:
                del self.server_suspect[key]
        return changed

    def server_failed(self, node_id: str, server_id: str, now: float,
                      hold: float | None = None) -> None:
        """Passive health: a request to this server failed as if it were down."""
        self.server_suspect[(node_id, server_id)] = now + (hold or 4 * self.interval)

    def is_server_suspect(self, node_id: str, server_id: str) -> bool:
        return (node_id, server_id) in self.server_suspect

    def snapshot(self) -> list[Peer]:
        """Every peer, this machine first, then by name."""
        return sorted(self.peers.values(), key=lambda p: (not p.is_self, p.name, p.node_id))

    def _evict(self, now: float) -> None:
        gone = [p for p in self.peers.values() if p.state in (NodeState.DOWN, NodeState.LEFT)]
        gone.sort(key=lambda p: p.last_seen)
        for p in gone[:1]:
            del self.peers[p.node_id]


def _server_to_dict(s: ServerState) -> dict[str, Any]:
    d = asdict(s)
    d.pop("api_key_env", None)  # names an environment variable of this machine only
    d["models"] = [asdict(m) for m in s.models]
    d["loaded"] = list(s.loaded)
    return d


def _server_from_dict(d: dict[str, Any]) -> ServerState:
    known = {f.name for f in fields(ServerState)}
    kw = {k: v for k, v in d.items() if k in known}
    kw["models"] = tuple(ModelInfo(**{k: v for k, v in m.items()
                                      if k in {f.name for f in fields(ModelInfo)}})
                         for m in d.get("models", ()))
    kw["loaded"] = tuple(d.get("loaded", ()))
    kw["degraded"] = tuple(d.get("degraded", ()))
    return ServerState(**kw)


def peer_to_dict(peer: Peer) -> dict[str, Any]:
    """A JSON-safe dict of a peer (for the control channel and `labrouter nodes --json`)."""
    d = asdict(peer)
    d["state"] = peer.state.value
    d["servers"] = [_server_to_dict(s) for s in peer.servers]
    d["routable"] = peer.routable
    return d


def peer_from_dict(d: dict[str, Any]) -> Peer:
    """The inverse of peer_to_dict; unknown keys are ignored."""
    known = {f.name for f in fields(Peer)}
    kw = {k: v for k, v in d.items() if k in known}
    kw["state"] = NodeState(d.get("state", NodeState.ALIVE.value))
    kw["servers"] = tuple(_server_from_dict(s) for s in d.get("servers", ()))
    return Peer(**kw)


def static_peers(name: str, servers: Iterable[ServerState]) -> list[Peer]:
    """The one-node table used when no daemon runs: this machine and its configured servers."""
    return [Peer(node_id="local", name=name, is_self=True, servers=tuple(servers))]
