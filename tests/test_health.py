"""A model that missed a deadline is known by everyone: announced as degraded, tried last
by other nodes, probed by its own node's monitor with the real model until it answers."""

from __future__ import annotations

import json

from labrouter.cluster import wire
from labrouter.cluster.monitor import Monitor
from labrouter.core.config import ServerConfig, TimeoutConfig
from labrouter.core.health import FaultBook
from labrouter.core.peers import ModelInfo, Peer, ServerState
from labrouter.core.policy import choose
from tests.fakes.ollama_server import FakeOllama
from tests.test_policy import CFG, cls, m, peer, server


def test_degraded_rides_in_every_announcement_and_is_parsed() -> None:
    p = Peer(node_id="aa" * 16, name="gpu", servers=(ServerState(
        id="ollama", url="http://127.0.0.1:11434", models=(ModelInfo("qwen3:4b"),),
        loaded=("qwen3:4b",), degraded=("qwen3:4b",)),))
    for full in (True, False):
        body, flags = wire.announce_body(p, 1.0, 1, full)
        ann = wire.parse_announce(json.loads(body), flags)
        assert ann.servers[0].degraded == ("qwen3:4b",)
    # an old peer's announcement has no "dg": nothing is degraded; junk is dropped
    assert wire.parse_announce({"n": "x", "s": [{"i": "o"}]}, 0).servers[0].degraded == ()
    bad = wire.parse_announce({"n": "x", "s": [{"i": "o", "dg": [3, "", "m"]}]}, 0)
    assert bad.servers[0].degraded == ("m",)


def test_a_model_another_node_announces_degraded_is_tried_last() -> None:
    gpu = peer("gpu", server([m("qwen3:4b")], loaded=("qwen3:4b",)))
    mac = peer("mac", server([m("qwen3:4b")]), is_self=True)
    notes: list[str] = []
    assert choose(cls("quick"), [gpu, mac], CFG)[0].peer.name == "gpu"  # loaded wins
    sick = peer("gpu", server([m("qwen3:4b")], loaded=("qwen3:4b",), degraded=("qwen3:4b",)))
    cands = choose(cls("quick"), [sick, mac], CFG, notes=notes)
    assert [c.peer.name for c in cands] == ["mac", "gpu"]
    assert any("tried last" in n for n in notes)


async def test_the_monitor_announces_and_probes_a_faulty_model() -> None:
    now = [100.0]
    async with FakeOllama(models=["qwen3:4b", "llama3.2:3b"]) as srv:
        mon = Monitor([ServerConfig(url=srv.url, name="ollama")], TimeoutConfig(),
                      poll_timeout=0.5)
        faults = FaultBook(base_backoff=30, probe_every=5)
        mon.attach_faults(faults, "me", lambda: now[0])
        try:
            faults.fault(("me", "ollama", "qwen3:4b"), now[0], "missed its deadline")
            faults.fault(("other", "ollama", "qwen3:4b"), now[0], "another node's: not ours")
            states = await mon.poll()
            assert states[0].degraded == ("qwen3:4b",)
            assert srv.count("/api/chat") == 0  # no probe before it is due
            # still hung at the first probe: the back-off grows, still degraded
            srv.set_fault("hang", "qwen3:4b")
            now[0] += 5
            await mon.poll()
            await _probes_done(mon)
            assert srv.count("/api/chat", model="qwen3:4b") == 1
            assert faults.faults[("me", "ollama", "qwen3:4b")].count == 2
            # it answers the next probe: healthy again, no longer announced
            srv.clear_faults()
            now[0] += 5
            await mon.poll()
            await _probes_done(mon)
            assert ("me", "ollama", "qwen3:4b") not in faults.faults
            assert (await mon.poll())[0].degraded == ()
            probe = srv.requests_to("/api/chat")[-1].body
            assert probe["options"]["num_predict"] == 1  # one token of the real model
        finally:
            await mon.aclose()


async def _probes_done(mon: Monitor) -> None:
    import asyncio

    for _ in range(200):
        if not mon._probing:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the probe did not finish")
