"""The cluster's packet format: encode, decode, seal and open. No sockets.

Owns the clear 52-byte header, the sealing of the body with ChaCha20-Poly1305 under a
per-(sender, epoch) subkey derived from the cluster key (so nonces never repeat), the
announcement body (short JSON keys, strictly bounded, unknown keys ignored, truncation
when the model list does not fit), and ``Gate``: the receiving side's checks in the
order that keeps them cheap (length, magic, version, key id, timestamp, sequence window,
then the tag, then the body), with the challenge-response that makes a new sender or a
new epoch trusted, and a counter of drops by reason.

Every time is given (``now`` monotonic, ``wall`` Unix seconds). The layout and the numbers
are written down in docs/protocol.md. Must not import sockets, asyncio or app/.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import os
import re
import struct
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..core.peers import ModelInfo, Peer, ServerState

MAGIC = b"LRTR"
VERSION = 1  # major version: receivers drop newer ones (counted, logged once per source)
HEADER = struct.Struct(">4sBBBB4s16sQQQ")
HEADER_SIZE = HEADER.size  # 52
TAG_SIZE = 16
MAX_PACKET = 1200  # IPv6 minimum MTU 1280 - 40 - 8 = 1232; Tailscale MTU 1280
MAX_BODY = MAX_PACKET - HEADER_SIZE - TAG_SIZE  # 1132
MIN_PACKET = HEADER_SIZE + TAG_SIZE
WINDOW = 64  # sequence numbers remembered per (sender, epoch), as RFC 4303 recommends
TS_WINDOW = 300.0  # seconds of clock difference tolerated
HKDF_INFO = b"labrouter/v1/udp"
MAX_MODELS = 64
MAX_LOADED = 8
MAX_SERVERS = 8
MAX_NAME = 96
MIN_INTERVAL_MS = 50  # a sender's announced interval is clamped to 50 ms .. 60 s

# packet types
ANNOUNCE = 1
LEAVE = 2
PROBE = 3
PROBE_ACK = 4
STATE_REQ = 5
TYPES = {ANNOUNCE: "announce", LEAVE: "leave", PROBE: "probe", PROBE_ACK: "probe_ack",
         STATE_REQ: "state_req"}

# flags
SOLICIT = 0x01  # "answer me with your full state now" (sent at start)
FULL_STATE = 0x02  # the body carries the model lists
TRUNCATED = 0x04  # some models did not fit; fetch them over HTTP

# drop reasons, in the order they are checked
DROP_REASONS = ("short", "long", "magic", "newer_version", "old_version", "type",
                "unknown_key", "self", "clock", "old_epoch", "replay", "senders_full",
                "bad_tag", "bad_body")


class Drop(Exception):
    """A packet was refused; ``reason`` is one of DROP_REASONS."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def key_id(cluster_key: bytes) -> bytes:
    """The 4-byte id of a cluster key, sent in the clear so the keyring can pick the key."""
    return hashlib.sha256(b"labrouter/keyid" + cluster_key).digest()[:4]


def subkey(cluster_key: bytes, sender_id: bytes, epoch: int) -> bytes:
    """The AEAD key of one sender in one epoch: HKDF-SHA256 over the cluster key."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=sender_id + epoch.to_bytes(8, "big"),
                info=HKDF_INFO).derive(cluster_key)


def nonce(seq: int) -> bytes:
    return b"\0\0\0\0" + seq.to_bytes(8, "big")


@dataclass(frozen=True)
class Header:
    type: int
    flags: int
    key_id: bytes
    sender_id: bytes
    epoch: int
    seq: int
    ts_ms: int
    version: int = VERSION

    def pack(self) -> bytes:
        return HEADER.pack(MAGIC, self.version, self.type, self.flags, 0, self.key_id,
                           self.sender_id, self.epoch, self.seq, self.ts_ms)


def parse_header(data: bytes) -> Header:
    """The clear header, checked for size, magic, version and type. Raises Drop."""
    if len(data) < MIN_PACKET:
        raise Drop("short", f"{len(data)} bytes")
    if len(data) > MAX_PACKET:
        raise Drop("long", f"{len(data)} bytes")
    magic, version, ptype, flags, _r, kid, sender, epoch, seq, ts = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise Drop("magic")
    if version > VERSION:
        raise Drop("newer_version", f"version {version}")
    if version < VERSION:
        raise Drop("old_version", f"version {version}")
    if ptype not in TYPES:
        raise Drop("type", f"type {ptype}")
    return Header(ptype, flags, kid, sender, epoch, seq, ts, version)


def encode_body(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


class Sealer:
    """Seals this node's packets: one subkey per (sender, epoch), seq from 1."""

    def __init__(self, cluster_key: bytes, sender_id: bytes, epoch: int) -> None:
        self.set_key(cluster_key)
        self.sender_id = sender_id
        self.epoch = epoch
        self.seq = 0

    def set_key(self, cluster_key: bytes) -> None:
        self.cluster_key = cluster_key
        self.key_id = key_id(cluster_key)
        self._aead: ChaCha20Poly1305 | None = None

    def seal(self, ptype: int, body: Mapping[str, Any] | bytes, wall: float,
             flags: int = 0) -> bytes:
        raw = body if isinstance(body, bytes) else encode_body(body)
        if len(raw) > MAX_BODY:
            raise ValueError(f"body of {len(raw)} bytes exceeds {MAX_BODY}")
        if self._aead is None:
            self._aead = ChaCha20Poly1305(subkey(self.cluster_key, self.sender_id, self.epoch))
        self.seq += 1
        head = Header(ptype, flags, self.key_id, self.sender_id, self.epoch, self.seq,
                      max(0, int(wall * 1000))).pack()
        return head + self._aead.encrypt(nonce(self.seq), raw, head)


class Window:
    """Sliding anti-replay window over sequence numbers (64 wide)."""

    __slots__ = ("highest", "bits")

    def __init__(self) -> None:
        self.highest = 0
        self.bits = 0  # bit i set: highest - i was seen

    def check(self, seq: int) -> bool:
        if seq <= 0:
            return False
        if seq > self.highest:
            return True
        off = self.highest - seq
        return off < WINDOW and not (self.bits >> off) & 1

    def update(self, seq: int) -> None:
        """Mark ``seq`` seen. O(1) for any jump: a shift of WINDOW or more clears every bit
        (a shift by the jump itself would build a 2^63-bit integer for one packet)."""
        if seq > self.highest:
            shift = seq - self.highest
            self.bits = 1 if shift >= WINDOW else \
                ((self.bits << shift) | 1) & ((1 << WINDOW) - 1)
            self.highest = seq
        else:
            off = self.highest - seq
            if off < WINDOW:
                self.bits |= 1 << off


@dataclass
class _Sender:
    epoch: int = 0  # the trusted epoch (0: none yet)
    window: Window = field(default_factory=Window)
    pending_epoch: int = 0
    pending_window: Window = field(default_factory=Window)
    retired: list[int] = field(default_factory=list)  # epochs replaced, refused from now on
    challenge: bytes = b""
    challenge_at: float = -1e9
    last: float = 0.0


@dataclass(frozen=True)
class Opened:
    """A packet that passed every check."""

    header: Header
    body: dict[str, Any]
    trusted: bool  # from the sender's trusted epoch (or it just became trusted)
    promoted: bool = False  # this PROBE_ACK answered our challenge: its epoch is now trusted
    #: this PROBE_ACK answered our outstanding challenge in time: when that challenge was
    #: sent (monotonic), the latest moment the sender is known to have been alive
    answered_at: float | None = None

    @property
    def sender(self) -> str:
        return self.header.sender_id.hex()


class Gate:
    """The receiving side: checks, opens and counts packets; tracks senders and epochs.

    ``keys`` maps a 4-byte key id to a cluster key (the keyring). A sender's packets are
    *trusted* only in the epoch that answered one of our challenges.
    """

    def __init__(self, own_id: bytes, keys: Callable[[], Mapping[bytes, bytes]],
                 max_senders: int = 256, rand: Callable[[int], bytes] = os.urandom,
                 answer_within: float = 2.0) -> None:
        self.own_id = own_id
        #: seconds a challenge may be answered in; a later answer (held back on the path)
        #: proves nothing about now
        self.answer_within = answer_within
        self.keys = keys
        self.max_senders = max_senders
        self.rand = rand
        self.drops: Counter[str] = Counter()
        self.accepted = 0
        self.senders: OrderedDict[bytes, _Sender] = OrderedDict()
        self._aeads: OrderedDict[tuple[bytes, bytes, int], ChaCha20Poly1305] = OrderedDict()

    def open(self, data: bytes, now: float, wall: float) -> Opened:
        """The opened packet, or ``Drop``: nothing else leaves, whatever the packet says."""
        try:
            return self._open(data, now, wall)
        except Drop as d:
            self.drops[d.reason] += 1
            raise
        except (ValueError, TypeError, OverflowError, RecursionError, MemoryError) as exc:
            # a bug's safety net: a packet must never take the receiver down
            self.drops["bad_body"] += 1
            raise Drop("bad_body", type(exc).__name__) from None

    def _open(self, data: bytes, now: float, wall: float) -> Opened:
        h = parse_header(data)
        key = self.keys().get(h.key_id)
        if key is None:
            raise Drop("unknown_key", h.key_id.hex())
        if h.sender_id == self.own_id:
            raise Drop("self")
        if abs(h.ts_ms / 1000.0 - wall) > TS_WINDOW:
            raise Drop("clock", f"{h.ts_ms / 1000.0 - wall:+.0f} s")
        st = self.senders.get(h.sender_id)
        if st is not None:
            if h.epoch in st.retired:
                raise Drop("old_epoch")
            win = st.window if h.epoch == st.epoch else (
                st.pending_window if h.epoch == st.pending_epoch else None)
            if win is not None and not win.check(h.seq):
                raise Drop("replay", f"seq {h.seq}")
        elif len(self.senders) >= self.max_senders and not self._evict(now):
            raise Drop("senders_full")
        if h.seq <= 0:
            raise Drop("replay", "seq 0")
        aead = self._aead(key, h.key_id, h.sender_id, h.epoch)
        try:
            raw = aead.decrypt(nonce(h.seq), data[HEADER_SIZE:], data[:HEADER_SIZE])
        except InvalidTag:
            raise Drop("bad_tag") from None
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            raise Drop("bad_body", "not JSON") from None
        if not isinstance(body, dict):
            raise Drop("bad_body", "not an object")
        # authentic from here on: only now may state change
        if st is None:
            st = _Sender()
            self.senders[h.sender_id] = st
        self.senders.move_to_end(h.sender_id)
        st.last = now
        self.accepted += 1
        answered = (h.type == PROBE_ACK and bool(st.challenge) and
                    body.get("c") == st.challenge.hex() and
                    now - st.challenge_at <= self.answer_within)
        if h.epoch == st.epoch:
            st.window.update(h.seq)
            if answered:
                st.challenge = b""
                st.pending_epoch = 0
                return Opened(h, body, trusted=True, answered_at=st.challenge_at)
            return Opened(h, body, trusted=True)
        if h.epoch != st.pending_epoch:
            st.pending_epoch = h.epoch
            st.pending_window = Window()
        st.pending_window.update(h.seq)
        if answered:
            if st.epoch:
                st.retired = ([*st.retired, st.epoch])[-4:]
            st.epoch, st.window = h.epoch, st.pending_window
            st.pending_epoch, st.pending_window = 0, Window()
            st.challenge = b""
            return Opened(h, body, trusted=True, promoted=True, answered_at=st.challenge_at)
        return Opened(h, body, trusted=False)

    def challenge(self, sender_id: bytes, now: float, min_gap: float = 0.25,
                  reuse_within: float = 0.0) -> bytes | None:
        """A fresh challenge for this sender, or None if one was sent less than min_gap ago.

        With ``reuse_within``, a challenge made less than that long ago is returned again
        (its time unchanged: an answer proves life as of when it was first made)."""
        st = self.senders.get(sender_id)
        if st is None:
            return None
        if st.challenge and now - st.challenge_at < reuse_within:
            return st.challenge
        if st.challenge and now - st.challenge_at < min_gap:
            return None
        st.challenge = self.rand(16)
        st.challenge_at = now
        return st.challenge

    def is_trusted(self, sender_id: bytes, epoch: int) -> bool:
        st = self.senders.get(sender_id)
        return st is not None and st.epoch == epoch and epoch != 0

    def forget(self, sender_id: bytes) -> None:
        """A goodbye: the epoch is retired so its packets are refused from now on."""
        st = self.senders.get(sender_id)
        if st is not None and st.epoch:
            st.retired = ([*st.retired, st.epoch])[-4:]
            st.epoch, st.window = 0, Window()

    def _evict(self, now: float) -> bool:
        """Drop the sender heard from longest ago if it has been silent for 60 s."""
        for sid, st in self.senders.items():
            if now - st.last > 60.0:
                del self.senders[sid]
                return True
            break
        return False

    def _aead(self, key: bytes, kid: bytes, sender: bytes, epoch: int) -> ChaCha20Poly1305:
        k = (kid, sender, epoch)
        aead = self._aeads.get(k)
        if aead is None:
            aead = ChaCha20Poly1305(subkey(key, sender, epoch))
            self._aeads[k] = aead
            while len(self._aeads) > 2 * self.max_senders:
                self._aeads.popitem(last=False)
        else:
            self._aeads.move_to_end(k)
        return aead


# ------------------------------------------------------------------ announcement body


# C0/C1 controls (terminal escapes in `labrouter nodes`), bidi overrides and invisible
# format characters (a name that reads as another), lone surrogates (json.loads makes them
# from "\ud800"; printing one raises UnicodeEncodeError)
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e"
                          "\u2060-\u206f\ufeff\ud800-\udfff]")


def _s(v: Any, limit: int = MAX_NAME) -> str:
    return _UNPRINTABLE.sub("", v[:limit]) if isinstance(v, str) else ""


def _addr(v: Any) -> str:
    """An IP address literal, else "" (the datagram's source is used): a host name here
    would make the event loop's sendto resolve it, blocking, for every probe."""
    try:
        return str(ipaddress.ip_address(v)) if isinstance(v, str) and len(v) <= 64 else ""
    except ValueError:
        return ""


def _i(v: Any, lo: int = 0, hi: int = 2**31) -> int:
    # NaN passes min/max unchanged and int(NaN) raises: json.loads reads a bare NaN
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
        return lo
    return int(min(max(v, lo), hi))


def _f(v: Any, lo: float = 0.0, hi: float = 1e12) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
        return lo
    return float(min(max(v, lo), hi))


def _model_out(m: ModelInfo) -> list[Any]:
    out: list[Any] = [m.name, m.size, round(m.params_b, 3), int(m.vision)]
    if m.family:
        out.append(m.family)
    return out


def _model_in(v: Any) -> ModelInfo | None:
    if isinstance(v, str):
        return ModelInfo(name=_s(v)) if _s(v) else None
    if not isinstance(v, list) or not v or not isinstance(v[0], str) or not v[0]:
        return None
    def get(i: int) -> Any:
        return v[i] if len(v) > i else None

    if not _s(v[0]):
        return None
    return ModelInfo(name=_s(v[0]), size=_i(get(1), 0, 2**62),
                     params_b=_f(get(2), 0.0, 1e6), vision=bool(get(3)),
                     family=_s(get(4), 32))


def announce_body(peer: Peer, interval: float, state_version: int, full: bool,
                  max_body: int = MAX_BODY) -> tuple[bytes, int]:
    """The body of this node's announcement and its flags (FULL_STATE, TRUNCATED)."""
    body: dict[str, Any] = {
        "n": peer.name[:63], "iv": int(interval * 1000), "sv": state_version,
        "q": peer.in_flight,
    }
    if peer.address:
        body["a"] = peer.address
    if peer.port:
        body["pt"] = peer.port
    if full:  # what rarely changes rides only with the full state
        body["os"], body["v"] = peer.os[:16], peer.version[:16]
        if peer.relay_port:
            body["rp"] = peer.relay_port
        if peer.cert_fingerprint:
            body["fp"] = peer.cert_fingerprint
    if peer.paused:
        body["p"] = 1
        if peer.pause_reason:
            body["pr"] = peer.pause_reason[:80]
        if peer.paused_until is not None and math.isfinite(peer.paused_until):
            # int(inf) raises: an announcement must never fail, or peers mark us down
            body["pu"] = int(peer.paused_until)
    servers = []
    for s in peer.servers[:MAX_SERVERS]:
        d: dict[str, Any] = {"i": s.id[:32], "k": s.kind[:8], "u": int(s.up)}
        if s.loaded:
            d["l"] = [x[:MAX_NAME] for x in s.loaded[:MAX_LOADED]]
        if s.degraded:
            d["dg"] = [x[:MAX_NAME] for x in s.degraded[:MAX_LOADED]]
        if s.in_flight:
            d["q"] = s.in_flight
        if s.error and not s.up:
            d["e"] = s.error[:80]
        if s.is_cloud:
            d["ci"], d["co"] = s.cost_input_per_1k, s.cost_output_per_1k
        if full:
            d["m"] = [_model_out(m) for m in s.models[:MAX_MODELS]]
            if s.models_truncated or len(s.models) > MAX_MODELS:
                d["t"] = 1
        servers.append(d)
    body["s"] = servers
    flags = FULL_STATE if full else 0
    raw = encode_body(body)
    if full and any(d.get("t") for d in servers):
        flags |= TRUNCATED
    # too big: drop models from the longest list until it fits, marking it truncated
    while len(raw) > max_body:
        longest = max(servers, key=lambda d: len(d.get("m", ())), default=None)
        if longest is None or not longest.get("m"):
            # still too big without models: drop loaded lists, then whole servers
            if any(d.get("l") or d.get("dg") for d in servers):
                for d in servers:
                    d.pop("l", None)
                    d.pop("dg", None)
            elif servers:
                servers.pop()
            else:
                body.pop("pr", None)
                body["n"] = body["n"][:16]
            raw = encode_body(body)
            flags |= TRUNCATED
            if len(raw) > max_body and not servers and "pr" not in body:
                break
            continue
        per_model = len(encode_body(longest["m"])) / len(longest["m"])
        drop = max(1, int((len(raw) - max_body) / per_model))
        del longest["m"][-drop:]
        longest["t"] = 1
        flags |= TRUNCATED
        raw = encode_body(body)
    return raw, flags


@dataclass(frozen=True)
class Announcement:
    """What an announcement body says, validated and bounded."""

    name: str
    os: str
    version: str
    interval: float
    state_version: int
    in_flight: int
    address: str
    port: int
    relay_port: int
    cert_fingerprint: str
    paused: bool
    pause_reason: str
    paused_until: float | None
    servers: tuple[ServerState, ...]
    full: bool


def parse_announce(body: Mapping[str, Any], flags: int) -> Announcement:
    """Validate an announcement body. Unknown keys are ignored; bad values are clamped."""
    full = bool(flags & FULL_STATE)
    servers: list[ServerState] = []
    raw_servers = body.get("s")
    for d in raw_servers[:MAX_SERVERS] if isinstance(raw_servers, list) else ():
        if not isinstance(d, dict) or not _s(d.get("i"), 32):
            continue
        loaded = d.get("l")
        degraded = d.get("dg")
        models = d.get("m")
        ms = tuple(m for m in (_model_in(x) for x in
                               (models[:MAX_MODELS] if isinstance(models, list) else ()))
                   if m is not None)
        servers.append(ServerState(
            id=_s(d.get("i"), 32), url="", kind=_s(d.get("k"), 8) or "ollama",
            up=bool(d.get("u", 1)),
            models=ms,
            loaded=tuple(_s(x) for x in (loaded[:MAX_LOADED] if isinstance(loaded, list)
                                          else ()) if isinstance(x, str) and x),
            in_flight=_i(d.get("q"), 0, 10**6),
            cost_input_per_1k=_f(d.get("ci"), 0.0, 1e6),
            cost_output_per_1k=_f(d.get("co"), 0.0, 1e6),
            models_truncated=bool(d.get("t")),
            error=_s(d.get("e"), 80),
            degraded=tuple(_s(x) for x in (degraded[:MAX_LOADED] if isinstance(degraded, list)
                                            else ()) if isinstance(x, str) and x),
        ))
    pu = body.get("pu")
    return Announcement(
        name=_s(body.get("n"), 63) or "?", os=_s(body.get("os"), 16),
        version=_s(body.get("v"), 16),
        interval=_i(body.get("iv"), MIN_INTERVAL_MS, 60_000) / 1000.0,
        state_version=_i(body.get("sv"), 0, 2**32),
        in_flight=_i(body.get("q"), 0, 10**6),
        address=_addr(body.get("a")), port=_i(body.get("pt"), 0, 65535),
        relay_port=_i(body.get("rp"), 0, 65535), cert_fingerprint=_s(body.get("fp"), 128),
        paused=bool(body.get("p")), pause_reason=_s(body.get("pr"), 80),
        paused_until=_f(pu, 0.0, 1e11) if isinstance(pu, (int, float)) and
        not isinstance(pu, bool) else None,
        servers=tuple(servers), full=full,
    )
