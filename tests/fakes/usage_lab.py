"""A made-up but plausible usage log of a busy home lab, for the usage page's screenshot,
its browser test and bench/usage.py.

Three machines: this one ("gpu-box": code, reasoning and vision models, and work it does
for the two others over the relay), "mac-mini" (the quick model) and a cloud model for
hard reasoning under a daily budget. Some evenings the GPU box is rented out (paused),
so code and reasoning prompts are answered by the quick model; now and then a try times
out or a connection fails and the next candidate answers. Deterministic for a seed.
"""

from __future__ import annotations

import datetime as dt
import random

from labrouter.core.usage import UsageRecord

NODE = "gpu-box"
_MODELS = {"quick": ("mac-mini", "qwen3:4b", 0.35, 220), "code": (NODE, "qwen3-coder:30b", 1.4,
                                                                   900),
           "reasoning": (NODE, "deepseek-r1:14b", 2.2, 1500),
           "vision": (NODE, "qwen2.5vl:7b", 1.1, 300)}
_ROUTES = ["quick"] * 58 + ["code"] * 22 + ["reasoning"] * 12 + ["vision"] * 8
_PROMPTS = {"quick": ["translate this to French", "summarise the selected paragraph",
                      "fix the grammar of this sentence"],
            "code": ["why does this Python loop never end?", "write a bash one-liner to "
                     "count lines", "refactor this function into two"],
            "reasoning": ["plan a three-day trip under a budget", "prove that the sum of two "
                          "odd numbers is even"],
            "vision": ["what is in this screenshot?", "read the text in this photo"]}


def lab_records(days: int, per_day: int, now: float, seed: int = 7,
                prompts: bool = False) -> list[UsageRecord]:
    """``per_day`` requests a day (about 10 % more on some days) for the ``days`` days up
    to ``now`` (today's only up to ``now``), oldest first."""
    rng = random.Random(seed)
    out: list[UsageRecord] = []
    today = dt.date.fromtimestamp(now)
    for back in range(days - 1, -1, -1):
        day = today - dt.timedelta(days=back)
        start = dt.datetime.combine(day, dt.time(7, 0)).timestamp()
        rented = day.toordinal() % 6 == 0  # the GPU box is rented out that evening
        n = int(per_day * rng.uniform(0.75, 1.15))
        for _ in range(n):
            ts = start + rng.betavariate(2.2, 2.0) * 16 * 3600
            if ts > now:
                continue
            out.append(_one(rng, ts, rented and ts > start + 11 * 3600, prompts))
            if rng.random() < 0.08:  # a peer's request served here over the relay
                out.append(_peer(rng, ts + 1))
    out.sort(key=lambda r: r.ts)
    return out


def _one(rng: random.Random, ts: float, rented: bool, prompts: bool) -> UsageRecord:
    classified = rng.choice(_ROUTES)
    route = classified
    fallbacks: tuple[dict[str, str], ...] = ()
    if rented and classified in ("code", "reasoning"):
        route = "quick"  # no code or reasoning model was up
    elif classified != "quick" and rng.random() < 0.05:
        node, model, _, _ = _MODELS[classified]
        why = rng.choice([f"{model} on {node}: {node} (relay): no answer in time",
                          f"{model} on {node}: cannot connect (connection refused)",
                          f"{model} on {node}: {model} is busy (2 requests running)"])
        fallbacks = ({"node": node, "server": "ollama", "model": model, "reason": why},)
        route = "quick"
    node, model, speed, tokens = _MODELS[route]
    cost = 0.0
    server = "ollama"
    if route == "reasoning" and rng.random() < 0.12:
        node, model, speed, tokens, server = "cloud", "gpt-4.1-mini", 0.9, 1200, "openai"
        cost = round(rng.uniform(0.002, 0.02), 5)
    ct = max(8, int(rng.gauss(tokens, tokens / 3)))
    pt = rng.randint(30, 900)
    ttft = max(60.0, rng.lognormvariate(0, 0.45) * 320 * speed)
    outcome = "fallback" if route != classified or fallbacks else "ok"
    if rng.random() < 0.01:
        outcome, ct = "cancelled", ct // 3
    return UsageRecord(
        ts=ts, route=route, node=node, server=server, model=model, outcome=outcome,
        prompt_tokens=pt, completion_tokens=ct, ttft_ms=round(ttft, 1),
        duration_ms=round(ttft + ct * (9 + 18 * speed), 1), fallbacks=fallbacks,
        source=rng.choice(["hotkey", "hotkey", "cli", "api:/v1/chat/completions"]),
        confidence=round(rng.uniform(0.5, 0.99), 2), cost_usd=cost,
        prompt=rng.choice(_PROMPTS[classified]) if prompts else None,
        classified_route=classified, finish_reason="stop" if outcome != "cancelled"
        else "cancelled")


def _peer(rng: random.Random, ts: float) -> UsageRecord:
    route = rng.choice(["code", "code", "reasoning", "vision"])
    _, model, speed, tokens = _MODELS[route]
    ct = max(8, int(rng.gauss(tokens, tokens / 3)))
    ttft = max(60.0, rng.lognormvariate(0, 0.4) * 300 * speed)
    return UsageRecord(
        ts=ts, route=route, node=NODE, server="ollama", model=model, outcome="ok",
        prompt_tokens=rng.randint(30, 600), completion_tokens=ct, ttft_ms=round(ttft, 1),
        duration_ms=round(ttft + ct * 20 * speed, 1), source="relay",
        served_for=rng.choice(["laptop", "laptop", "mac-mini"]), classified_route=route,
        finish_reason="stop")
