"""Hedged requests, learned deadlines and faults remembered, against real fake servers on
127.0.0.1 (no wall-clock assertions: what is checked is who answered and what was said)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from labrouter.app.local import probe_servers
from labrouter.app.usagelog import UsageLog
from labrouter.ask import Asker, AskRequest, FellOver, Started
from labrouter.core.config import parse_config
from labrouter.core.peers import Peer, static_peers
from labrouter.core.policy import DeadlineRule
from tests.fakes.ollama_server import FakeOllama

CFG = """
[timeouts]
connect = 1.0
first_token = 5.0
gap = 5.0
total = 20.0
[routes.quick]
models = ["qwen3:4b", "llama3.2:3b"]
"""
#: small numbers so a test takes a fraction of a second
RULE = DeadlineRule(min_samples=3, first_floor=0.4, first_pad=0.1, gap_floor=0.3,
                    unlearned_first=1.0, unlearned_gap=1.0, unlearned_hedge=0.2,
                    hedge_floor=0.1, per_prompt_token=0.0)


def config(*urls: str, extra: str = "") -> object:
    servers = "".join(f'[[servers]]\nurl = "{u}"\nname = "s{i}"\n' for i, u in enumerate(urls))
    return parse_config(servers + CFG + extra, hostname="lab")


async def asker_for(cfg: object, tmp_path: Path) -> tuple[Asker, UsageLog, list[Peer]]:
    peers = static_peers("lab", await probe_servers(cfg.servers))  # type: ignore[attr-defined]
    log = UsageLog(tmp_path / "data")
    asker = Asker(cfg, lambda: peers, usage_log=log, deadline_rule=RULE)  # type: ignore[arg-type]
    return asker, log, peers


async def test_a_hung_first_choice_is_hedged_and_then_skipped(tmp_path: Path) -> None:
    async with FakeOllama(models=["qwen3:4b"], answer="hung") as hung, \
            FakeOllama(models=["llama3.2:3b"], answer="It is Paris.") as good:
        asker, log, _ = await asker_for(config(hung.url, good.url), tmp_path)
        hung.set_fault("hang", "qwen3:4b")
        events = [e async for e in asker.stream(AskRequest("What is the capital of France?"))]
        result = events[-1].result  # type: ignore[union-attr]
        assert result.answer == "It is Paris." and result.hedged
        # the client saw: the first choice, it dropped for the hedge, the hedge's answer
        assert [type(e).__name__ for e in events[:3]] == ["Started", "FellOver", "Started"]
        assert "answered first" in events[1].attempt.reason  # type: ignore[union-attr]
        assert log.read(1)[0][-1].hedged
        # the hung request is watched until its own deadline, then remembered as a fault
        for _ in range(100):
            if asker.faults.faults:
                break
            await asyncio.sleep(0.05)
        key = ("local", "s0", "qwen3:4b")
        assert key in asker.faults.demoted(asker.clock())
        # the next request goes to the healthy server first: no hedge, no wait
        again = await asker.ask(AskRequest("And of Spain?"))
        assert again.model == "llama3.2:3b" and not again.hedged and not again.attempts
        await asker.aclose()


async def test_a_slow_but_steady_server_is_not_hedged_away(tmp_path: Path) -> None:
    async with FakeOllama(models=["qwen3:4b"], ttft=0.25, tokens_per_s=40,
                          answer="slow and steady wins") as slow, \
            FakeOllama(models=["llama3.2:3b"], answer="the other one") as other:
        asker, _, _ = await asker_for(config(slow.url, other.url), tmp_path)
        results = [await asker.ask(AskRequest(f"Question {i}?")) for i in range(8)]
    # the first asks are hedged while nothing is known; once its pace is learned, never
    assert all(r.answer == "slow and steady wins" for r in results[4:])
    assert not any(r.hedged for r in results[4:])
    assert other.count("/api/chat") <= 4


async def test_hedging_off_waits_for_the_deadline_instead(tmp_path: Path) -> None:
    async with FakeOllama(models=["qwen3:4b"]) as hung, \
            FakeOllama(models=["llama3.2:3b"], answer="fallback") as good:
        asker, _, _ = await asker_for(config(hung.url, good.url,
                                             extra="[routing]\nhedge = false\n"), tmp_path)
        hung.set_fault("hang", "qwen3:4b")
        result = await asker.ask(AskRequest("hello"))
    assert result.answer == "fallback" and not result.hedged
    assert "sent no token within 1.0 s" in result.attempts[0].reason  # the learned ceiling


async def test_a_stall_after_a_learned_pace_is_continued_elsewhere(tmp_path: Path) -> None:
    async with FakeOllama(models=["qwen3:4b"], answer="one two three four five six") as flaky, \
            FakeOllama(models=["llama3.2:3b"], answer=" four five six.") as good:
        asker, log, _ = await asker_for(config(flaky.url, good.url), tmp_path)
        for i in range(3):  # a healthy morning: its gaps are learned
            await asker.ask(AskRequest(f"warm up {i}"))
        flaky.set_fault("hang_mid", "qwen3:4b")
        events = [e async for e in asker.stream(AskRequest("Say something"))]
    result = events[-1].result  # type: ignore[union-attr]
    fell = next(e for e in events if isinstance(e, FellOver))
    assert fell.continued and "learned from its answers" in fell.attempt.reason
    assert result.answer == "one two three four five six." and result.continued
    assert [e.candidate.model for e in events if isinstance(e, Started)] == [
        "qwen3:4b", "llama3.2:3b"]
    assert log.read(1)[0][-1].continued


async def test_a_cloud_server_is_a_hedge_only_where_the_route_allows_cloud(
        tmp_path: Path) -> None:
    async with FakeOllama(models=["qwen3:4b"]) as hung, \
            FakeOllama(models=["llama3.2:3b"], answer="paid") as cloud:
        cfg = parse_config(
            f'[[servers]]\nurl = "{hung.url}"\nname = "s0"\n'
            f'[[servers]]\nurl = "{cloud.url}"\nname = "cloud"\ncost_input_per_1k = 1.0\n'
            + CFG + '[budget]\ndaily_usd = 5.0\n', hostname="lab")
        asker, _, _ = await asker_for(cfg, tmp_path)
        hung.set_fault("hang", "qwen3:4b")
        try:
            await asker.ask(AskRequest("hello"))
        except Exception as exc:  # noqa: BLE001 - nothing else may answer: that is the point
            assert "no candidate could answer" in str(exc)
        assert cloud.count("/api/chat") == 0
