"""Near-duplicate check for the hand-written training files in bench/data/.

    python bench/check_authored.py bench/data/authored2.jsonl

Reports every prompt of the checked file whose word set has a Jaccard similarity of 0.8 or
more (the threshold TRAIN.md uses to keep the pool apart from the held-out sets) with another
prompt of the same file, with the other authored files, or with dev.jsonl and train.jsonl.
Exit status 1 when any pair is found, so a new batch of prompts can be checked before it
is committed. Standard library only; it never reads a held-out set.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import unicodedata
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT.parent / "shared" / "eval"
if not EVAL.exists():  # a worktree: /work/wt/NAME -> /work/shared
    EVAL = ROOT.parents[1] / "shared" / "eval"
DATA = ROOT / "bench" / "data"
THRESHOLD = 0.8
_WORD = re.compile(r"\w+")


def words(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(unicodedata.normalize("NFKC", text).lower()))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def load(path: Path) -> list[tuple[str, str]]:
    out = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                out.append((r["id"], r["prompt"]))
    return out


def collisions(
    checked: Sequence[tuple[str, str]], others: Sequence[tuple[str, str]]
) -> list[tuple[str, str, float]]:
    """Pairs at or above the threshold: within `checked`, and between it and `others`."""
    ref = [(i, words(p)) for i, p in others]
    mine = [(i, words(p)) for i, p in checked]
    found = []
    for n, (i, a) in enumerate(mine):
        # J >= t needs t <= |a|/|b| <= 1/t: most pairs are skipped on size alone
        lo, hi = len(a) * THRESHOLD, len(a) / THRESHOLD
        for j, b in ref + mine[n + 1:]:
            if lo <= len(b) <= hi:
                s = jaccard(a, b)
                if s >= THRESHOLD:
                    found.append((i, j, s))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path, help="authored files to check")
    args = ap.parse_args(argv)
    checked_paths = {p.resolve() for p in args.files}
    refs = [EVAL / "dev.jsonl", EVAL / "train.jsonl"]
    refs += [p for p in sorted(DATA.glob("authored*.jsonl")) if p.resolve() not in checked_paths]
    others = [row for p in refs if p.exists() for row in load(p)]
    bad = 0
    for path in args.files:
        for i, j, s in collisions(load(path), others):
            print(f"{path.name}: {i} ~ {j} (Jaccard {s:.2f})")
            bad += 1
    print(f"{bad} near-duplicate pair(s)", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
