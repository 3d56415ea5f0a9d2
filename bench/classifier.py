"""Benchmark of the prompt classifier against the article's keyword router.

Prints accuracy overall and per route, the confusion matrix, and the speed of
`labrouter.core.classify`. Run by hand:

    python bench/classifier.py                 # ../shared/eval/dev.jsonl
    python bench/classifier.py --data PATH     # another JSON-lines file
    python bench/classifier.py --half a|b      # one half of the data, split by id hash
    python bench/classifier.py --errors        # also list the misrouted prompts

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

from labrouter.core.classify import BUILTIN_ROUTES, Classifier, baseline_route

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared/eval/dev.jsonl"

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
    samples = []
    for _ in range(300):
        t0 = time.perf_counter_ns()
        clf.classify(prompt)
        samples.append((time.perf_counter_ns() - t0) / 1000)
    print(f"\n== speed, {len(prompt)} B mixed prompt: median {statistics.median(samples):.0f} us, "
          f"p95 {sorted(samples)[int(len(samples) * 0.95)]:.0f} us, max {max(samples):.0f} us")
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
    args = ap.parse_args(argv)
    path = args.data_opt or args.data or DEFAULT_DATA
    rows = load(path, args.half)
    if not rows:
        print(f"no rows in {path}", file=sys.stderr)
        return 1
    clf = Classifier()
    results = [clf.classify(str(r["prompt"]), bool(r["image"])) for r in rows]
    ours = [c.route for c in results]
    base = [baseline_route(str(r["prompt"])) for r in rows]
    print(f"data: {path} ({len(rows)} prompts{', half ' + args.half if args.half else ''})")
    report("labrouter", rows, ours)
    report("baseline (article keyword router)", rows, base)
    if args.errors:
        _errors(rows, results, lambda c: c.route)
    if not args.no_speed:
        speed(clf, rows)
    return 0


def _errors(rows: Sequence[Row], results: Sequence[object], route: Callable[[object], str]) -> None:
    print("\n== misrouted")
    for r, c in zip(rows, results, strict=True):
        if route(c) != r["route"]:
            text = str(r["prompt"]).replace("\n", " ")[:160]
            print(f"- {r['id']} gold={r['route']} got={route(c)} "
                  f"scores={dict(c.scores)} {getattr(c, 'reasons', ())}\n    {text}")  # type: ignore[attr-defined]


if __name__ == "__main__":
    raise SystemExit(main())
