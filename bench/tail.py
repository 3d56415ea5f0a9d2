"""Benchmark: the tail. A code model's server that hangs, stalls or is slow, with a loaded
quick model healthy on another server: time to a complete answer, labrouter vs LiteLLM.

Two fake Ollama servers on 127.0.0.1 (each on its own event loop thread, as if on two
machines): "gpu" has the code model, "mac" the quick model, both loaded. For each fault of
the code server, each system is asked the same code question ``--runs`` times in a row and
the time to the complete answer is measured, with the number of chat requests the servers
received beyond one per question ("extra requests"):

- healthy: the code server answers normally (the reference)
- hang:    it accepts the request and says nothing (no headers, no token)
- stall:   it sends a few tokens, then nothing, without closing
- slow:    it answers slowly but surely (3x its usual time to first token, 1/3 its pace)

Both systems first see ``--warmup`` healthy answers (a lab's morning); labrouter learns its
deadlines from them, LiteLLM has nothing to learn. Both get the same configured ceilings:
labrouter ``[timeouts] first_token``/``gap`` = ``--timeout``, LiteLLM ``stream_timeout`` =
``--timeout`` (its docs: "maximum time to wait for the first chunk ... to abort hanging
providers and retry another model") and ``timeout`` for the whole call, ``num_retries=2``
(its default) and ``fallbacks=[{"code": ["quick"]}]``, as its reliability docs recommend.

LiteLLM is not a labrouter dependency: ``pip install litellm`` to include it; without it
the LiteLLM column is skipped.

    python bench/tail.py [--runs 20] [--warmup 10] [--timeout 20] [--only hang,stall]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

# LiteLLM fetches a model price list from GitHub when imported: everything here must stay
# on 127.0.0.1, so it uses the copy it ships with
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ.setdefault("LABROUTER_LOOPBACK_ONLY", "1")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from labrouter.app.local import probe_servers  # noqa: E402
from labrouter.ask import Asker, AskRequest  # noqa: E402
from labrouter.core.config import parse_config  # noqa: E402
from labrouter.core.peers import static_peers  # noqa: E402
from tests.fakes import FakeModel  # noqa: E402
from tests.fakes.loop_thread import LoopThread  # noqa: E402
from tests.fakes.ollama_server import FakeOllama  # noqa: E402

T = TypeVar("T")
CODE, QUICK = "qwen3-coder:30b", "qwen3:4b"
ANSWER = ("Use a dict comprehension: {k: v for k, v in pairs if v is not None} keeps the "
          "pairs whose value is set, in one pass, and reads well.")
CODE_TTFT, CODE_TPS = 0.25, 60.0
QUICK_TTFT, QUICK_TPS = 0.1, 120.0
SCENARIOS = ("healthy", "hang", "stall", "slow")
PROMPT = "def clean(pairs):\n    ...\nHow do I drop the None values from this dict in Python?"




@dataclass
class Lab:
    gpu: FakeOllama
    mac: FakeOllama

    def set(self, scenario: str) -> None:
        """Put the code server in the scenario's state (called on its own loop)."""
        m = self.gpu.models[CODE]
        self.gpu.clear_faults()
        m.ttft, m.tokens_per_s = CODE_TTFT, CODE_TPS
        if scenario == "hang":
            self.gpu.set_fault("hang", CODE)
        elif scenario == "stall":
            self.gpu.set_fault("hang_mid", CODE)
        elif scenario == "slow":
            m.ttft, m.tokens_per_s = CODE_TTFT * 3, CODE_TPS / 3

    def chats(self) -> int:
        return self.gpu.count("/api/chat") + self.mac.count("/api/chat")


@dataclass
class Figures:
    times: list[float]
    extra: int
    failed: int
    note: str = ""

    def cell(self) -> str:
        if not self.times:
            return f"all {self.failed} failed"
        t = sorted(self.times)
        p95 = t[min(len(t) - 1, max(0, round(0.95 * len(t)) - 1))]
        out = (f"{statistics.median(t):5.2f} s  p95 {p95:5.2f}  max {t[-1]:5.2f}  "
               f"extra {self.extra:2d}")
        if self.failed:
            out += f"  failed {self.failed}"
        return out


# ---------------------------------------------------------------- the two systems


class Labrouter:
    name = "labrouter"

    def __init__(self, lab: Lab, timeout: float, hedge: bool) -> None:
        self.lab = lab
        text = (f'[[servers]]\nurl = "{lab.gpu.url}"\nname = "gpu"\n'
                f'[[servers]]\nurl = "{lab.mac.url}"\nname = "mac"\n'
                f"[timeouts]\nfirst_token = {timeout}\ngap = {timeout}\ntotal = 600\n"
                f'[routes.code]\nmodels = ["{CODE}"]\nfallback = "quick"\n'
                f'[routes.quick]\nmodels = ["{QUICK}"]\n'
                f"[routing]\nhedge = {'true' if hedge else 'false'}\n")
        self.config = parse_config(text, hostname="bench")
        self.asker: Asker | None = None

    async def start(self) -> None:
        states = await probe_servers(self.config.servers)
        peers = static_peers("bench", states)
        self.asker = Asker(self.config, lambda: peers)

    async def ask(self) -> str:
        assert self.asker is not None
        result = await self.asker.ask(AskRequest(PROMPT, route="code", source="bench"))
        return result.answer

    async def close(self) -> None:
        if self.asker is not None:
            await self.asker.aclose()
            close = getattr(self.asker.connector, "aclose", None)
            if close:
                await close()


class LiteLLM:
    name = "LiteLLM"

    def __init__(self, lab: Lab, timeout: float, hedge: bool) -> None:
        import litellm

        litellm.suppress_debug_info = True
        logging.getLogger("LiteLLM").setLevel(logging.CRITICAL)
        logging.getLogger("LiteLLM Router").setLevel(logging.CRITICAL)
        self.router = litellm.Router(
            model_list=[
                {"model_name": "code", "litellm_params": {
                    "model": f"ollama_chat/{CODE}", "api_base": lab.gpu.root_url,
                    "timeout": 600, "stream_timeout": timeout}},
                {"model_name": "quick", "litellm_params": {
                    "model": f"ollama_chat/{QUICK}", "api_base": lab.mac.root_url,
                    "timeout": 600, "stream_timeout": timeout}},
            ],
            num_retries=2, timeout=600, fallbacks=[{"code": ["quick"]}])

    async def start(self) -> None:
        pass

    async def ask(self) -> str:
        stream = await self.router.acompletion(
            model="code", messages=[{"role": "user", "content": PROMPT}], stream=True)
        parts = []
        async for chunk in stream:
            delta = chunk.choices[0].delta.content if chunk.choices else None
            if delta:
                parts.append(delta)
        return "".join(parts)

    async def close(self) -> None:
        pass


async def measure(system: Any, lab: Lab, loop: LoopThread, scenario: str, runs: int,
                  warmup: int, cap: float) -> Figures:
    loop.run(_call(lab.set, "healthy"))
    await system.start()
    for _ in range(warmup):
        await system.ask()
    loop.run(_call(lab.set, scenario))
    before = loop.run(_call(lab.chats))
    times: list[float] = []
    failed = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(cap):
                answer = await system.ask()
            if not answer.strip():
                raise RuntimeError("empty answer")
            times.append(time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 - a failed run is a figure, not a crash
            failed += 1
            logging.debug("%s %s failed: %r", system.name, scenario, exc)
    extra = loop.run(_call(lab.chats)) - before - runs
    await system.close()
    return Figures(times, extra, failed)


async def _call(fn: Callable[..., T], *args: Any) -> T:
    return fn(*args)


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--timeout", type=float, default=20.0,
                   help="both systems' configured first-token/stream timeout (s)")
    p.add_argument("--cap", type=float, default=200.0, help="give up on one run after (s)")
    p.add_argument("--only", default=",".join(SCENARIOS))
    p.add_argument("--no-hedge", action="store_true", help="labrouter with hedge = false")
    p.add_argument("--systems", default="labrouter,LiteLLM")
    args = p.parse_args()
    os.environ.setdefault("LABROUTER_LOOPBACK_ONLY", "1")
    logging.basicConfig(level=logging.WARNING)
    systems: list[type] = [Labrouter] if "labrouter" in args.systems else []
    try:
        import litellm  # noqa: F401

        if "LiteLLM" in args.systems:
            systems.append(LiteLLM)
        import importlib.metadata as md
        litellm_version = md.version("litellm")
    except ImportError:
        print("LiteLLM is not installed (pip install litellm): its column is skipped")
        litellm_version = ""
    loop = LoopThread("fake-servers")
    gpu = FakeOllama(models=[FakeModel(CODE, answer=ANSWER, ttft=CODE_TTFT,
                                       tokens_per_s=CODE_TPS)], name="gpu")
    mac = FakeOllama(models=[FakeModel(QUICK, answer=ANSWER, ttft=QUICK_TTFT,
                                       tokens_per_s=QUICK_TPS)], name="mac")
    loop.run(gpu.start())
    loop.run(mac.start())
    lab = Lab(gpu, mac)
    print(f"bench/tail.py: {args.runs} runs per cell after {args.warmup} healthy warm-up "
          f"answers; configured first-token timeout {args.timeout:g} s; "
          f"{os.cpu_count()} cores" + (f"; LiteLLM {litellm_version}" if litellm_version
                                       else ""))
    print(f"code server: ttft {CODE_TTFT} s, {CODE_TPS:g} tok/s; quick server: ttft "
          f"{QUICK_TTFT} s, {QUICK_TPS:g} tok/s; time to the complete answer "
          "(median, p95) and chat requests beyond one per question")
    print(f"{'scenario':10s}" + "".join(f"{cls.name:>50s}" for cls in systems))
    results: dict[tuple[str, str], Figures] = {}
    try:
        for scenario in [s for s in args.only.split(",") if s]:
            row = f"{scenario:10s}"
            for cls in systems:
                with tempfile.TemporaryDirectory() as home, _env(home):
                    system = cls(lab, args.timeout, not args.no_hedge)
                    fig = await measure(system, lab, loop, scenario, args.runs, args.warmup,
                                        args.cap)
                results[(scenario, cls.name)] = fig
                row += f"{fig.cell():>50s}"
            print(row, flush=True)
    finally:
        loop.run(gpu.stop())
        loop.run(mac.stop())
        loop.close()
    _targets(results)
    return 0


def _targets(results: dict[tuple[str, str], Figures]) -> None:
    def med(s: str) -> float | None:
        f = results.get((s, "labrouter"))
        return statistics.median(f.times) if f and f.times else None

    healthy, hang, stall, slow = med("healthy"), med("hang"), med("stall"), med("slow")
    worst = {s: max(f.times) for (s, n), f in results.items() if n == "labrouter" and f.times}
    print("\ntargets (labrouter):")
    if healthy is not None and hang is not None:
        print(f"  hung code server: {hang - healthy:+.2f} s vs healthy (target < +5 s): "
              + ("met" if hang - healthy < 5 else "NOT met"))
    if healthy is not None and "hang" in worst:
        print(f"  hung code server, worst run (the first, before it is known): "
              f"{worst['hang'] - healthy:+.2f} s vs healthy")
    if healthy is not None and stall is not None and "stall" in worst:
        print(f"  mid-stream stall: the run that stalled took {worst['stall'] - healthy:+.2f} s "
              "more than a healthy answer (target: restarted within 3 s): "
              + ("met" if worst["stall"] - healthy < 3 else "NOT met")
              + f"; median {stall - healthy:+.2f} s (it is skipped once known)")
    f = results.get(("slow", "labrouter"))
    if f is not None and slow is not None:
        print(f"  slow but healthy: {f.extra} extra requests in {len(f.times)} answers "
              "(target: never abandoned)")


@contextlib.contextmanager
def _env(home: str) -> Any:
    """A throwaway labrouter home, so the bench never touches the user's files."""
    old = {k: os.environ.get(k) for k in ("LABROUTER_HOME",)}
    os.environ["LABROUTER_HOME"] = home
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
