"""The peer table state machine, with an injected clock."""

from __future__ import annotations

import json
import random
from dataclasses import replace

from labrouter.core.peers import (
    ModelInfo,
    NodeState,
    Peer,
    PeerTable,
    ServerState,
    peer_from_dict,
    peer_to_dict,
)


def peer(node_id: str = "n1", **kw: object) -> Peer:
    return Peer(node_id=node_id, name=node_id, address="10.0.0.2", port=47811, **kw)  # type: ignore[arg-type]


def test_alive_suspect_down_forget() -> None:
    t = PeerTable(interval=1.0)
    t.upsert(peer(), 0.0)
    assert t.tick(3.5) == [] and t.peers["n1"].state == NodeState.ALIVE
    [p] = t.tick(3.6)
    assert p.state == NodeState.SUSPECT and p.since == 3.6 and p.routable
    assert t.tick(4.5) == []
    [p] = t.tick(4.6)
    assert p.state == NodeState.DOWN and not p.routable
    t.tick(4.6 + t.forget_after + 1)
    assert "n1" not in t.peers


def test_heard_brings_a_suspect_back() -> None:
    t = PeerTable(interval=1.0)
    t.upsert(peer(), 0.0)
    t.tick(4.0)
    assert t.peers["n1"].state == NodeState.SUSPECT
    t.heard("n1", 4.2)
    assert t.peers["n1"].state == NodeState.ALIVE and t.peers["n1"].since == 4.2
    assert t.tick(7.0) == []


def test_thresholds_follow_the_nodes_interval() -> None:
    t = PeerTable(interval=1.0)
    t.upsert(peer(interval=2.0), 0.0)
    t.tick(5.0)
    assert t.peers["n1"].state == NodeState.ALIVE
    t.tick(7.1)
    assert t.peers["n1"].state == NodeState.SUSPECT


def test_joining_never_routable_and_goes_down_when_silent() -> None:
    t = PeerTable()
    t.upsert(peer(state=NodeState.JOINING), 0.0)
    assert not t.peers["n1"].routable
    t.tick(3.6)
    assert t.peers["n1"].state == NodeState.DOWN


def test_left_and_paused() -> None:
    t = PeerTable()
    t.upsert(peer(paused=True, pause_reason="rented"), 0.0)
    assert not t.peers["n1"].routable and t.peers["n1"].state == NodeState.ALIVE
    t.left("n1", 1.0)
    assert t.peers["n1"].state == NodeState.LEFT


def test_self_is_never_changed_by_silence_or_announcements() -> None:
    t = PeerTable()
    t.set_self(Peer(node_id="me", name="me"))
    t.upsert(Peer(node_id="me", name="evil"), 0.0)
    t.tick(1e6)
    assert t.peers["me"].name == "me" and t.peers["me"].state == NodeState.ALIVE


def test_bounded_senders() -> None:
    t = PeerTable(max_peers=4)
    for i in range(4):
        t.upsert(peer(f"n{i}"), 0.0)
    assert t.upsert(peer("n9"), 1.0) is None
    t.mark("n0", NodeState.DOWN, 1.0)
    assert t.upsert(peer("n9"), 2.0) is not None and "n0" not in t.peers


def test_passive_health() -> None:
    t = PeerTable(interval=1.0)
    t.server_failed("n1", "ollama", 10.0)
    assert t.is_server_suspect("n1", "ollama")
    t.tick(13.9)
    assert t.is_server_suspect("n1", "ollama")
    t.tick(14.0)
    assert not t.is_server_suspect("n1", "ollama")


def test_peer_dict_round_trip_is_json_safe() -> None:
    p = Peer(node_id="ab", name="gpu", state=NodeState.SUSPECT, since=3.0, paused=True,
             paused_until=1e9, servers=(ServerState(
                 id="ollama", url="http://x", models=(ModelInfo("a:1b", 1, 1.0, True, "f"),),
                 loaded=("a:1b",), api_key_env="SECRET_VAR"),))
    d = json.loads(json.dumps(peer_to_dict(p)))
    assert d["state"] == "suspect" and d["routable"] is False
    assert "api_key_env" not in d["servers"][0]
    back = peer_from_dict({**d, "future_field": 1})
    assert back == replace(p, servers=(replace(p.servers[0], api_key_env=""),))


def test_no_flap_to_down_at_five_percent_loss_with_probes() -> None:
    """Heartbeats every interval (jitter ±25 %), 5 % loss each, 3 probes once suspect."""
    rng = random.Random(7)
    t = PeerTable(interval=1.0)
    t.upsert(peer(), 0.0)
    now, next_hb, probes, downs, suspects = 0.0, 1.0, 0, 0, 0
    step = 0.05
    while now < 6 * 3600:
        now = round(now + step, 6)
        if now >= next_hb:
            next_hb = now + rng.uniform(0.75, 1.25)
            if rng.random() > 0.05:
                t.heard("n1", now)
        for p in t.tick(now):
            suspects += p.state == NodeState.SUSPECT
            downs += p.state == NodeState.DOWN
            probes = 0
        p = t.peers["n1"]
        if p.state == NodeState.SUSPECT and probes < 3 and \
                now - p.since >= probes * 0.3 - 1e-9:
            probes += 1
            if rng.random() > 1 - 0.95 * 0.95:  # probe and its answer both arrive
                t.heard("n1", now)
    assert downs == 0
    assert suspects < 30  # the research's model: ~14 per pair per day at 5 %, so ~3.5 in 6 h
