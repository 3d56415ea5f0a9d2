"""The article's "typical day", replayed against fake servers with the article's timings.

38 requests (30 quick, 5 code, 2 vision, 1 reasoning; real prompts drawn with a fixed seed
from ../shared/eval/dev.jsonl) on three simulated machines:

- mac: qwen3:4b (about 0.3 s an answer), in memory;
- gpu: qwen3-coder:30b (8-12 s), granite3.2-vision:2b (4-13 s), deepseek-r1:8b (5-8 s),
  one request at a time, with a cold-load penalty for a model not in memory;
- cpu: a slow box with minicpm-v (a small vision model) and llama3.2:3b.

Three ways of routing, each run on fresh servers:
(a) every request on the biggest model (qwen3-coder:30b on gpu);
(b) the article's keyword router, with its health check (GET /api/tags, 2 s timeout)
    before every request and its fallback chain;
(c) labrouter: the classifier, the policy and ask.py over the peer table.
Then the same with the gpu unreachable: its address is a black hole (connections are
accepted and never answered), which costs the article's router its 2 s timeout each
time; labrouter's table has it down (gossip marks a silent node down in a few seconds).
Then with the gpu hung: it is up and lists its models (its health check passes, it stays
in every table) but no generation request ever gets a token; labrouter has to find out
from its deadlines and hedges.

labrouter's hedges are counted (target: fewer than 5 per 100 requests on a healthy day);
its learned deadlines' floors are divided by the time scale like every other duration.

Every duration is divided by --scale while running (default 20) and multiplied back in
the figures, so the benchmark takes about a minute; HTTP overhead is scaled up with them,
which makes the figures slightly pessimistic for all three.

Run: python bench/day.py [--scale 20] [--data ../shared/eval/dev.jsonl]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from baseline import baseline_route  # noqa: E402

from labrouter.app.local import probe_servers  # noqa: E402
from labrouter.ask import Asker, AskRequest  # noqa: E402
from labrouter.backends import ChatMessage, make_backend  # noqa: E402
from labrouter.core.config import ServerConfig, TimeoutConfig, parse_config  # noqa: E402
from labrouter.core.errors import BackendError  # noqa: E402
from labrouter.core.peers import NodeState, Peer  # noqa: E402
from labrouter.core.policy import DeadlineRule  # noqa: E402
from tests.fakes import FakeModel  # noqa: E402
from tests.fakes.ollama_server import FakeOllama  # noqa: E402

DAY = {"quick": 30, "code": 5, "vision": 2, "reasoning": 1}


def words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


def machines(scale: float) -> dict[str, FakeOllama]:
    """The three machines with the article's timings, divided by ``scale``."""

    def model(name: str, ttft: float, tokens: int, seconds: float, load: float,
              vision: bool = False) -> FakeModel:
        # ``seconds`` is the whole answer; ttft + tokens / tps == seconds
        tps = tokens / max(seconds - ttft, 0.01)
        return FakeModel(name, answer=words(tokens), ttft=ttft / scale,
                         tokens_per_s=tps * scale, load_time=load / scale,
                         capabilities=("completion", "vision") if vision else ("completion",))

    # few, long tokens: the fake sleeps once per token, and sleeps of a millisecond or two
    # would add scheduling overhead that the time scale then multiplies
    mac = FakeOllama(models=[model("qwen3:4b", 0.08, 12, 0.3, 1.5)], loaded=["qwen3:4b"],
                     name="mac", parallel=1)
    gpu = FakeOllama(models=[
        model("qwen3-coder:30b", 0.6, 40, 10.0, 9.0),
        model("deepseek-r1:8b", 0.4, 40, 6.5, 3.0),
        model("granite3.2-vision:2b", 1.0, 40, 8.5, 2.0, vision=True),
    ], loaded=["qwen3-coder:30b"], name="gpu", parallel=1)
    cpu = FakeOllama(models=[
        model("minicpm-v", 3.0, 40, 25.0, 6.0, vision=True),
        model("llama3.2:3b", 0.5, 20, 2.5, 3.0),
    ], loaded=[], name="cpu", parallel=1)
    return {"mac": mac, "gpu": gpu, "cpu": cpu}


def day_prompts(data: Path, seed: int = 7) -> list[dict[str, object]]:
    rows = [json.loads(line) for line in data.read_text().splitlines() if line.strip()]
    rng = random.Random(seed)
    out: list[dict[str, object]] = []
    for route, n in DAY.items():
        pool = [r for r in rows if r["route"] == route]
        out += rng.sample(pool, n)
    rng.shuffle(out)
    return out


class BlackHole:
    """A TCP port that accepts connections and never answers (a dead route, on loopback)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def close(self) -> None:
        self.sock.close()


@dataclass
class Figures:
    wall: float = 0.0
    gpu_busy: float = 0.0
    answered: int = 0
    failed: int = 0
    by_model: dict[str, int] | None = None
    hedges: int = 0


async def chat(url: str, model: str, prompt: str, timeouts: TimeoutConfig) -> None:
    backend = make_backend(ServerConfig(url=url), timeouts)
    try:
        async for _ in backend.chat(model, [ChatMessage("user", prompt)]):
            pass
    finally:
        await backend.aclose()


async def healthy(url: str, timeout: float) -> bool:
    import httpx

    try:
        async with httpx.AsyncClient(timeout=timeout) as c:
            await c.get(f"{url}/api/tags")
        return True
    except httpx.HTTPError:
        return False


async def run_biggest(prompts: list[dict[str, object]], urls: dict[str, str],
                      timeouts: TimeoutConfig) -> Figures:
    f = Figures(by_model={})
    for p in prompts:
        try:
            await chat(urls["gpu"], "qwen3-coder:30b", str(p["prompt"]), timeouts)
            f.answered += 1
            f.by_model["qwen3-coder:30b"] = f.by_model.get("qwen3-coder:30b", 0) + 1
        except BackendError:
            f.failed += 1
    return f


async def run_article(prompts: list[dict[str, object]], urls: dict[str, str],
                      timeouts: TimeoutConfig, scale: float) -> Figures:
    """The article's route_with_fallback, as written, with its 2 s health check."""
    models = {
        "quick": ("qwen3:4b", urls["mac"]),
        "vision": ("granite3.2-vision:2b", urls["gpu"]),
        "code": ("qwen3-coder:30b", urls["gpu"]),
        "reasoning": ("deepseek-r1:8b", urls["gpu"]),
        "fallback": ("minicpm-v", urls["cpu"]),
    }
    f = Figures(by_model={})
    for p in prompts:
        route = baseline_route(str(p["prompt"]))
        model, url = models[route]
        if not await healthy(url, 2.0 / scale):
            if route == "vision":
                model, url = models["fallback"] if await healthy(models["fallback"][1],
                                                                 2.0 / scale) \
                    else models["quick"]
            else:
                model, url = models["quick"]
        try:
            await chat(url, model, str(p["prompt"]), timeouts)
            f.answered += 1
            f.by_model[model] = f.by_model.get(model, 0) + 1
        except BackendError:
            f.failed += 1
    return f


def scaled_rule(scale: float) -> DeadlineRule:
    """The default deadline rule with every duration divided by the time scale."""
    r = DeadlineRule()
    return DeadlineRule(
        min_samples=r.min_samples, margin=r.margin, first_pad=r.first_pad / scale,
        first_floor=r.first_floor / scale, cold_floor=r.cold_floor / scale,
        gap_pad=r.gap_pad / scale, gap_floor=r.gap_floor / scale,
        unlearned_first=r.unlearned_first / scale, unlearned_gap=r.unlearned_gap / scale,
        per_prompt_token=r.per_prompt_token / scale, hedge_factor=r.hedge_factor,
        hedge_floor=r.hedge_floor / scale, unlearned_hedge=r.unlearned_hedge / scale)


async def run_labrouter(prompts: list[dict[str, object]], urls: dict[str, str],
                        timeouts: TimeoutConfig, gpu_down: bool, scale: float) -> Figures:
    text = ""
    for name, url in urls.items():
        text += f'[[servers]]\nurl = "{url}"\nname = "{name}"\n'
    # the same model registry the article's router has, as routes
    text += """
[routes.quick]
models = ["qwen3:4b", "llama3.2:3b"]
[routes.code]
models = ["qwen3-coder:30b"]
[routes.reasoning]
models = ["deepseek-r1:8b"]
[routes.vision]
models = ["granite3.2-vision:2b", "minicpm-v"]
"""
    t = timeouts
    text += (f"[timeouts]\nconnect = {t.connect}\nfirst_token = {t.first_token}\n"
             f"gap = {t.gap}\ntotal = {t.total}\n")
    cfg = parse_config(text)
    states = await probe_servers([s for s in cfg.servers if not (gpu_down and s.name == "gpu")],
                                 timeouts)
    peers = [Peer(node_id=s.id, name=s.id, servers=(s,), is_self=s.id == "mac")
             for s in states]
    if gpu_down:
        peers.append(Peer(node_id="gpu", name="gpu", state=NodeState.DOWN))
    asker = Asker(cfg, lambda: peers, deadline_rule=scaled_rule(scale))
    f = Figures(by_model={})
    for p in prompts:
        image = b"\x89PNG fake" if p.get("image") else None
        try:
            r = await asker.ask(AskRequest(str(p["prompt"]), image=image, source="bench"))
            f.answered += 1
            f.by_model[r.model] = f.by_model.get(r.model, 0) + 1
            f.hedges += r.hedged
        except BackendError:
            f.failed += 1
        except Exception as exc:  # noqa: BLE001 - a failed request is a figure, not a crash
            print(f"  request failed: {exc}", file=sys.stderr)
            f.failed += 1
    await asker.aclose()
    await asker.connector.aclose()  # type: ignore[attr-defined]
    return f


async def scenario(name: str, prompts: list[dict[str, object]], scale: float,
                   gpu: str) -> Figures:
    servers = machines(scale)
    gpu_down = gpu == "down"
    hole = BlackHole() if gpu_down else None
    for s in servers.values():
        await s.start()
    if gpu == "hung":
        for m in servers["gpu"].models:
            servers["gpu"].set_fault("hang", m)
    urls = {k: s.url for k, s in servers.items()}
    if hole is not None:
        urls["gpu"] = hole.url
    timeouts = TimeoutConfig(connect=2.0 / scale, first_token=60.0 / scale, gap=30.0 / scale,
                             total=120.0 / scale)
    t0 = time.monotonic()
    if name == "a":
        f = await run_biggest(prompts, urls, timeouts)
    elif name == "b":
        f = await run_article(prompts, urls, timeouts, scale)
    else:
        f = await run_labrouter(prompts, urls, timeouts, gpu_down, scale)
    f.wall = (time.monotonic() - t0) * scale
    f.gpu_busy = servers["gpu"].busy_time * scale
    for s in servers.values():
        await s.stop()
    if hole is not None:
        hole.close()
    return f


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=20.0)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "eval" / "dev.jsonl")
    args = ap.parse_args()
    prompts = day_prompts(args.data)
    print(f"typical day: {len(prompts)} requests {DAY}, time scale 1/{args.scale:g}\n")
    names = {"a": "(a) biggest model for all", "b": "(b) article keyword router",
             "c": "(c) labrouter"}
    titles = {"up": "all machines up", "down": "gpu box unreachable",
              "hung": "gpu box hung (up, lists its models, never sends a token)"}
    for gpu in ("up", "down", "hung"):
        title = titles[gpu]
        print(f"== {title}")
        print(f"{'':30} {'wall s':>8} {'gpu busy s':>11} {'answered':>9}  models used")
        res: dict[str, Figures] = {}
        for key in ("a", "b", "c"):
            f = asyncio.run(scenario(key, prompts, args.scale, gpu))
            res[key] = f
            used = ", ".join(f"{m} x{n}" for m, n in sorted((f.by_model or {}).items(),
                                                            key=lambda kv: -kv[1]))
            print(f"{names[key]:30} {f.wall:8.1f} {f.gpu_busy:11.1f} "
                  f"{f.answered:>4}/{len(prompts):<4}  {used}")
        a, b, c = res["a"], res["b"], res["c"]
        print(f"ratios: c/a wall {c.wall / a.wall:.3f}" if a.wall else "ratios: c/a n/a",
              f", c/b wall {c.wall / b.wall:.3f}" if b.wall else "",
              f", c/a gpu busy {c.gpu_busy / a.gpu_busy:.3f}" if a.gpu_busy else "",
              f", c/b gpu busy {c.gpu_busy / b.gpu_busy:.3f}" if b.gpu_busy else "",
              sep="")
        print(f"labrouter hedges: {c.hedges} in {c.answered} answers "
              f"({100 * c.hedges / max(c.answered, 1):.1f} per 100 requests"
              + ("; target < 5 on a healthy day)" if gpu == "up" else ")"))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
