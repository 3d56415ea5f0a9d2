"""Benchmark of the prompt classifier against the article's keyword router.

Prints accuracy overall, text-only and per route, the confusion matrix and the expected
calibration error of the classifier (rules + learned model), of the rules alone and of the
article's router, and the speed of `labrouter.core.classify`. Run by hand:

    python bench/classifier.py                 # ../shared/eval/dev.jsonl
    python bench/classifier.py --loso          # + leave-one-source-out over train + dev
                                               #   (needs numpy and scipy: the train extra)
    python bench/classifier.py --data PATH     # another JSON-lines file
    python bench/classifier.py --half a|b      # one half of the data, split by id hash
    python bench/classifier.py --errors        # also list the misrouted prompts

The shipped model is trained on train.jsonl only, so dev.jsonl is held out from it; the
leave-one-source-out figure (each source predicted by a model that never saw it) is the
one that predicts unseen traffic.

Data lines: {"id", "prompt", "image", "route", ...}. The baseline sees only the text, as the
article's router did.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baseline import baseline_route  # noqa: E402

from labrouter.core.classify import BUILTIN_ROUTES, Classifier  # noqa: E402

_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = next(
    (p for p in (_ROOT.parent / "shared/eval/dev.jsonl", _ROOT.parents[1] / "shared/eval/dev.jsonl")
     if p.exists()),
    _ROOT.parent / "shared/eval/dev.jsonl",
)

Row = dict[str, object]


def load(path: Path, half: str | None) -> list[Row]:
    rows: list[Row] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
    if half:
        # A stable split by id, so "develop on a, check on b" can show overfitting.
        want = 0 if half == "a" else 1
        rows = [r for r in rows if _half(str(r["id"])) == want]
    return rows


def _half(item_id: str) -> int:
    return int(hashlib.sha256(item_id.encode()).hexdigest(), 16) % 2


def ece(conf: Sequence[float], right: Sequence[bool], bins: int = 10) -> float:
    """Expected calibration error over equal-width confidence bins."""
    err = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        idx = [i for i, c in enumerate(conf) if lo < c <= hi or (b == 0 and c == 0)]
        if idx:
            acc = sum(right[i] for i in idx) / len(idx)
            avg = sum(conf[i] for i in idx) / len(idx)
            err += len(idx) / len(conf) * abs(acc - avg)
    return err


def report(name: str, rows: Sequence[Row], predicted: Sequence[str]) -> None:
    routes = list(BUILTIN_ROUTES) + sorted(
        {str(r["route"]) for r in rows} - set(BUILTIN_ROUTES)
    )
    gold = [str(r["route"]) for r in rows]
    right = sum(g == p for g, p in zip(gold, predicted, strict=True))
    text_only = [(g, p) for r, g, p in zip(rows, gold, predicted, strict=True) if not r["image"]]
    print(f"\n== {name}: accuracy {right / len(rows):.3f} ({right}/{len(rows)}), "
          f"text-only {sum(g == p for g, p in text_only) / max(len(text_only), 1):.3f}")
    per = []
    for route in routes:
        n = gold.count(route)
        ok = sum(g == p == route for g, p in zip(gold, predicted, strict=True))
        per.append(f"{route} {ok / n:.2f} ({ok}/{n})" if n else f"{route} -")
    print("per route: " + ", ".join(per))
    pairs = Counter(zip(gold, predicted, strict=True))
    width = max(len(r) for r in routes) + 2
    print("confusion (rows = gold, columns = predicted):")
    print(" " * width + "".join(f"{r:>{width}}" for r in routes))
    for g in routes:
        print(f"{g:<{width}}" + "".join(f"{pairs[(g, p)]:>{width}}" for p in routes))


def mixed_prompt(size: int = 10_240) -> str:
    """About 10 KB of mixed text: prose, a traceback, code, numbers and a question."""
    parts = [
        "Hi! I was reading the quarterly report and wanted a quick summary of the main "
        "points, but then my script crashed and I need help figuring out why.\n",
        "Traceback (most recent call last):\n  File \"app.py\", line 12, in <module>\n"
        "    main()\nKeyError: 'user'\n",
        "```python\ndef main():\n    users = load()\n    for u in users:\n"
        "        print(u['user'])\n```\n",
        "The warehouse has 120 boxes; each holds 8 items and 3/4 are full. "
        "How many items are there in total?\n",
        "Also, what do you think about the big picture of our brand image this year?\n",
    ]
    out: list[str] = []
    i = 0
    while sum(len(p) for p in out) < size:
        out.append(parts[i % len(parts)])
        i += 1
    return "".join(out)[:size]


def speed(clf: Classifier, rows: Sequence[Row]) -> None:
    prompt = mixed_prompt()
    for _ in range(20):  # warm up caches
        clf.classify(prompt)
    samples, cpu = [], []
    for _ in range(300):
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        clf.classify(prompt)
        cpu.append((time.thread_time_ns() - c0) / 1000)
        samples.append((time.perf_counter_ns() - t0) / 1000)
    print(f"\n== speed, {len(prompt)} B mixed prompt: median {statistics.median(samples):.0f} us, "
          f"p95 {sorted(samples)[int(len(samples) * 0.95)]:.0f} us, max {max(samples):.0f} us "
          f"(wall clock); CPU time median {statistics.median(cpu):.0f} us "
          "(the same on a busy machine)")
    rules = Classifier(model=None)
    rcpu = []
    for _ in range(300):
        c0 = time.thread_time_ns()
        rules.classify(prompt)
        rcpu.append((time.thread_time_ns() - c0) / 1000)
    print(f"of which the rules: CPU median {statistics.median(rcpu):.0f} us; the model the rest")
    t0 = time.perf_counter()
    reps = 5
    for _ in range(reps):
        for r in rows:
            clf.classify(str(r["prompt"]), bool(r["image"]))
    elapsed = time.perf_counter() - t0
    n = reps * len(rows)
    print(f"throughput over the data: {n / elapsed:,.0f} prompts/s "
          f"({elapsed / n * 1e6:.0f} us mean per prompt)")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", type=Path, default=None, help="JSON-lines file")
    ap.add_argument("--data", dest="data_opt", type=Path, default=None, help="JSON-lines file")
    ap.add_argument("--half", choices=["a", "b"], default=None, help="only one half by id hash")
    ap.add_argument("--errors", action="store_true", help="list the misrouted prompts")
    ap.add_argument("--no-speed", action="store_true", help="skip the speed measurement")
    ap.add_argument("--loso", action="store_true", help="leave-one-source-out (slow)")
    args = ap.parse_args(argv)
    path = args.data_opt or args.data or DEFAULT_DATA
    rows = load(path, args.half)
    if not rows:
        print(f"no rows in {path}", file=sys.stderr)
        return 1
    clf = Classifier()
    if clf.model is None:
        print("the model file is missing: run bench/train_classifier.py", file=sys.stderr)
        return 1
    results = [clf.classify(str(r["prompt"]), bool(r["image"])) for r in rows]
    ours = [c.route for c in results]
    rules = [Classifier(model=None).classify(str(r["prompt"]), bool(r["image"])).route
             for r in rows]
    base = [baseline_route(str(r["prompt"])) for r in rows]
    print(f"data: {path} ({len(rows)} prompts{', half ' + args.half if args.half else ''})")
    report("labrouter (rules + learned model)", rows, ours)
    text = [(c, r) for c, r in zip(results, rows, strict=True) if not r["image"]]
    right = [c.route == r["route"] for c, r in text]
    print(f"calibration, text-only: ECE {ece([c.confidence for c, _ in text], right):.3f} "
          f"(mean confidence {statistics.mean(c.confidence for c, _ in text):.3f}, "
          f"accuracy {sum(right) / len(right):.3f})")
    report("rules alone (the first version)", rows, rules)
    report("baseline (article keyword router)", rows, base)
    if args.errors:
        _errors(rows, results, lambda c: c.route)
    if args.loso:
        _loso()
    if not args.no_speed:
        speed(clf, rows)
    return 0


def _loso() -> None:
    import train_classifier as tc

    items = tc.load(tc.EVAL / "train.jsonl") + tc.load(tc.EVAL / "dev.jsonl")
    print(f"\n== leave-one-source-out over train + dev ({len(items)} text prompts; "
          "BIG-Bench-Hard and image items left out)")
    res = tc.loso(items, tc.Featurizer(items), verbose=False)
    for line in tc.loso_report(res):
        print(line)
    gold = [it.route for it in items]
    print(tc.report("baseline on the same items", gold,
                    [baseline_route(it.prompt) for it in items]))
    rules = Classifier(model=None)
    print(tc.report("rules alone on the same items", gold,
                    [rules.classify(it.prompt).route for it in items]))


def _errors(rows: Sequence[Row], results: Sequence[object], route: Callable[[object], str]) -> None:
    print("\n== misrouted")
    for r, c in zip(rows, results, strict=True):
        if route(c) != r["route"]:
            text = str(r["prompt"]).replace("\n", " ")[:160]
            print(f"- {r['id']} gold={r['route']} got={route(c)} "
                  f"scores={dict(c.scores)} {getattr(c, 'reasons', ())}\n    {text}")  # type: ignore[attr-defined]


if __name__ == "__main__":
    raise SystemExit(main())
