"""Is settling an unsure classification by asking the quick model worth its latency?

For the prompts the classifier is very unsure of (calibrated confidence under a
threshold), asks a real model the routing question of ``labrouter.core.settle`` through the
same call the Asker makes (``labrouter.ask.ask_for_route``, OpenAI-compatible backend) and
prints, per threshold: the share of prompts in the band, the classifier's accuracy there
and the model's (a junk or late reply keeps the classifier's route), the added latency per
settled request (median, p95) and per request overall, the accuracy the model would need
on the band for settling to pay, and the whole set's accuracy with and without settling.

    python bench/settle.py                          # dev.jsonl, SmolLM2-135M on 127.0.0.1
    python bench/settle.py --loso 300               # + 300 unsure prompts of unseen sources
    python bench/settle.py --grammar                # the reply forced to a route name
                                                    # (llama.cpp's grammar: its choice, not
                                                    # its obedience, is measured)
    python bench/settle.py --url http://127.0.0.1:8080/v1 --model qwen3-4b
                                                    # a real quick model you serve yourself

The default model is SmolLM2-135M-Instruct on llama.cpp's server (xllamacpp), as in
tests/fakes/realllm.py (.ci/real-llm-setup.sh puts it in place): some 30 times smaller than
a real quick model (qwen3:4b), so its accuracy is a floor, not a forecast; the latency is
what a 135M model costs on this machine's CPU. dev.jsonl and bench/data/hard_eval.jsonl
(blind, hand-written) are held out from the classifier's model; ``--loso`` takes prompts
from the training pool's leave-one-source-out predictions
(``$LABROUTER_LOSO_CACHE``, by default ``/tmp/labrouter-loso-logits.npz``, written by
bench/train_classifier.py with the item ids and its tuned decision), which is what
prompts of sources the model never saw look like. Only loopback URLs are accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from labrouter.ask import SETTLE_OPTIONS, ask_for_route  # noqa: E402
from labrouter.backends import OpenAIBackend  # noqa: E402
from labrouter.core.classify import Classification, Classifier  # noqa: E402
from labrouter.core.config import TimeoutConfig  # noqa: E402
from labrouter.core.errors import BackendError  # noqa: E402
from labrouter.core.policy import resolve_route  # noqa: E402
from labrouter.core.settle import parse_reply, settle_choices  # noqa: E402

EVAL = next((p for p in (ROOT.parent / "shared/eval", ROOT.parents[1] / "shared/eval")
             if p.exists()), ROOT.parent / "shared/eval")
DATA = ROOT / "bench" / "data"
AUTHORED = DATA / "authored.jsonl"
HARD = DATA / "hard_eval.jsonl"  # blind, hand-written: a second honest dev set
LOSO_CACHE = Path(os.environ.get("LABROUTER_LOSO_CACHE", "/tmp/labrouter-loso-logits.npz"))
THRESHOLDS = (0.5, 0.6, 0.7)
BANDS = (0.0, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
TIMEOUTS = TimeoutConfig(connect=2.0, first_token=30.0, gap=10.0, total=60.0)


@dataclass
class Item:
    id: str
    prompt: str
    gold: str
    c: Classification
    route: str  # the route without settling (the classifier, then the policy)
    reply: str = ""
    seconds: float = math.nan
    asked: bool = False
    late: bool = False

    @property
    def settled(self) -> str | None:
        choices = settle_choices(self.c, 1.0)
        return parse_reply(self.reply, choices) if self.asked and choices else None


def load_jsonl(path: Path) -> list[dict[str, object]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def classify_all(rows: Sequence[dict[str, object]]) -> list[Item]:
    clf = Classifier()
    out = []
    for r in rows:
        c = clf.classify(str(r["prompt"]), image=bool(r.get("image")))
        out.append(Item(str(r["id"]), str(r["prompt"]), str(r["route"]), c,
                        resolve_route(c, None, 0.0)[0]))
    return out


def band_table(name: str, items: Sequence[Item]) -> None:
    n = len(items)
    print(f"\n{name}: {n} prompts, accuracy {sum(i.route == i.gold for i in items) / n:.3f}")
    print("  confidence   share     n  classifier  +policy  right route among the two best")
    for lo, hi in zip(BANDS, BANDS[1:], strict=False):
        b = [i for i in items if lo <= i.c.confidence < hi or (hi == 1.0 and i.c.confidence == 1)]
        if not b:
            continue
        raw = sum(i.c.route == i.gold for i in b) / len(b)
        acc = sum(i.route == i.gold for i in b) / len(b)
        top2 = sum(i.gold in (i.c.route, i.c.runner_up) for i in b) / len(b)
        print(f"  {lo:.1f}-{hi:.1f}   {len(b) / n:7.3f} {len(b):5d}  {raw:10.3f}  {acc:7.3f}  "
              f"{top2:.3f}")


def loso_items(n: int, below: float, seed: int = 0) -> tuple[list[Item], dict[float, float]]:
    """Unsure prompts of unseen sources: the cached leave-one-source-out logits of
    bench/train_classifier.py, with the rule weight, offsets and temperature that run
    tuned (the classifier's decision rules on top, cheap questions etc., are not applied:
    a close approximation)."""
    import numpy as np  # the train extra

    from labrouter.core.classify_model import default_model

    data = np.load(LOSO_CACHE)
    if "ids" not in data:
        raise SystemExit(f"{LOSO_CACHE} is from an older bench/train_classifier.py: "
                         "rerun it with --loso-only")
    by_id = {str(r["id"]): r for path in (EVAL / "train.jsonl", EVAL / "dev.jsonl",
                                          *sorted(DATA.glob("authored*.jsonl")))
             if path.exists() for r in load_jsonl(path)}
    try:
        rows = [by_id[str(i)] for i in data["ids"]]
    except KeyError as exc:
        raise SystemExit(f"{LOSO_CACHE} names prompt {exc} that no data file holds: "
                         "rerun bench/train_classifier.py --loso-only") from None
    routes = sorted(default_model().routes)
    z = (data["logits"] + float(data["rule_weight"]) * data["scores"] + data["offsets"]) / float(
        data["temperature"])
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    unsure = [i for i in range(len(rows)) if p[i].max() < below]
    total = len(rows)
    print(f"\nLOSO pool: {total} prompts; under {below}: {len(unsure)} "
          f"({len(unsure) / total:.3f}); accuracy there "
          f"{sum(p[i].argmax() == data['y'][i] for i in unsure) / max(1, len(unsure)):.3f}")
    shares = {}
    for t in THRESHOLDS:
        m = p.max(axis=1) < t
        shares[t] = float(m.mean())
        print(f"  under {t}: share {m.mean():.3f}, accuracy "
              f"{(p.argmax(axis=1)[m] == data['y'][m]).mean():.3f}")
    picked = sorted(random.Random(seed).sample(unsure, min(n, len(unsure))))
    out = []
    for i in picked:
        probs = {r: float(p[i][k]) for k, r in enumerate(routes)}
        ranked = sorted(probs, key=lambda r: -probs[r])
        c = Classification(route=ranked[0], scores=MappingProxyType({}),
                           confidence=round(probs[ranked[0]], 3), reasons=(),
                           runner_up=ranked[1], probabilities=MappingProxyType(probs))
        out.append(Item(str(rows[i]["id"]), str(rows[i]["prompt"]), routes[data["y"][i]], c,
                        resolve_route(c, None, 0.0)[0]))
    return out, shares


async def ask_all(items: Sequence[Item], url: str, model: str, timeout: float,
                  below: float, grammar: bool = False) -> None:
    backend = OpenAIBackend(url, TIMEOUTS)
    try:
        # the first request of a fresh server pays for warming up; not a routing figure
        await ask_for_route(backend, model, "hello", ("quick", "code"), 300.0)
        for it in items:
            choices = settle_choices(it.c, below)
            if not choices:
                continue
            it.asked = True
            options = SETTLE_OPTIONS
            if grammar:  # llama.cpp's GBNF: the reply can only be one of the choices
                rule = "root ::= " + " | ".join(f'"{r}"' for r in choices)
                options = replace(options, extra={"grammar": rule})
            t0 = time.perf_counter()
            try:
                it.reply = await ask_for_route(backend, model, it.prompt, choices, timeout,
                                               options)
            except TimeoutError:
                it.late = True
            except BackendError as exc:
                print(f"  {it.id}: {exc}", file=sys.stderr)
            it.seconds = time.perf_counter() - t0
    finally:
        await backend.aclose()


def report(name: str, items: Sequence[Item],
           shares: dict[float, float] | None = None) -> None:
    """``shares``: the share of unsure prompts per threshold in the pool the items are a
    sample of (None: items is the whole set, sure prompts included)."""
    total = len(items)
    print(f"\n{name}")
    print("  below  share   n  asked  classifier  model  junk  late  settled  "
          "min s  p50 s  p95 s  +s/request  whole set: without -> with")
    for t in THRESHOLDS:
        band = [i for i in items if i.asked and i.c.confidence < t]
        if not band:
            print(f"  {t:.1f}   no prompt of the set is this unsure")
            continue
        n_unsure = sum(i.c.confidence < t for i in items)
        share = shares[t] if shares else n_unsure / total
        clf = sum(i.route == i.gold for i in band) / len(band)
        named = [i for i in band if i.settled is not None]
        model_acc = sum(i.settled == i.gold for i in band) / len(band)
        junk = sum(i.settled is None and not i.late for i in band) / len(band)
        late = sum(i.late for i in band) / len(band)
        final = sum((i.settled or i.route) == i.gold for i in band) / len(band)
        # a model that always names the first route listed (quick, when it is one of the
        # two): what position bias alone would score
        first = sum(settle_choices(i.c, 1.0)[0] == i.gold for i in band) / len(band)
        secs = sorted(i.seconds for i in band)
        p50 = statistics.median(secs)
        p95 = secs[min(len(secs) - 1, math.ceil(0.95 * len(secs)) - 1)]
        line = (f"  {t:.1f}  {share:6.3f} {n_unsure:3d}  {len(band):5d}  {clf:10.3f}  "
                f"{model_acc:5.3f}  {junk:4.2f}  {late:4.2f}  {final:7.3f}  {secs[0]:5.2f}  "
                f"{p50:5.2f}  {p95:5.2f}  {share * p50:10.3f}")
        if shares is None:
            before = sum(i.route == i.gold for i in items) / total
            after = sum(((i.settled or i.route) if i.asked and i.c.confidence < t
                         else i.route) == i.gold for i in items) / total
            line += f"  {before:.3f} -> {after:.3f}"
        print(line)
        print(f"         to pay, the model must be right on more than {clf:.0%} of this "
              f"band when it answers (it named a route for {len(named)} of {len(band)}; "
              f"right on {sum(i.settled == i.gold for i in named)} of them); always "
              f"naming the first route listed would score {first:.0%}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="an OpenAI-compatible server on 127.0.0.1 (default: start "
                    "SmolLM2-135M with xllamacpp)")
    ap.add_argument("--model", default="smollm2", help="the model name to send")
    ap.add_argument("--timeout", type=float, default=1.5, help="the settling deadline, s")
    ap.add_argument("--grammar", action="store_true",
                    help="force the reply to a route name (llama.cpp servers only)")
    ap.add_argument("--loso", type=int, default=0, metavar="N",
                    help="also N unsure prompts of unseen sources (the LOSO cache)")
    args = ap.parse_args(argv)
    below = max(THRESHOLDS)

    dev = classify_all(load_jsonl(EVAL / "dev.jsonl"))
    band_table("dev.jsonl (held out from the model)", dev)
    hard = classify_all(load_jsonl(HARD)) if HARD.exists() else []
    if hard:
        band_table("bench/data/hard_eval.jsonl (blind, hand-written, held out)", hard)
    authored = classify_all(load_jsonl(AUTHORED))
    band_table("bench/data/authored.jsonl (in the model's training data: not honest)",
               authored)
    loso, shares = loso_items(args.loso, below) if args.loso else ([], {})

    server = None
    url = args.url
    if url is None:
        from tests.fakes.realllm import RealLLM, missing_reason

        if missing_reason():
            raise SystemExit(f"no real model here: {missing_reason()}")
        server = RealLLM().start()
        url, args.model = server.url, server.model
    elif urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("--url must be a loopback URL (127.0.0.1)")
    load0 = os.getloadavg()[0]
    try:
        t0 = time.perf_counter()
        asyncio.run(ask_all(dev, url, args.model, args.timeout, below, args.grammar))
        if hard:
            asyncio.run(ask_all(hard, url, args.model, args.timeout, below, args.grammar))
        if loso:
            asyncio.run(ask_all(loso, url, args.model, args.timeout, below, args.grammar))
        took = time.perf_counter() - t0
    finally:
        if server is not None:
            server.stop()
    print(f"\nmodel {args.model} at {url}, deadline {args.timeout:g} s"
          f"{', reply forced by a grammar' if args.grammar else ''}, "
          f"{sum(i.asked for i in dev + hard + loso)} questions in {took:.0f} s; load average "
          f"{load0:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    report("dev.jsonl", dev)
    if hard:
        report("hard_eval.jsonl", hard)
    if loso:
        report(f"LOSO sample: {len(loso)} unsure prompts of unseen sources (share: of the "
               "pool)", loso, shares)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
