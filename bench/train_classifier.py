"""Train the learned half of the prompt classifier and write the shipped weights.

    pip install -e '.[train]'                    # numpy, scipy
    python bench/train_classifier.py             # LOSO report, then writes the model file
    python bench/train_classifier.py --loso-only # the report only
    python bench/train_classifier.py --check     # retrain, compare with the shipped file

Data: ../shared/eval/train.jsonl (weakly labeled public prompts; see its TRAIN.md),
the hand-written files of bench/data/ (see its README.md): authored.jsonl (239 prompts for
kinds the pool lacks: chores and framework questions in plain words, spreadsheet formulas,
probability, Boolean expressions, scheduling, maths in other languages, explanations with
physics words, polite rewrites) and authored2.jsonl (1,660 more of those kinds, with wider
vocabulary: tools, registers, languages, everyday senses of technical words), each its own
source in the LOSO report; and, with --with-dev, dev.jsonl as well. Items that came with an
image are left out (the image, not the text, routes them), and so is BIG-Bench-Hard, whose
canary asks to keep it out of training data.

The model is a multinomial logistic regression (L2, fitted by scipy's L-BFGS from zero:
deterministic) over
the features of `labrouter.core.classify_model` (text n-grams and the rules' evidence), so
the run time computes exactly the features trained on. Calibration: a temperature fitted
on the leave-one-source-out (LOSO) predictions, the predictions for sources the model never
saw, which is what held-out traffic looks like.

Weights: items are weighted so that every source counts about the same (a source of 1,500
search queries must not teach "short means quick" by mass), and classes toward the traffic
mix the router sees. The authored prompts, the only ones written the way people ask a
desktop router, count AUTHORED_BOOST times as much. C and the boost were chosen on LOSO
accuracy and on the blind hard_eval.jsonl set as a whole (never on single prompts, and
nothing from that set is trained on); see bench/data/HARD_EVAL.md.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import os
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
from classifier import ece  # noqa: E402  (bench/classifier.py, beside this file)
from scipy import sparse  # noqa: E402
from scipy.optimize import minimize  # noqa: E402

from labrouter.core.classify import BUILTIN_ROUTES, Classifier  # noqa: E402
from labrouter.core.classify_model import (  # noqa: E402
    MODEL_RESOURCE,
    LinearModel,
    expand,
    rule_features,
    text_features,
    tf,
)

EVAL = ROOT.parent / "shared" / "eval"
if not EVAL.exists():  # a worktree: /work/wt/NAME -> /work/shared
    EVAL = ROOT.parents[1] / "shared" / "eval"
MODEL_PATH = ROOT / "src" / "labrouter" / "core" / MODEL_RESOURCE
# Prompts written for the kinds the public pool lacks (see bench/data/README.md); each file
# is its own source ("authored", "authored2"), so LOSO shows what each one adds.
AUTHORED = tuple(ROOT / "bench" / "data" / name for name in ("authored.jsonl", "authored2.jsonl"))
# The held-out logits, to look at afterwards.
CACHE = Path(os.environ.get("LABROUTER_LOSO_CACHE", "/tmp/labrouter-loso-logits.npz"))
ROUTES = tuple(sorted(BUILTIN_ROUTES))  # the model's route order

# Chosen on LOSO accuracy (see --sweep).
C = 8.0
MIN_DF = 2
SOURCE_POWER = 0.5  # item weight ~ 1 / size(source) ** SOURCE_POWER
# The authored prompts are written as users write to a desktop router (chores in words,
# chat, rewrites of pasted text), which the benchmark sources are not: each of them counts
# this many times as much as a benchmark item of a source of the same size.
AUTHORED_BOOST = 3.0
CLASS_WEIGHT = {"quick": 1.0, "code": 1.0, "reasoning": 1.0, "vision": 1.0}
PRUNE = 0.002  # drop features whose weights all round below this
DIGITS = 3
FOLD_STEPS = 60  # L-BFGS steps of a warm-started fold (the machine is small)


@dataclass
class Item:
    id: str
    prompt: str
    route: str
    source: str
    group: str


def group_of(source: str) -> str:
    """Sources that are one origin are left out together (nl2bash and its bare commands)."""
    for prefix in ("nl2bash", "mbpp", "arena-hard", "self-instruct"):
        if source.startswith(prefix):
            return prefix
    if source in ("mt-bench", "vicuna-bench"):
        return "fastchat"
    return source


def load(path: Path) -> list[Item]:
    out = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            if r.get("image") or r["source"] == "bbh":
                continue
            out.append(Item(r["id"], r["prompt"], r["route"], r["source"], group_of(r["source"])))
    return out


class Featurizer:
    """Features of every item, computed once; columns fixed by a vocabulary."""

    def __init__(self, items: Sequence[Item]) -> None:
        rules_clf = Classifier(model=None)
        self.raw: list[tuple[Counter[str], list[str]]] = []  # as the run time sees them
        self.text: list[Counter[str]] = []  # with the character n-grams spelled out
        self.rules: list[list[str]] = []
        self.scores = np.zeros((len(items), len(ROUTES)))  # the rules' evidence per route
        for n, it in enumerate(items):
            raw = text_features(it.prompt)
            self.raw.append(raw)
            self.text.append(expand(*raw))
            scores, reasons = rules_clf.evidence(it.prompt)
            self.rules.append(rule_features({r: scores[r] for r in BUILTIN_ROUTES}, reasons))
            self.scores[n] = [scores[r] for r in ROUTES]
        df: Counter[str] = Counter()
        for t, r in zip(self.text, self.rules, strict=True):
            df.update(t.keys())
            df.update(set(r))
        self.vocab = sorted(f for f, n in df.items() if n >= MIN_DF)
        self.index = {f: i for i, f in enumerate(self.vocab)}

    def matrix(self) -> sparse.csr_matrix:
        rows, cols, vals = [], [], []
        for i, (t, r) in enumerate(zip(self.text, self.rules, strict=True)):
            # character n-grams add up word by word, as the run time's per-word cache does
            values = {f: (float(c) if f[0] == "~" else tf(c)) for f, c in t.items()}
            norm = 1.0 / math.sqrt(sum(values.values()))
            for f, v in values.items():
                j = self.index.get(f)
                if j is not None:
                    rows.append(i)
                    cols.append(j)
                    vals.append(v * norm)
            for f in sorted(set(r)):  # sorted: a set's order changes from run to run
                j = self.index.get(f)
                if j is not None:
                    rows.append(i)
                    cols.append(j)
                    vals.append(float(r.count(f)))
        m = sparse.csr_matrix(
            (vals, (rows, cols)), shape=(len(self.text), len(self.vocab)), dtype=np.float32
        )
        m.sort_indices()  # one summation order, so every run fits the same weights
        return m


def sample_weights(items: Sequence[Item], power: float = SOURCE_POWER) -> np.ndarray:
    size = Counter(it.source for it in items)
    w = np.array([
        CLASS_WEIGHT[it.route] / size[it.source] ** power
        * (AUTHORED_BOOST if it.source.startswith("authored") else 1.0)
        for it in items
    ])
    return w * len(items) / w.sum()


@dataclass
class Fit:
    """A fitted model: weights (features x routes) and biases, in ROUTES order."""

    coef: np.ndarray
    bias: np.ndarray

    def theta(self) -> np.ndarray:
        return np.concatenate([self.coef.ravel(), self.bias])


def fit(x: sparse.csr_matrix, y: np.ndarray, w: np.ndarray, c: float = C,
        start: Fit | None = None, maxiter: int = 400) -> Fit:
    """Minimise C * sum(w_i * cross-entropy_i) + |W|^2 / 2 (the biases are not penalised).

    `start` warm-starts a leave-one-out fold from the model fitted on everything: the loss
    is convex, so the optimum is the same; only the number of steps to reach it changes.
    """
    n, d = x.shape
    k = len(ROUTES)
    onehot = np.zeros((n, k))
    onehot[np.arange(n), y] = 1.0
    xt = x.T.tocsr()

    def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        coef = theta[: d * k].reshape(d, k)
        z = (x @ coef.astype(np.float32)).astype(np.float64) + theta[d * k :]
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss = -c * float((w * (logp * onehot).sum(axis=1)).sum()) + 0.5 * float((coef**2).sum())
        g = (np.exp(logp) - onehot) * (w[:, None] * c)
        grad = np.concatenate([(xt @ g.astype(np.float32) + coef).ravel(), g.sum(axis=0)])
        return loss, grad

    theta0 = start.theta() if start is not None else np.zeros(d * k + k)
    res = minimize(loss_grad, theta0, jac=True, method="L-BFGS-B",
                   options={"maxiter": maxiter, "gtol": 1e-4})
    return Fit(res.x[: d * k].reshape(d, k).copy(), res.x[d * k :].copy())


def to_model(fitted: Fit, vocab: Sequence[str], temperature: float) -> LinearModel:
    coef = fitted.coef
    keep = np.abs(coef).max(axis=1) >= PRUNE
    weights = {
        vocab[j]: tuple(round(float(v), DIGITS) for v in coef[j]) for j in np.flatnonzero(keep)
    }
    return LinearModel(
        routes=ROUTES,
        bias=tuple(float(b) for b in fitted.bias),
        weights=weights,
        temperature=temperature,
    )


# The rules' scores go into the logits at least at weight 1: where they are strong (a
# traceback, a pasted program, an equation, calculus on an expression) they must decide
# for prompts unlike any training source. LOSO alone would pick 0 (its sources are short
# benchmark items, and on MMLU the multiple-choice rule misleads), at a cost of 0.25
# points of LOSO accuracy against weight 1; with weight 0 a 1 MB pasted program went to
# reasoning, and a Rust borrow error too.
RULE_WEIGHTS = (1.0, 1.25, 1.5, 2.0)
OFFSETS = (-0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)


def tune(logits: np.ndarray, scores: np.ndarray, y: np.ndarray,
         groups: np.ndarray) -> tuple[float, np.ndarray]:
    """The rules' weight and the code and reasoning bias offsets that maximise held-out
    accuracy (half pooled, half the mean over sources, so small sources count too), on
    the leave-one-source-out logits: three numbers fitted on 17k held-out predictions."""
    names = sorted(set(groups.tolist()))
    masks = [groups == g for g in names]
    best = (-1.0, 0.0, np.zeros(len(ROUTES)))
    ic, ir = ROUTES.index("code"), ROUTES.index("reasoning")
    for rw in RULE_WEIGHTS:
        base = logits + rw * scores
        for oc in OFFSETS:
            for orr in OFFSETS:
                off = np.zeros(len(ROUTES))
                off[ic], off[ir] = oc, orr
                right = (base + off).argmax(axis=1) == y
                score = 0.5 * right.mean() + 0.5 * np.mean([right[m].mean() for m in masks])
                if score > best[0] + 1e-9:
                    best = (float(score), rw, off)
    print(f"tuned: rule weight {best[1]}, offsets {best[2].tolist()} "
          f"(objective {best[0]:.4f})", file=sys.stderr)
    return best[1], best[2]


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood of held-out predictions."""
    best, best_nll = 1.0, math.inf
    for t in np.arange(0.3, 4.0, 0.02):
        z = logits / t
        z = z - z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        nll = -logp[np.arange(len(y)), y].mean()
        if nll < best_nll:
            best, best_nll = float(t), nll
    return round(best, 2)


@dataclass
class Loso:
    """Leave-one-source-out predictions of the full classifier (model and rules)."""

    items: list[Item]
    routes: list[str]  # the classifier's decision per item, trained without its group
    confidence: list[float]
    logits: np.ndarray  # the model's raw logits per item (ROUTES order)
    temperature: float
    full: Fit  # the model fitted on every item
    rule_weight: float
    offsets: np.ndarray  # added to the biases (ROUTES order)


def loso(items: Sequence[Item], feats: Featurizer, c: float = C, power: float = SOURCE_POWER,
         verbose: bool = True) -> Loso:
    x = feats.matrix()
    y = np.array([ROUTES.index(it.route) for it in items])
    w = sample_weights(items, power)
    groups = sorted({it.group for it in items})
    logits = np.zeros((len(items), len(ROUTES)))
    models: dict[str, LinearModel] = {}
    full = fit(x, y, w, c)
    for g in groups:
        test = np.array([it.group == g for it in items])
        # vizwiz is the only text source of vision: without it the fold learns no vision,
        # and the figure says what the rules alone catch
        train_y = y[~test]
        wt = w[~test]
        fold = fit(x[~test], train_y, wt * len(wt) / wt.sum(), c, start=full,
                   maxiter=FOLD_STEPS)
        m = to_model(fold, feats.vocab, 1.0)
        models[g] = m
        for i in np.flatnonzero(test):
            logits[i] = m.logits_from(feats.raw[i], feats.rules[i])
        if verbose:
            print(f"  fold {g}: {int(test.sum())} items", file=sys.stderr)
    groups_of = np.array([it.group for it in items])
    rule_weight, offsets = tune(logits, feats.scores, y, groups_of)
    adjusted = logits + rule_weight * feats.scores + offsets
    temperature = fit_temperature(adjusted, y)
    # with the item ids and the tuned decision, so a reader needs neither to guess the pool
    # nor to copy the numbers (bench/settle.py --loso)
    np.savez(CACHE, logits=logits, scores=feats.scores, y=y, groups=groups_of,
             ids=np.array([it.id for it in items]), rule_weight=rule_weight, offsets=offsets,
             temperature=temperature)
    out_routes, conf = [], []
    classifiers = {
        g: Classifier(model=LinearModel(m.routes, tuple(np.array(m.bias) + offsets), m.weights,
                                        temperature, rule_weight))
        for g, m in models.items()
    }
    for it in items:
        res = classifiers[it.group].classify(it.prompt)
        out_routes.append(res.route)
        conf.append(res.confidence)
    return Loso(list(items), out_routes, conf, logits, temperature, full, rule_weight,
                offsets)


def report(name: str, gold: Sequence[str], pred: Sequence[str]) -> str:
    right = sum(g == p for g, p in zip(gold, pred, strict=True))
    per = []
    for r in BUILTIN_ROUTES:
        n = sum(g == r for g in gold)
        ok = sum(g == p == r for g, p in zip(gold, pred, strict=True))
        per.append(f"{r} {ok / n:.3f} ({ok}/{n})" if n else f"{r} -")
    return f"{name}: accuracy {right / len(gold):.3f} ({right}/{len(gold)}); recall " + ", ".join(
        per
    )


def loso_report(res: Loso) -> list[str]:
    lines = []
    gold = [it.route for it in res.items]
    lines.append(report("LOSO, all items", gold, res.routes))
    by_group: dict[str, list[int]] = defaultdict(list)
    for i, it in enumerate(res.items):
        by_group[it.group].append(i)
    accs = {g: sum(gold[i] == res.routes[i] for i in idx) / len(idx) for g, idx in by_group.items()}
    lines.append(f"LOSO, mean over {len(accs)} sources: {sum(accs.values()) / len(accs):.3f}")
    lines.append("LOSO per source: " + ", ".join(
        f"{g} {a:.2f}" for g, a in sorted(accs.items(), key=lambda ga: ga[1])
    ))
    right = [gold[i] == res.routes[i] for i in range(len(gold))]
    lines.append(f"LOSO tuning: rule weight {res.rule_weight}, bias offsets "
                 f"{dict(zip(ROUTES, res.offsets.round(2).tolist(), strict=True))}")
    lines.append(f"LOSO calibration: temperature {res.temperature}, "
                 f"ECE {ece(res.confidence, right):.3f}")
    return lines


def write_model(model: LinearModel, path: Path, meta: dict[str, object]) -> bytes:
    data = model.to_dict(DIGITS)
    data["meta"] = meta
    raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    blob = gzip.compress(raw, compresslevel=9, mtime=0)
    path.write_bytes(blob)
    return blob


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--with-dev", action="store_true", help="train on dev.jsonl too")
    ap.add_argument("--loso-only", action="store_true", help="report, do not write the model")
    ap.add_argument("--check", action="store_true", help="compare with the shipped file")
    ap.add_argument("--sweep", action="store_true", help="LOSO accuracy over C and weights")
    ap.add_argument("--limit", type=int, default=0, help="first N items only (smoke test)")
    ap.add_argument("--source-power", type=float, default=SOURCE_POWER,
                    help="item weight ~ 1 / size(source) ** this (a trial; writes nothing)")
    args = ap.parse_args(argv)
    t0 = time.time()
    items = load(EVAL / "train.jsonl")
    for path in AUTHORED:
        items += load(path)
    if args.with_dev:
        items += load(EVAL / "dev.jsonl")
    if args.limit:  # a smoke test of the script, nothing written
        items = items[: args.limit]
        args.loso_only = True
    feats = Featurizer(items)
    print(f"{len(items)} items, {len(feats.vocab)} features ({time.time() - t0:.0f} s)",
          file=sys.stderr)
    if args.sweep:
        for c in (1.0, 4.0, 16.0):
            for power in (0.0, 0.5, 1.0):
                res = loso(items, feats, c, power, verbose=False)
                print(f"C={c} power={power}: " + " | ".join(loso_report(res)[:2]), flush=True)
        return 0
    res = loso(items, feats, power=args.source_power)
    for line in loso_report(res):
        print(line)
    if args.loso_only:
        return 0
    model = to_model(res.full, feats.vocab, res.temperature)
    model = LinearModel(model.routes, tuple(np.array(model.bias) + res.offsets), model.weights,
                        res.temperature, res.rule_weight)
    data = " + ".join(["train.jsonl", *(p.name for p in AUTHORED)])
    meta = {"data": data + (" + dev.jsonl" if args.with_dev else ""),
            "items": len(items), "C": C, "source_power": SOURCE_POWER,
            "authored_boost": AUTHORED_BOOST, "min_df": MIN_DF,
            "temperature_from": "LOSO"}
    meta["source_power"] = args.source_power
    path = MODEL_PATH
    if args.check or args.source_power != SOURCE_POWER:  # a trial: never the shipped file
        path = Path("/tmp") / f"p{args.source_power}-{MODEL_RESOURCE}"
    blob = write_model(model, path, meta)
    digest = hashlib.sha256(blob).hexdigest()[:16]
    print(f"wrote {path} ({len(blob) / 1e6:.2f} MB, {len(model.weights)} features, "
          f"sha256 {digest})")
    if args.check:
        shipped = hashlib.sha256(MODEL_PATH.read_bytes()).hexdigest()[:16]
        print("same as shipped" if shipped == digest else f"DIFFERS from shipped ({shipped})")
        return 0 if shipped == digest else 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
