"""Property tests of the packet format: round trip, tampering, replays, epochs, fuzzing."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labrouter.cluster import wire
from labrouter.core.peers import ModelInfo, Peer, ServerState

KEY = bytes(range(32))
SENDER = bytes.fromhex("11" * 16)
RECEIVER = bytes.fromhex("22" * 16)
WALL = 1_700_000_000.0


def gate(keys: dict[bytes, bytes] | None = None) -> wire.Gate:
    ks = keys if keys is not None else {wire.key_id(KEY): KEY}
    return wire.Gate(RECEIVER, lambda: ks, rand=random.Random(0).randbytes)


def trust(g: wire.Gate, sealer: wire.Sealer) -> None:
    """Walk the challenge-response so the sealer's epoch is trusted by g."""
    g.open(sealer.seal(wire.ANNOUNCE, {"n": "x"}, WALL), 0.0, WALL)
    c = g.challenge(sealer.sender_id, 0.0)
    assert c is not None
    op = g.open(sealer.seal(wire.PROBE_ACK, {"c": c.hex()}, WALL), 0.0, WALL)
    assert op.promoted and op.trusted


bodies = st.dictionaries(st.text(max_size=8), st.one_of(
    st.integers(-2**40, 2**40), st.text(max_size=40), st.booleans(), st.none(),
    st.lists(st.text(max_size=20), max_size=5)), max_size=12)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(body=bodies, ptype=st.sampled_from(sorted(wire.TYPES)), flags=st.integers(0, 7),
       epoch=st.integers(1, 2**64 - 1))
def test_round_trip(body: dict, ptype: int, flags: int, epoch: int) -> None:
    s = wire.Sealer(KEY, SENDER, epoch)
    data = s.seal(ptype, body, WALL, flags)
    assert len(data) <= wire.MAX_PACKET
    op = gate().open(data, 0.0, WALL)
    assert op.body == body and op.header.type == ptype and op.header.flags == flags
    assert op.header.epoch == epoch and op.header.seq == 1 and not op.trusted


@settings(max_examples=60, deadline=None)
@given(body=bodies, seed=st.integers(0, 2**32))
def test_every_bit_flip_is_rejected(body: dict, seed: int) -> None:
    data = wire.Sealer(KEY, SENDER, 7).seal(wire.ANNOUNCE, body, WALL)
    rng = random.Random(seed)
    bits = range(len(data) * 8) if len(data) < 200 else rng.sample(range(len(data) * 8), 400)
    for bit in bits:
        bad = bytearray(data)
        bad[bit // 8] ^= 1 << (bit % 8)
        g = gate()
        try:
            g.open(bytes(bad), 0.0, WALL)
        except wire.Drop:
            continue
        raise AssertionError(f"bit {bit} flipped and accepted")


@settings(max_examples=100)
@given(body=bodies, cut=st.integers(1, 16), extra=st.binary(min_size=1, max_size=16))
def test_truncation_and_extension_are_rejected(body: dict, cut: int, extra: bytes) -> None:
    data = wire.Sealer(KEY, SENDER, 7).seal(wire.ANNOUNCE, body, WALL)
    for bad in (data[:-cut], data + extra, data[:wire.HEADER_SIZE + cut]):
        try:
            gate().open(bad, 0.0, WALL)
        except wire.Drop:
            continue
        raise AssertionError("modified packet accepted")


@settings(max_examples=50)
@given(order=st.permutations(list(range(1, 40))))
def test_reordering_within_the_window_accepted_once(order: list[int]) -> None:
    s = wire.Sealer(KEY, SENDER, 7)
    packets = {i: s.seal(wire.ANNOUNCE, {"i": i}, WALL) for i in range(1, 40)}
    g = gate()
    trust(g, wire.Sealer(KEY, SENDER, 7))  # another sealer: seqs 1, 2 used by the trust walk
    g2 = gate()
    seen = []
    for i in order:
        seen.append(g2.open(packets[i], 0.0, WALL).body["i"])
        try:
            g2.open(packets[i], 0.0, WALL)
        except wire.Drop as d:
            assert d.reason == "replay"
        else:
            raise AssertionError("duplicate accepted")
    assert sorted(seen) == list(range(1, 40))


def test_replays_rejected_and_counted() -> None:
    s = wire.Sealer(KEY, SENDER, 7)
    g = gate()
    trust(g, s)
    first = s.seal(wire.ANNOUNCE, {}, WALL)
    g.open(first, 0.0, WALL)
    for _ in range(70):
        g.open(s.seal(wire.ANNOUNCE, {}, WALL), 0.0, WALL)
    for pkt in (first,):
        try:
            g.open(pkt, 0.0, WALL)
        except wire.Drop as d:
            assert d.reason == "replay"
        else:
            raise AssertionError
    assert g.drops["replay"] == 1


def test_old_epoch_rejected_after_a_new_one_is_trusted() -> None:
    g = gate()
    old = wire.Sealer(KEY, SENDER, 1)
    trust(g, old)
    captured = old.seal(wire.ANNOUNCE, {"p": 0}, WALL)
    new = wire.Sealer(KEY, SENDER, 2)
    op = g.open(new.seal(wire.ANNOUNCE, {}, WALL), 0.0, WALL)
    assert not op.trusted  # a new epoch waits for the challenge
    c = g.challenge(SENDER, 1.0)
    assert c is not None
    assert g.open(new.seal(wire.PROBE_ACK, {"c": c.hex()}, WALL), 1.0, WALL).promoted
    try:
        g.open(captured, 1.0, WALL)
    except wire.Drop as d:
        assert d.reason == "old_epoch"
    else:
        raise AssertionError("old epoch accepted")


def test_replayed_epoch_is_not_promoted_by_the_live_nodes_answer() -> None:
    g = gate()
    live = wire.Sealer(KEY, SENDER, 5)
    trust(g, live)
    ghost = wire.Sealer(KEY, SENDER, 3)  # a capture from an earlier run
    assert not g.open(ghost.seal(wire.ANNOUNCE, {}, WALL), 2.0, WALL).trusted
    c = g.challenge(SENDER, 2.0)
    assert c is not None
    # the live node answers with its real epoch; the ghost epoch stays untrusted
    assert g.open(live.seal(wire.PROBE_ACK, {"c": c.hex()}, WALL), 2.0, WALL).trusted
    assert g.is_trusted(SENDER, 5) and not g.is_trusted(SENDER, 3)


def test_wrong_challenge_does_not_promote() -> None:
    g = gate()
    s = wire.Sealer(KEY, SENDER, 9)
    g.open(s.seal(wire.ANNOUNCE, {}, WALL), 0.0, WALL)
    g.challenge(SENDER, 0.0)
    op = g.open(s.seal(wire.PROBE_ACK, {"c": "00" * 16}, WALL), 0.0, WALL)
    assert not op.trusted and not op.promoted


def test_clock_skew_window() -> None:
    s = wire.Sealer(KEY, SENDER, 9)
    for skew, ok in ((10, True), (-10, True), (301, False), (-301, False)):
        g = gate()
        data = s.seal(wire.ANNOUNCE, {}, WALL + skew)
        try:
            g.open(data, 0.0, WALL)
            assert ok
        except wire.Drop as d:
            assert not ok and d.reason == "clock"


def test_unknown_key_own_sender_and_newer_version() -> None:
    other = bytes(32)
    data = wire.Sealer(other, SENDER, 1).seal(wire.ANNOUNCE, {}, WALL)
    reasons = []
    for g, pkt in ((gate(), data),
                   (wire.Gate(SENDER, lambda: {wire.key_id(KEY): KEY}),
                    wire.Sealer(KEY, SENDER, 1).seal(wire.ANNOUNCE, {}, WALL))):
        try:
            g.open(pkt, 0.0, WALL)
        except wire.Drop as d:
            reasons.append(d.reason)
    newer = bytearray(wire.Sealer(KEY, SENDER, 1).seal(wire.ANNOUNCE, {}, WALL))
    newer[4] = 2
    try:
        gate().open(bytes(newer), 0.0, WALL)
    except wire.Drop as d:
        reasons.append(d.reason)
    assert reasons == ["unknown_key", "self", "newer_version"]


def test_key_rotation_keyring() -> None:
    k2 = bytes(range(100, 132))
    ring = {wire.key_id(KEY): KEY, wire.key_id(k2): k2}
    g = gate(ring)
    s = wire.Sealer(KEY, SENDER, 1)
    g.open(s.seal(wire.ANNOUNCE, {}, WALL), 0.0, WALL)
    s.set_key(k2)
    g.open(s.seal(wire.ANNOUNCE, {}, WALL), 0.0, WALL)
    del ring[wire.key_id(KEY)]
    s.set_key(KEY)
    try:
        g.open(s.seal(wire.ANNOUNCE, {}, WALL), 0.0, WALL)
    except wire.Drop as d:
        assert d.reason == "unknown_key"


def test_sender_table_is_bounded() -> None:
    g = wire.Gate(RECEIVER, lambda: {wire.key_id(KEY): KEY}, max_senders=8)
    for i in range(20):
        try:
            g.open(wire.Sealer(KEY, i.to_bytes(16, "big"), 1).seal(wire.ANNOUNCE, {}, WALL),
                   0.0, WALL)
        except wire.Drop as d:
            assert d.reason == "senders_full"
    assert len(g.senders) == 8
    # after 60 s of silence the oldest make room
    g.open(wire.Sealer(KEY, (99).to_bytes(16, "big"), 1).seal(wire.ANNOUNCE, {}, WALL),
           61.0, WALL)
    assert len(g.senders) == 8


@settings(max_examples=100)
@given(n=st.integers(0, 200), name_len=st.integers(1, 96), loaded=st.integers(0, 12),
       paused=st.booleans())
def test_announcement_always_fits(n: int, name_len: int, loaded: int, paused: bool) -> None:
    models = tuple(ModelInfo("m" * (name_len - 3) + f"{i:03d}"[-3:], 10**11, 70.0, True,
                             "family") for i in range(n))
    servers = tuple(ServerState(id=f"server-{j}", url="http://x", models=models,
                                loaded=tuple(m.name for m in models[:loaded]))
                    for j in range(3))
    peer = Peer(node_id="aa" * 16, name="n" * 63, servers=servers, paused=paused,
                pause_reason="r" * 80, paused_until=2e9, relay_port=47812,
                cert_fingerprint="ab" * 32)
    for full in (True, False):
        body, flags = wire.announce_body(peer, 1.0, 3, full)
        data = wire.Sealer(KEY, SENDER, 1).seal(wire.ANNOUNCE, body, WALL, flags)
        assert len(data) <= wire.MAX_PACKET
        ann = wire.parse_announce(gate().open(data, 0.0, WALL).body, flags)
        if full and n * 3 * (name_len + 30) > wire.MAX_BODY:
            assert flags & wire.TRUNCATED
        if full and not flags & wire.TRUNCATED:
            assert all(len(s.models) == n for s in ann.servers)


def test_heartbeat_and_full_sizes() -> None:
    models = tuple(ModelInfo(f"qwen3:{i}b", 5 * 10**9, float(i)) for i in range(8))
    peer = Peer(node_id="aa" * 16, name="gpu-box", os="linux", version="0.1.0",
                relay_port=47812, cert_fingerprint="ab" * 32,
                servers=(ServerState(id="ollama", url="http://127.0.0.1:11434", models=models,
                                     loaded=("qwen3:8b",)),))
    small = len(wire.announce_body(peer, 1.0, 1, False)[0]) + wire.MIN_PACKET
    full = len(wire.announce_body(peer, 1.0, 1, True)[0]) + wire.MIN_PACKET
    assert small < 200 < full < 600


def test_unknown_fields_ignored_and_bad_values_clamped() -> None:
    ann = wire.parse_announce({"n": "x", "future": {"a": 1}, "iv": -5, "q": "many",
                               "s": [{"i": "o", "l": [1, "a"], "m": [["m1", "big"], 3]},
                                     "junk", {"no": "id"}]}, wire.FULL_STATE)
    assert ann.name == "x" and ann.interval == 0.05 and ann.in_flight == 0
    assert len(ann.servers) == 1 and ann.servers[0].loaded == ("a",)
    assert [m.name for m in ann.servers[0].models] == ["m1"]


def test_fuzz_decoder_count() -> None:
    """Random and mutated datagrams into the gate: none raises anything but Drop."""
    rng = random.Random(1234)
    seeds = [wire.Sealer(KEY, SENDER, 3).seal(t, {"n": "x", "s": []}, WALL)
             for t in sorted(wire.TYPES)]
    g = gate()
    tried = 0
    for _ in range(20_000):
        if rng.random() < 0.5:
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.randrange(1, 6)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            data = bytes(data[: rng.randrange(len(data) + 1)] if rng.random() < 0.2 else data)
        else:
            data = rng.randbytes(rng.randrange(0, 1400))
        tried += 1
        try:
            g.open(data, 0.0, WALL)
        except wire.Drop:
            pass
    assert tried == 20_000
    assert sum(g.drops.values()) + g.accepted == tried
    print(f"fuzz: {tried} inputs, drops by reason: {dict(g.drops)}")


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
              st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12)),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(list("ilmkuqect")), inner,
                                            max_size=6)),
    max_leaves=20)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(body=st.dictionaries(st.sampled_from(["n", "iv", "sv", "q", "a", "pt", "p", "pr", "pu",
                                              "s", "os", "v", "rp", "fp"]), json_values,
                            max_size=10),
       flags=st.integers(0, 7))
def test_any_authentic_body_parses_without_raising(body: dict, flags: int) -> None:
    """A key holder's body (json.loads accepts NaN and Infinity) is clamped, never raises."""
    wire.parse_announce(body, flags)


def test_nan_and_infinity_are_clamped() -> None:
    body = json_loads_like_the_gate(b'{"iv":NaN,"sv":Infinity,"q":-Infinity,"pt":NaN,'
                                    b'"s":[{"i":"o","q":NaN,"m":[["m",NaN,NaN]]}]}')
    ann = wire.parse_announce(body, wire.FULL_STATE)
    assert ann.interval == 0.05 and ann.state_version == 2**32 and ann.in_flight == 0
    assert ann.port == 0 and ann.servers[0].in_flight == 0
    assert ann.servers[0].models[0].size == 0


def json_loads_like_the_gate(raw: bytes) -> dict:
    import json

    return json.loads(raw)


def test_strings_lose_control_characters() -> None:
    """Names are printed by `labrouter nodes`: no terminal escapes, bidi tricks or surrogates."""
    ann = wire.parse_announce({
        "n": "gpu\x1b[2J\x1b]0;pwned\x07box", "pr": "rent\u202eed\r\nFAKE", "os": "li\x00nux",
        "s": [{"i": "oll\x1bama", "l": ["q\x9bwen"], "e": "down\ud800",
               "m": [["m\x1b[31m", 1, 1, 0, "fam\u200bily"]]}]}, wire.FULL_STATE)
    shown = [ann.name, ann.pause_reason, ann.os, ann.servers[0].id, *ann.servers[0].loaded,
             ann.servers[0].error, ann.servers[0].models[0].name,
             ann.servers[0].models[0].family]
    assert ann.name == "gpu[2J]0;pwnedbox" and ann.pause_reason == "rentedFAKE"
    for text in shown:
        assert text.isprintable(), text
        text.encode("utf-8")  # no lone surrogate


def test_announced_address_must_be_an_ip_literal() -> None:
    """A host name would be resolved, blocking, by sendto on the event loop at every probe."""
    assert wire.parse_announce({"a": "10.0.0.7"}, 0).address == "10.0.0.7"
    assert wire.parse_announce({"a": "fd00::1"}, 0).address == "fd00::1"
    for bad in ("evil.example", "localhost", "10.0.0.7\n", "", 7, "1" * 200):
        assert wire.parse_announce({"a": bad}, 0).address == ""


def test_window_update_is_bounded_for_any_jump() -> None:
    w = wire.Window()
    for seq in (1, 2**31, 2**63, 2**64 - 1):
        assert w.check(seq)
        w.update(seq)
        assert w.highest == seq and w.bits.bit_length() <= wire.WINDOW
        assert not w.check(seq)
    w.update(5)  # far below the window: ignored, not a huge shift
    assert w.bits.bit_length() <= wire.WINDOW


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(packets=st.lists(st.tuples(
    st.integers(0, 2**64 - 1), st.sampled_from(sorted(wire.TYPES)),
    st.one_of(st.binary(max_size=200), st.builds(
        lambda d: wire.encode_body(d), bodies)),
    st.sampled_from([1, 2, 3])), min_size=1, max_size=12))
def test_only_drop_leaves_gate_open(packets: list[tuple[int, int, bytes, int]]) -> None:
    """Any sequence number and any body, sealed with the real key, trusted epoch or not."""
    g = gate()
    trusted = wire.Sealer(KEY, SENDER, 1)
    trust(g, trusted)
    sealers = {1: trusted, 2: wire.Sealer(KEY, SENDER, 2),
               3: wire.Sealer(KEY, bytes.fromhex("33" * 16), 9)}
    for seq, ptype, body, which in packets:
        s = sealers[which]
        s.seq = max(0, seq - 1)
        if seq == 0:
            s.seq = -1  # seals seq 0, which is never valid
        try:
            data = s.seal(ptype, body, WALL)
        except (ValueError, OverflowError):
            continue  # beyond what a sealer can express (seq >= 2^64)
        try:
            op = g.open(data, 1.0, WALL)
        except wire.Drop as d:
            assert d.reason in wire.DROP_REASONS
        else:
            assert isinstance(op.body, dict)
    for st_ in g.senders.values():
        assert st_.window.bits.bit_length() <= wire.WINDOW
        assert st_.pending_window.bits.bit_length() <= wire.WINDOW


def test_a_late_answer_to_a_challenge_proves_nothing() -> None:
    g = gate()
    s = wire.Sealer(KEY, SENDER, 1)
    g.open(s.seal(wire.ANNOUNCE, {"n": "x"}, WALL), 0.0, WALL)
    c = g.challenge(SENDER, 0.0)
    assert c is not None
    op = g.open(s.seal(wire.PROBE_ACK, {"c": c.hex()}, WALL), g.answer_within + 1, WALL)
    assert not op.trusted and op.answered_at is None
    c = g.challenge(SENDER, 10.0)
    assert c is not None
    op = g.open(s.seal(wire.PROBE_ACK, {"c": c.hex()}, WALL), 10.5, WALL)
    assert op.promoted and op.answered_at == 10.0


def test_a_challenge_is_reused_within_its_window_and_keeps_its_time() -> None:
    g = gate()
    s = wire.Sealer(KEY, SENDER, 1)
    trust(g, s)
    c1 = g.challenge(SENDER, 10.0, min_gap=0.0, reuse_within=1.0)
    assert g.challenge(SENDER, 10.5, min_gap=0.0, reuse_within=1.0) == c1
    op = g.open(s.seal(wire.PROBE_ACK, {"c": c1.hex()}, WALL), 10.7, WALL)  # type: ignore[union-attr]
    assert op.answered_at == 10.0  # as of when it was first made
    c2 = g.challenge(SENDER, 20.0, min_gap=0.0, reuse_within=1.0)
    assert c2 is not None and c2 != c1
    assert g.challenge(SENDER, 21.5, min_gap=0.0, reuse_within=1.0) != c2
