"""Relay pieces without sockets: the key proof, the certificate, the doctor's exposure check."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from labrouter.app.paths import write_private
from labrouter.backends.base import ChatChunk, ChatMessage, ChatOptions
from labrouter.core.errors import BackendTimeout, ModelNotFound, Refused, ServerFailure
from labrouter.core.peers import ModelInfo
from labrouter.relay import (
    chunk_from_json,
    chunk_to_json,
    error_from_json,
    error_to_json,
    messages_from_json,
    messages_to_json,
    model_from_json,
    model_to_json,
    options_from_json,
    options_to_json,
)
from labrouter.relay.auth import (
    HEADER_PROOF,
    ProofError,
    ProofVerifier,
    RequestSigner,
    derive_relay_key,
)
from labrouter.relay.server import listening_addresses, ollama_exposure
from labrouter.relay.tls import ensure_identity, normalize_fingerprint

KEY = bytes(range(32))
NOW = 1_800_000_000.0


def signed(body: bytes = b"{}", now: float = NOW, key: bytes = KEY, nonce: str | None = None,
           path: str = "/relay/v1/chat") -> dict[str, str]:
    return RequestSigner.from_cluster_key(key).headers("POST", path, body, now, nonce)


# ------------------------------------------------------------------ proof


def test_the_relay_key_is_derived_not_the_cluster_key() -> None:
    k = derive_relay_key(KEY)
    assert len(k) == 32 and k != KEY
    assert derive_relay_key(KEY) == k
    with pytest.raises(ValueError):
        derive_relay_key(b"short")


def test_a_signed_request_passes_once() -> None:
    v = ProofVerifier([KEY])
    h = signed()
    v.check("POST", "/relay/v1/chat", h, b"{}", NOW + 1)
    with pytest.raises(ProofError, match="replayed"):
        v.check("POST", "/relay/v1/chat", h, b"{}", NOW + 2)


@pytest.mark.parametrize("change", ["method", "path", "body", "proof", "key"])
def test_any_change_breaks_the_proof(change: str) -> None:
    v = ProofVerifier([KEY])
    h = signed(key=bytes(32) if change == "key" else KEY)
    method = "GET" if change == "method" else "POST"
    path = "/relay/v1/unload" if change == "path" else "/relay/v1/chat"
    body = b'{"x":1}' if change == "body" else b"{}"
    if change == "proof":
        h[HEADER_PROOF] = "0" * 64
    with pytest.raises(ProofError, match="cluster keys differ"):
        v.check(method, path, h, body, NOW)


@pytest.mark.parametrize("skew", [-61.0, 61.0, 3600.0])
def test_outside_the_time_window(skew: float) -> None:
    v = ProofVerifier([KEY], window=60)
    with pytest.raises(ProofError, match="clock"):
        v.check("POST", "/relay/v1/chat", signed(now=NOW + skew), b"{}", NOW)


def test_inside_the_time_window() -> None:
    v = ProofVerifier([KEY], window=60)
    v.check("POST", "/relay/v1/chat", signed(now=NOW - 59), b"{}", NOW)
    v.check("POST", "/relay/v1/chat", signed(now=NOW + 59), b"{}", NOW)


@pytest.mark.parametrize("drop", ["X-Labrouter-Time", "X-Labrouter-Nonce", "X-Labrouter-Proof"])
def test_missing_headers(drop: str) -> None:
    h = signed()
    del h[drop]
    with pytest.raises(ProofError, match="no key proof"):
        ProofVerifier([KEY]).check("POST", "/relay/v1/chat", h, b"{}", NOW)


def test_malformed_headers() -> None:
    v = ProofVerifier([KEY])
    for key, value in (("X-Labrouter-Time", "soon"), ("X-Labrouter-Nonce", "zz" * 16),
                       ("X-Labrouter-Proof", "abc")):
        h = signed()
        h[key] = value
        with pytest.raises(ProofError, match="malformed"):
            v.check("POST", "/relay/v1/chat", h, b"{}", NOW)


def test_every_key_of_the_ring_is_accepted_and_read_each_time() -> None:
    ring = [KEY]
    v = ProofVerifier(lambda: ring)
    new = bytes(range(2, 34))
    with pytest.raises(ProofError):
        v.check("POST", "/relay/v1/chat", signed(key=new), b"{}", NOW)
    ring.append(new)  # a key added while running counts at once
    v.check("POST", "/relay/v1/chat", signed(key=new), b"{}", NOW)
    v.check("POST", "/relay/v1/chat", signed(key=KEY), b"{}", NOW)


def test_the_replay_cache_is_bounded_and_never_lets_an_evicted_nonce_back() -> None:
    v = ProofVerifier([KEY], cache_size=4)
    sent = []
    for i in range(10):
        h = signed(now=NOW + i * 0.001)
        v.check("POST", "/relay/v1/chat", h, b"{}", NOW)
        sent.append(h)
    assert len(v._seen) == 4
    for h in sent:  # evicted or cached: every one of them is refused
        with pytest.raises(ProofError):
            v.check("POST", "/relay/v1/chat", h, b"{}", NOW)
    v.check("POST", "/relay/v1/chat", signed(now=NOW + 1), b"{}", NOW)  # fresh ones pass


def test_nonces_expire_with_the_window() -> None:
    v = ProofVerifier([KEY], window=60)
    for i in range(5):
        v.check("POST", "/relay/v1/chat", signed(now=NOW + i), b"{}", NOW + i)
    v.check("POST", "/relay/v1/chat", signed(now=NOW + 200), b"{}", NOW + 200)
    assert len(v._seen) == 1


def test_a_bad_proof_does_not_enter_the_cache() -> None:
    v = ProofVerifier([KEY], cache_size=2)
    for _ in range(5):
        with pytest.raises(ProofError):
            v.check("POST", "/relay/v1/chat", signed(key=bytes(32)), b"{}", NOW)
    assert not v._seen


# ------------------------------------------------------------------ certificate


def test_the_certificate_is_made_once_with_a_private_key(tmp_path: Path) -> None:
    a = ensure_identity(tmp_path / "tls", write_private, common_name="gpu-box")
    assert len(a.fingerprint) == 64
    if os.name != "nt":
        assert stat.S_IMODE(a.key_file.stat().st_mode) == 0o600
    b = ensure_identity(tmp_path / "tls", write_private)
    assert b.fingerprint == a.fingerprint
    a.server_context()  # loads


def test_a_damaged_certificate_is_replaced(tmp_path: Path) -> None:
    a = ensure_identity(tmp_path / "tls", write_private)
    a.cert_file.write_text("garbage")
    b = ensure_identity(tmp_path / "tls", write_private)
    assert b.fingerprint != a.fingerprint


def test_fingerprint_forms() -> None:
    fp = "AB:" * 31 + "CD"
    assert normalize_fingerprint(fp) == ("ab" * 31 + "cd")
    with pytest.raises(ValueError):
        normalize_fingerprint("abcd")


# ------------------------------------------------------------------ wire codec


def test_the_codec_round_trips() -> None:
    msgs = [ChatMessage("system", "be brief"), ChatMessage("user", "hi", ("aGk=",))]
    assert messages_from_json(messages_to_json(msgs)) == msgs
    opts = ChatOptions(temperature=0.2, seed=7, max_tokens=10, keep_alive="5m",
                       extra={"num_ctx": 4096})
    assert options_from_json(options_to_json(opts)) == opts
    assert options_from_json(None) is None
    c = ChatChunk("x", True, 3, 4, "stop")
    assert chunk_from_json(chunk_to_json(c)) == c
    m = ModelInfo("llava:7b", 1, 7.0, True, "llava")
    assert model_from_json(model_to_json(m)) == m


def test_errors_keep_their_type_across_the_wire() -> None:
    for exc in (ModelNotFound("gone", hint="pull it"), Refused("paused"),
                BackendTimeout("slow")):
        back = error_from_json(error_to_json(exc))
        assert type(back) is type(exc) and back is not None and back.message == exc.message
    assert isinstance(error_from_json({"error": "plain"}), ServerFailure)
    assert isinstance(error_from_json({"error": {"type": "Evil", "message": "x"}}),
                      ServerFailure)
    assert error_from_json({"text": "ok"}) is None


# ------------------------------------------------------------------ doctor


def _none(port: int) -> list[str]:
    return []


def test_exposure_from_ollama_host() -> None:
    msg = ollama_exposure(env={"OLLAMA_HOST": "0.0.0.0:11434"}, listeners=_none)
    assert msg is not None and "OLLAMA_HOST=0.0.0.0:11434" in msg and "127.0.0.1" in msg
    assert ollama_exposure(env={"OLLAMA_HOST": "http://[::]:11434"}, listeners=_none)
    assert ollama_exposure(env={"OLLAMA_HOST": "127.0.0.1:11434"}, listeners=_none) is None
    assert ollama_exposure(env={"OLLAMA_HOST": "localhost"}, listeners=_none) is None
    assert ollama_exposure(env={}, listeners=_none) is None


def test_exposure_from_listening_addresses() -> None:
    def on(*addrs: str) -> Callable[[int], list[str]]:
        return lambda port: list(addrs) if port == 11434 else []

    assert "0.0.0.0" in (ollama_exposure(env={}, listeners=on("0.0.0.0")) or "")
    assert "::" in (ollama_exposure(env={}, listeners=on("::")) or "")
    assert "non-loopback" in (ollama_exposure(env={}, listeners=on("192.168.1.5")) or "")
    assert "non-loopback IPv6" in (ollama_exposure(env={}, listeners=on("fe80::1%eth0")) or "")
    assert ollama_exposure(env={}, listeners=on("127.0.0.1", "::1", "::ffff:127.0.0.1")) is None
    # the port comes from the configured URL
    assert ollama_exposure("http://127.0.0.1:11435", env={}, listeners=on("0.0.0.0")) is None
    assert ollama_exposure("http://127.0.0.1:11434", env={}, listeners=on("0.0.0.0"))


def test_listening_addresses_sees_a_real_listener() -> None:
    """psutil finds a socket this test listens on, with its address, and not a closed one."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert listening_addresses(port) == []  # bound, not listening
        s.listen()
        assert listening_addresses(port) == ["127.0.0.1"]
    assert ollama_exposure(f"http://127.0.0.1:{port}", env={}) is None


def test_exposure_on_this_machine_runs() -> None:
    result = ollama_exposure(env={})
    assert result is None or "Ollama" in result
