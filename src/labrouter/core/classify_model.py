"""The learned half of the prompt classifier: feature extraction and a linear model.

Owns `text_features()` and `rule_features()` (the one definition of the features, shared by
the run-time model and by `tools/train_classifier.py`, so that training and use cannot
drift apart), `LinearModel` (multinomial logistic regression over those features, with the
temperature that calibrates it) and `default_model()` (the shipped weights, loaded once).

Must import nothing but the standard library: it runs in `core/` on every hotkey press. The
training script uses numpy and scikit-learn; the run time never does.

Features
--------
- word unigrams and bigrams over the lower-cased head and tail of the prompt, where a
  "word" is a run of letters, a run of digits (written as its length class: "0", "00",
  "000") or one punctuation character, so `def f(x):` and `2 + 2` have shapes;
- character 4-grams of each distinct word (spelling: "kubectl", "-ization", "sql");
- a few shape features (length class, line count class, first words, last character);
- the rule layer's evidence (`rule_features`): which rules fired and how strongly.

The text features of one prompt are counted, each count c becomes 1 + log(c) (`tf`; the
character n-grams simply add up over the distinct words), and the values are divided by
the square root of their sum (a length normalisation); rule features count 1 each. The
weights of a word's character n-grams are summed once and cached, so a long prompt costs
a dictionary look-up per distinct word. `tokens` gets the regex's words from str.split for
ASCII text where a letter never touches a digit (several times faster), and `explain`
reuses the weights `logits_from` looked up.
"""

from __future__ import annotations

import gzip
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

MODEL_RESOURCE = "classify_model.json.gz"
# The model reads the head and tail of a prompt: requests are at either end, and this keeps
# a 10 KB prompt fast. The rule layer still sees all of it.
HEAD_CHARS = 1_500
TAIL_CHARS = 500
CHAR_NGRAMS = (4,)
MAX_BIGRAMS = 600
SPELLING_CACHE = 20_000

# Digits are mapped to "0" first (str.translate runs in C), so a number is a run of zeros,
# cut at three: its length class ("7" -> "0", "42" -> "00", "2024" -> "000", "0").
_DIGITS = str.maketrans("123456789", "000000000")
_TOKEN = re.compile(r"[a-z]+|0{1,3}|[^\sa-z0]")
# The same tokens from str.split, several times faster, for ASCII text where no letter
# touches a digit and no number has more than three digits: each mark (an ASCII character
# that is neither a letter, a digit nor white space) is spaced out, and the rest splits.
_MARKS = tuple(c for c in map(chr, range(128)) if not (c.isalnum() or c.isspace()))
# A digit (already "0") that touches a letter or starts a run of four: led by a literal, so
# fast where digits are few.
_MIXED = re.compile(r"0(?:(?<=[a-z]0)|[a-z]|000)")
_RULE_NAME = re.compile(r"^(\w+): ([^(0-9]+)")


def tokens(text: str) -> list[str]:
    """The model's words: letters, digit runs by length class, single punctuation marks."""
    if len(text) > HEAD_CHARS + TAIL_CHARS and text.isascii():
        # Cut before lowering: the same for ASCII (lower() keeps its length), and a 10 KB
        # prompt is not lowered whole for 2 KB of it.
        low = text[:HEAD_CHARS].lower() + "\n" + text[-TAIL_CHARS:].lower()
    else:
        low = text.lower()
        if len(low) > HEAD_CHARS + TAIL_CHARS:
            low = low[:HEAD_CHARS] + "\n" + low[-TAIL_CHARS:]
    low = low.translate(_DIGITS)
    if low.isascii() and not _MIXED.search(low):
        for mark in _MARKS:
            if mark in low:  # a one-character `in` is a memchr
                low = low.replace(mark, f" {mark} ")
        return low.split()
    return _TOKEN.findall(low)


def _bucket(n: int) -> int:
    return n.bit_length()  # 0, 1, 2-3, 4-7, 8-15 ...


@lru_cache(maxsize=50_000)
def word_ngrams(word: str) -> tuple[str, ...]:
    """Character n-grams of one word with its boundaries marked ("~<sq", "~sql>")."""
    if len(word) < 2 or not word.isalpha():
        return ()
    w = f"<{word}>"
    return tuple(f"~{w[i : i + n]}" for n in CHAR_NGRAMS for i in range(len(w) - n + 1))


def text_features(text: str) -> tuple[Counter[str], list[str]]:
    """The text features of a prompt: (counts of words, word pairs and shape features; the
    distinct words, whose character n-grams count once each). Keys never collide: a word
    has no space, a pair one, character n-grams start with "~", shape features with "="."""
    toks = tokens(text)
    if not toks:
        return Counter({"=empty": 1}), []
    feats = Counter(toks)
    # The words in the order of the features (first occurrence), taken before the pairs and
    # shape features go in: those are never a word (a space, "=").
    words = [w for w in feats if len(w) > 1 and w.isalpha()]
    head = toks[: MAX_BIGRAMS + 1]
    feats.update(map(" ".join, zip(head, head[1:], strict=False)))  # "a b", in C
    stripped = text.strip()
    feats[f"=len{_bucket(len(toks))}"] += 1
    feats[f"=lines{_bucket(stripped.count(chr(10)))}"] += 1
    feats["=first " + " ".join(toks[:2])] += 1
    feats["=last " + toks[-1]] += 1
    return feats, words


def tf(count: int) -> float:
    """A feature's value from its count: sublinear, so a word repeated a thousand times in
    a pasted log does not outweigh everything else."""
    return 1.0 + math.log(count) if count > 1 else float(count)


# tf() of the small counts, looked up instead of computed (the same floats)
_TF_TABLE = 64
_TF = tuple(tf(c) for c in range(_TF_TABLE))


def expand(feats: Counter[str], words: Sequence[str]) -> Counter[str]:
    """All features with the words' character n-grams spelled out (for training)."""
    out = Counter(feats)
    for w in words:
        out.update(word_ngrams(w))
    return out


def rule_features(scores: Mapping[str, float], reasons: Iterable[str]) -> list[str]:
    """The rule layer's evidence as features: score levels per route and the rules fired."""
    out: list[str] = []
    for route, score in scores.items():
        for level in (1, 2, 3, 4, 6):
            if score >= level:
                out.append(f"!{route}>={level}")
    for reason in reasons:
        if feature := _rule_feature(reason):
            out.append(feature)
    return out


@lru_cache(maxsize=4096)
def _rule_feature(reason: str) -> str:
    """The feature of one rule's reason ("" for none); cached: reasons repeat."""
    m = _RULE_NAME.match(reason)
    return f"!{m.group(1)}:{m.group(2).strip()}" if m else ""


@dataclass(frozen=True)
class LinearModel:
    """Multinomial logistic regression; `temperature` divides the logits (calibration)."""

    routes: tuple[str, ...]
    bias: tuple[float, ...]
    weights: Mapping[str, Sequence[float]]
    temperature: float = 1.0
    # The rules' evidence added to the logits as is, times this (fitted on held-out
    # sources): it carries the rules' knowledge to prompts unlike the training data.
    rule_weight: float = 0.0
    # word -> (number of its character n-grams, their summed weights); a cache that only
    # ever holds values computed from `weights`, so sharing it between threads is harmless
    _spelling: dict[str, tuple[int, tuple[float, ...]]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def logits(
        self, text: str, rules: Sequence[str] = (), scores: Mapping[str, float] | None = None
    ) -> list[float]:
        """Uncalibrated scores per route, in the order of `routes`."""
        return self.logits_from(text_features(text), rules, scores)

    def logits_from(
        self,
        features: tuple[Mapping[str, int], Sequence[str]],
        rules: Sequence[str] = (),
        scores: Mapping[str, float] | None = None,
        hits: list[tuple[str, float, Sequence[float]]] | None = None,
    ) -> list[float]:
        """`logits` from features already extracted (`text_features`, `rule_features`).

        `hits`, when given, receives (feature, value, weights) for every text feature the
        model knows, so that `explain` need not look them up again."""
        feats, words = features
        k = len(self.routes)
        acc = [0.0] * k
        get = self.weights.get
        spelled = self._spelling
        total = 0.0
        log = math.log
        if k == 4:
            # The common case unrolled: the same sums in the same order, a third the time.
            a0 = a1 = a2 = a3 = 0.0
            keep = hits.append if hits is not None else None
            for f, c in feats.items():
                v = _TF[c] if c < _TF_TABLE else 1.0 + log(c)  # tf(c), inlined
                total += v
                w = get(f)
                if w is not None:
                    if keep:
                        keep((f, v, w))
                    a0 += v * w[0]
                    a1 += v * w[1]
                    a2 += v * w[2]
                    a3 += v * w[3]
            for word in words:
                hit = spelled.get(word)
                if hit is None:
                    hit = spelled[word] = self._spell(word)
                n, w = hit
                total += n
                a0 += w[0]
                a1 += w[1]
                a2 += w[2]
                a3 += w[3]
            acc = [a0, a1, a2, a3]
        else:
            for f, c in feats.items():
                v = tf(c)
                total += v
                w = get(f)
                if w is not None:
                    if hits is not None:
                        hits.append((f, v, w))
                    for i in range(k):
                        acc[i] += v * w[i]
            for word in words:
                hit = spelled.get(word)
                if hit is None:
                    hit = spelled[word] = self._spell(word)
                n, w = hit
                total += n
                for i in range(k):
                    acc[i] += w[i]
        norm = 1.0 / math.sqrt(total) if total else 0.0
        out = [self.bias[i] + acc[i] * norm for i in range(k)]
        for f in rules:
            w = get(f)
            if w is not None:
                for i in range(k):
                    out[i] += w[i]
        if scores and self.rule_weight:
            for i, route in enumerate(self.routes):
                out[i] += self.rule_weight * scores.get(route, 0.0)
        return out

    def _spell(self, word: str) -> tuple[int, tuple[float, ...]]:
        """A word's character n-grams: their number and summed weights (cached per word)."""
        if len(self._spelling) > SPELLING_CACHE:
            self._spelling.clear()
        grams = word_ngrams(word)
        acc = [0.0] * len(self.routes)
        for g in grams:
            w = self.weights.get(g)
            if w is not None:
                for i in range(len(acc)):
                    acc[i] += w[i]
        return len(grams), tuple(acc)

    def explain(
        self,
        features: tuple[Mapping[str, int], Sequence[str]],
        a: int,
        b: int,
        n: int = 3,
        hits: Sequence[tuple[str, float, Sequence[float]]] | None = None,
    ) -> list[str]:
        """The words and word pairs that most favour route index `a` over `b` (`hits` from
        `logits_from` on the same features saves looking their weights up again)."""
        best: list[tuple[float, str]] = []
        if hits is not None:
            best = [(v * (hw[a] - hw[b]), f) for f, v, hw in hits if f[0] not in "=~!"]
            best = [gf for gf in best if gf[0] > 0]
            best.sort(reverse=True)
            return [word for _, word in best[:n]]
        get = self.weights.get
        log = math.log
        for f, c in features[0].items():
            if (w := get(f)) is None or f[0] in "=~!":
                continue
            gain = (1.0 + log(c) if c > 1 else float(c)) * (w[a] - w[b])  # tf(c), inlined
            if gain > 0:
                best.append((gain, f))
        best.sort(reverse=True)
        return [word for _, word in best[:n]]

    def probabilities(self, logits: Sequence[float]) -> list[float]:
        """Calibrated probabilities from `logits` (softmax at the model's temperature)."""
        return softmax([x / self.temperature for x in logits])

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LinearModel:
        """The model from its file form (`to_dict`); ValueError when it is not one."""
        try:
            scale = float(data.get("scale", 1.0))
            raw = data["weights"]
            if not isinstance(raw, dict):
                raise ValueError("weights must be an object")
            return cls(
                routes=tuple(str(r) for r in data["routes"]),
                bias=tuple(float(b) for b in data["bias"]),
                weights={str(f): tuple(float(v) * scale for v in w) for f, w in raw.items()},
                temperature=float(data.get("temperature", 1.0)),
                rule_weight=float(data.get("rule_weight", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a classifier model file: {exc}") from None

    def to_dict(self, digits: int = 3) -> dict[str, object]:
        """Compact form: weights as integers of 10**-digits."""
        q = 10**digits
        return {
            "routes": list(self.routes),
            "bias": [round(b, 6) for b in self.bias],
            "temperature": round(self.temperature, 4),
            "rule_weight": round(self.rule_weight, 4),
            "scale": 1 / q,
            "weights": {f: [round(x * q) for x in w] for f, w in sorted(self.weights.items())},
        }


def softmax(xs: Sequence[float]) -> list[float]:
    top = max(xs)
    exps = [math.exp(x - top) for x in xs]
    s = sum(exps)
    return [e / s for e in exps]


_model: LinearModel | None = None
_loaded = False


def default_model() -> LinearModel | None:
    """The shipped model, loaded on first use; None when the data file is missing."""
    global _model, _loaded
    if not _loaded:
        _loaded = True
        try:
            raw = resources.files(__package__).joinpath(MODEL_RESOURCE).read_bytes()
        except (FileNotFoundError, OSError):
            return None
        _model = LinearModel.from_dict(json.loads(gzip.decompress(raw)))
    return _model
