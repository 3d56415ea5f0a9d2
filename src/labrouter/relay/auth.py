"""Proof, on every relay request, that the sender holds the cluster key.

Owns the relay key derivation (HKDF-SHA256 from the 32-byte cluster key, info
``b"labrouter relay v1"``), the request signature (HMAC-SHA256 over method, path, timestamp,
nonce and the body's SHA-256) carried in three headers, and its check: a time window and a
bounded replay cache of nonces.

Why both TLS pinning and a proof: pinning protects the client (the prompt only goes to the
machine that announced that certificate); the proof protects the server (a device on the
LAN that reaches the port but lacks the key gets 401 and never reaches Ollama).

Must not import aiohttp, ``app`` or ``desktop``: it works on bytes and strings, and the time
is given to it, so the window and the replay cache are tested without sleeping.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HKDF_INFO = b"labrouter relay v1"
HEADER_TIME = "X-Labrouter-Time"  # milliseconds since the epoch (wall clock)
HEADER_NONCE = "X-Labrouter-Nonce"  # 16 random bytes, hex
HEADER_PROOF = "X-Labrouter-Proof"  # HMAC-SHA256, hex
#: SHA-256 of the body, hex: the proof covers it, so the proof is checked from the headers
#: alone and a stranger is refused before the relay reads (buffers) any of the body
HEADER_BODY = "X-Labrouter-Body"
#: a request older or newer than this is refused; wall clocks of a home lab drift by
#: seconds, not minutes, and a short window keeps the replay cache small
DEFAULT_WINDOW = 60.0
DEFAULT_CACHE_SIZE = 16384


class ProofError(Exception):
    """A request whose key proof is missing, malformed, stale, wrong or replayed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def derive_relay_key(cluster_key: bytes) -> bytes:
    """The relay's HMAC key: separate from the UDP keys, so one use cannot serve the other."""
    if len(cluster_key) < 16:
        raise ValueError("the cluster key is too short")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(
        cluster_key)


def canonical(method: str, path: str, ts_ms: int, nonce: str, body: bytes) -> bytes:
    """What the HMAC covers. Newlines separate fields; none of them may contain one."""
    return _canonical(method, path, ts_ms, nonce, hashlib.sha256(body).hexdigest())


def _canonical(method: str, path: str, ts_ms: int, nonce: str, digest: str) -> bytes:
    return f"{method.upper()}\n{path}\n{ts_ms}\n{nonce}\n{digest}".encode()


def _mac(key: bytes, message: bytes) -> str:
    return hmac.new(key, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class RequestSigner:
    """Signs outgoing relay requests with the relay key of the primary cluster key."""

    relay_key: bytes

    @classmethod
    def from_cluster_key(cls, cluster_key: bytes) -> RequestSigner:
        return cls(derive_relay_key(cluster_key))

    def headers(self, method: str, path: str, body: bytes, now: float,
                nonce: str | None = None) -> dict[str, str]:
        """The proof headers for one request; ``now`` is wall-clock seconds."""
        nonce = nonce or secrets.token_hex(16)
        ts_ms = int(now * 1000)
        digest = hashlib.sha256(body).hexdigest()
        proof = _mac(self.relay_key, _canonical(method, path, ts_ms, nonce, digest))
        return {HEADER_TIME: str(ts_ms), HEADER_NONCE: nonce, HEADER_PROOF: proof,
                HEADER_BODY: digest}


class ProofVerifier:
    """Checks the proof on incoming requests. Used on the event loop's thread only.

    Every cluster key of the keyring is accepted, so a rotation (new key added everywhere,
    then made active) keeps working during the transition.

    The replay cache keeps every nonce seen within the window. It is bounded: when it is
    full the oldest entry is dropped and its timestamp becomes a floor below which every
    request is refused, so a dropped nonce can never be replayed; legitimate requests carry
    the current time and stay above the floor.
    """

    def __init__(self, cluster_keys: Sequence[bytes] | Callable[[], Sequence[bytes]],
                 window: float = DEFAULT_WINDOW, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        # a callable is asked on every request, so a key added to the keyring while the
        # daemon runs is accepted at once
        self._source = cluster_keys
        self._derived: dict[bytes, bytes] = {}
        self.window_ms = int(window * 1000)
        self.cache_size = cache_size
        self._seen: OrderedDict[str, int] = OrderedDict()  # nonce -> ts_ms, arrival order
        self._floor_ms = 0

    @property
    def relay_keys(self) -> list[bytes]:
        keys = self._source() if callable(self._source) else self._source
        out = []
        for k in keys:
            if k not in self._derived:
                self._derived[k] = derive_relay_key(k)
            out.append(self._derived[k])
        return out

    def check_time(self, headers: Mapping[str, str], now: float) -> None:
        """The cheap part, before the body is read: headers present, time in the window."""
        ts_ms, nonce, proof = self._fields(headers)
        now_ms = int(now * 1000)
        if abs(now_ms - ts_ms) > self.window_ms:
            raise ProofError(
                f"request time is {abs(now_ms - ts_ms) / 1000:.0f} s away from this "
                f"machine's clock (allowed: {self.window_ms / 1000:.0f} s)")

    def check(self, method: str, path: str, headers: Mapping[str, str], body: bytes,
              now: float) -> None:
        """Raise ProofError unless the request is signed, fresh and not seen before."""
        self.check_body(headers, body)
        self.check_headers(method, path, headers, now)

    def check_body(self, headers: Mapping[str, str], body: bytes) -> None:
        """The body is the one the proof covers (after ``check_headers``, once it is read)."""
        if not hmac.compare_digest(hashlib.sha256(body).hexdigest(),
                                   headers.get(HEADER_BODY) or ""):
            raise ProofError("bad key proof (the body was changed, or the cluster keys differ)")

    def check_headers(self, method: str, path: str, headers: Mapping[str, str],
                      now: float) -> None:
        """Everything but the body, before it is read: the time, the HMAC over the body's
        announced digest, the replay cache. Then ``check_body`` once the body is in."""
        self.check_time(headers, now)
        ts_ms, nonce, proof = self._fields(headers)
        digest = headers.get(HEADER_BODY) or ""
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ProofError("no body digest (is the sender an older labrouter? update it)")
        message = _canonical(method, path, ts_ms, nonce, digest)
        if not any(hmac.compare_digest(_mac(k, message), proof) for k in self.relay_keys):
            raise ProofError("bad key proof (the cluster keys differ)")
        # only a correctly signed request may enter the cache, so strangers cannot flush it
        self._expire(int(now * 1000))
        if nonce in self._seen or ts_ms <= self._floor_ms:
            raise ProofError("replayed request")
        self._seen[nonce] = ts_ms
        while len(self._seen) > self.cache_size:
            _, dropped = self._seen.popitem(last=False)
            self._floor_ms = max(self._floor_ms, dropped)

    def _expire(self, now_ms: int) -> None:
        # entries leave in arrival order; a request outside the window is refused anyway,
        # so forgetting its nonce cannot let a replay through
        limit = now_ms - self.window_ms
        while self._seen:
            nonce, ts = next(iter(self._seen.items()))
            if ts >= limit:
                break
            del self._seen[nonce]

    @staticmethod
    def _fields(headers: Mapping[str, str]) -> tuple[int, str, str]:
        ts, nonce, proof = (headers.get(HEADER_TIME), headers.get(HEADER_NONCE),
                            headers.get(HEADER_PROOF))
        if not ts or not nonce or not proof:
            raise ProofError("no key proof (is the sender a labrouter daemon of this cluster?)")
        if not ts.isdigit() or len(ts) > 16:
            raise ProofError("malformed timestamp")
        if not 16 <= len(nonce) <= 64 or any(c not in "0123456789abcdef" for c in nonce):
            raise ProofError("malformed nonce")
        if len(proof) != 64:
            raise ProofError("malformed proof")
        return int(ts), nonce, proof
