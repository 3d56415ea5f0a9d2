"""Routing policy: from a classification and the live peer table to an ordered candidate list.

Owns ``Candidate``, ``choose()``, the learned speed table (``SpeedBook``) and the route
history used for context stickiness (``RouteHistory``). It decides, it does not act:
nothing here opens a socket or reads a clock (``now`` is passed in).

Order of candidates, and why:

1. Only routable nodes (alive or suspect, not paused), servers that are up and not marked
   suspect by a failed request, and models the server has.
2. The route's preference list is cut into size classes (a new class starts where the
   parameter count changes by more than 2x). Within a class, a model already in memory
   beats one that must be loaded cold (a cold 30B load costs seconds to tens of seconds);
   across classes the user's order stands, so a loaded 1B never displaces a 30B coder.
3. Ties (the same model on two machines, or two equal choices) go to the faster measured
   server (time to first token and tokens/s learned from past requests), then to fewer
   requests in flight, then to this machine.
4. Then the route's fallback chain (code -> quick, reasoning -> quick, vision -> any
   vision-capable model -> a text route with the image left out), then, so that
   something always answers, any other model that is up.
5. Cloud servers (cost > 0) only on routes with ``allow_cloud`` and while the day's
   budget is not spent.

Standard library only.
"""

from __future__ import annotations

import fnmatch
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .classify import COST, QUICK, REASONING, Classification
from .config import Config
from .peers import ModelInfo, Peer, ServerState

#: a prompt is borderline, and may stay on the sticky route, below this confidence
BORDERLINE = 0.6
#: below this calibrated confidence an expensive route (reasoning, code) gives way to the
#: cheaper of the classifier's two best routes: it is more likely wrong than right, and a
#: wrong cheap answer costs a retry, a wrong expensive one minutes of a big model
CHEAPER_BELOW = 0.5
STICKY_WINDOW = 300.0  # seconds
#: the probability of the sticky route a prompt needs to stay on it
STICKY_EVIDENCE = 0.2
STICKY_COUNT = 3
_NOT_CHAT = ("embed", "rerank", "bge-", "nomic-embed", "mxbai")


@dataclass(frozen=True)
class Candidate:
    """One way to answer: a model on a server of a node, and why it is in the list."""

    peer: Peer
    server: ServerState
    model: str
    route: str
    reason: str
    fallback: bool = False  # not a first choice of the requested route
    drop_image: bool = False  # the model cannot see; the image is left out

    @property
    def label(self) -> str:
        return f"{self.model} on {self.peer.name}"

    @property
    def key(self) -> str:
        """Identity of the server+model pair for speed learning."""
        return f"{self.peer.name}/{self.server.id}/{self.model}"

    @property
    def loaded(self) -> bool:
        """Known to be in memory. Only Ollama says what is loaded (``/api/ps``); an
        OpenAI-compatible server (llama-server, a cloud) serves what it has loaded."""
        return self.server.kind != "ollama" or self.model in self.server.loaded

    @property
    def health_key(self) -> tuple[str, str, str]:
        """Identity for the fault memory (``core.health``)."""
        return (self.peer.node_id, self.server.id, self.model)


#: recent samples kept per key and state: enough for a p95, small enough for speeds.json
SAMPLES = 40


@dataclass
class Speed:
    """What one server+model has shown: moving averages for ranking, and the recent
    samples (time to first token when loaded / cold, the longest silence between two
    tokens of each answer) for deadlines."""

    ttft: float  # seconds, moving average
    tps: float  # completion tokens per second, moving average
    n: int = 1
    warm: list[float] = field(default_factory=list)  # ttft with the model in memory
    cold: list[float] = field(default_factory=list)  # ttft with the model loaded first
    gaps: list[float] = field(default_factory=list)  # longest gap between tokens, per answer


@dataclass(frozen=True)
class DeadlineRule:
    """How deadlines and the hedge delay follow from what a server has shown.

    A learned deadline is ``p95 * margin + pad``, never under ``floor`` and never over the
    configured timeout (the ceiling). With fewer than ``min_samples`` samples nothing is
    learned yet: a loaded model gets ``unlearned_*`` (by default the ceilings too) and is
    hedged after ``unlearned_hedge``, a cold one gets the ceiling and no hedge.
    """

    min_samples: int = 5
    margin: float = 3.0
    first_pad: float = 1.0  # seconds on top of p95 * margin
    first_floor: float = 2.0
    cold_floor: float = 10.0  # a cold load is never cut off sooner than this
    gap_pad: float = 0.5
    gap_floor: float = 1.5
    #: while nothing is measured: the configured ceilings (a server never seen is given
    #: what it was always given; the hedge, not the deadline, saves the wait)
    unlearned_first: float = math.inf
    unlearned_gap: float = math.inf
    #: extra first-token time per prompt token (prefill at a slow 500 tokens/s), so a long
    #: prompt is not taken for a hung server
    per_prompt_token: float = 1 / 500
    hedge_factor: float = 1.5  # hedge after p95 * this ...
    hedge_floor: float = 0.5  # ... and never sooner than this
    unlearned_hedge: float = 3.0  # a loaded model that has shown nothing yet


@dataclass(frozen=True)
class Deadlines:
    """The deadlines of one request to one candidate, in seconds from its start."""

    first_token: float
    gap: float
    hedge_after: float | None  # start a second candidate after this; None: never
    learned: bool  # from the server's own samples (else defaults and ceilings)
    why: str


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; samples must not be empty."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class SpeedBook:
    """Time to first token and tokens/s per node/server/model, learned from requests."""

    speeds: dict[str, Speed] = field(default_factory=dict)
    alpha: float = 0.3  # weight of the newest measurement

    def record(self, key: str, ttft: float, tokens: int, duration: float, *,
               loaded: bool | None = None, max_gap: float | None = None) -> None:
        """One finished answer. ``loaded``: whether the model was known to be in memory
        when asked (None: unknown, no ttft sample); ``max_gap``: its longest silence
        between two tokens (None: fewer than two tokens)."""
        gen_time = max(duration - ttft, 1e-3)
        tps = tokens / gen_time if tokens > 0 else 0.0
        old = self.speeds.get(key)
        if old is None:
            old = self.speeds[key] = Speed(ttft=ttft, tps=tps, n=0)
        else:
            a = self.alpha
            old.ttft = (1 - a) * old.ttft + a * ttft
            if tps > 0:
                old.tps = (1 - a) * old.tps + a * tps if old.tps > 0 else tps
        old.n += 1
        if loaded is not None:
            _keep(old.warm if loaded else old.cold, ttft)
        if max_gap is not None:
            _keep(old.gaps, max_gap)

    def record_first_token(self, key: str, ttft: float, loaded: bool) -> None:
        """A time to first token on its own, when it came (the answer may still be cut
        off, or be a hedge's loser stopped right after its first token)."""
        s = self.speeds.get(key)
        if s is None:
            s = self.speeds[key] = Speed(ttft=ttft, tps=0.0, n=0)
        _keep(s.warm if loaded else s.cold, ttft)

    def record_gaps(self, key: str, max_gap: float) -> None:
        """The longest gap of an answer that did not finish (cut off, stalled later): the
        gaps it showed before are still what the server does."""
        s = self.speeds.get(key)
        if s is not None:
            _keep(s.gaps, max_gap)

    def expected_seconds(self, key: str, tokens: int = 200) -> float | None:
        """Expected time for a typical answer, or None when never measured."""
        s = self.speeds.get(key)
        if s is None:
            return None
        return s.ttft + (tokens / s.tps if s.tps > 0 else 0.0)

    def deadlines(self, key: str, loaded: bool, ceiling_first: float, ceiling_gap: float,
                  rule: DeadlineRule | None = None, prompt_tokens: int = 0) -> Deadlines:
        """First-token and gap deadlines and the hedge delay for one request.

        ``loaded``: the model is known to be in memory (``/api/ps`` or the announcement);
        such a model is never given a cold load's time.
        """
        r = rule or DeadlineRule()
        s = self.speeds.get(key)
        prefill = prompt_tokens * r.per_prompt_token
        samples = (s.warm if loaded else s.cold) if s is not None else []
        state = "loaded" if loaded else "cold"
        if len(samples) >= r.min_samples:
            p95 = percentile(samples, 95)
            floor = r.first_floor if loaded else r.cold_floor
            first = min(ceiling_first, max(floor, p95 * r.margin + r.first_pad + prefill))
            hedge: float | None = max(r.hedge_floor, p95 * r.hedge_factor + prefill)
            why = f"{state}: p95 first token {p95:.2f} s over {len(samples)} answers"
            learned = True
        elif loaded:
            first = min(ceiling_first, r.unlearned_first + prefill)
            hedge = r.unlearned_hedge + prefill
            why, learned = f"{state}: not measured yet", False
        else:
            first, hedge = ceiling_first, None  # a cold load of unknown length: wait for it
            why, learned = f"{state}: not measured yet", False
        gaps = s.gaps if s is not None else []
        if len(gaps) >= r.min_samples:
            gap = min(ceiling_gap, max(r.gap_floor, percentile(gaps, 95) * r.margin
                                       + r.gap_pad))
        else:
            gap = min(ceiling_gap, r.unlearned_gap)
        if hedge is not None and hedge >= first:
            hedge = None  # the deadline comes first: that is a fallover, not a hedge
        return Deadlines(first, gap, hedge, learned, why)

    def to_dict(self) -> dict[str, dict[str, object]]:
        return {k: {"ttft": v.ttft, "tps": v.tps, "n": v.n,
                    "warm": [round(x, 4) for x in v.warm],
                    "cold": [round(x, 4) for x in v.cold],
                    "gaps": [round(x, 4) for x in v.gaps]}
                for k, v in self.speeds.items()}

    @classmethod
    def from_dict(cls, data: object) -> SpeedBook:
        book = cls()
        if not isinstance(data, Mapping):
            return book  # a damaged file (a list, a number) costs what was learned, no more
        for k, v in data.items():
            if isinstance(v, Mapping):
                try:
                    s = Speed(float(v["ttft"]), float(v["tps"]), int(v.get("n", 1)),
                              _samples(v.get("warm")), _samples(v.get("cold")),
                              _samples(v.get("gaps")))
                except (KeyError, TypeError, ValueError, OverflowError):
                    continue  # one bad entry must not cost the rest
                # NaN would make every comparison in the ranking false, and so the order
                # of candidates arbitrary
                if math.isfinite(s.ttft) and math.isfinite(s.tps) and s.ttft >= 0 <= s.tps:
                    book.speeds[str(k)] = s
        return book


def _keep(samples: list[float], value: float) -> None:
    if math.isfinite(value) and value >= 0:
        samples.append(value)
        del samples[:-SAMPLES]


def _samples(raw: object) -> list[float]:
    """Samples from speeds.json; anything odd in them is dropped, the rest kept."""
    if not isinstance(raw, list):
        return []
    out: list[float] = []
    for x in raw[-SAMPLES:]:
        if isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) \
                and x >= 0:
            out.append(float(x))
    return out


@dataclass
class RouteHistory:
    """The routes of the last few requests, for context stickiness."""

    entries: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=STICKY_COUNT))

    def add(self, now: float, route: str) -> None:
        self.entries.append((now, route))

    def sticky_route(self, now: float) -> str | None:
        if len(self.entries) < STICKY_COUNT:
            return None
        if any(now - t > STICKY_WINDOW for t, _ in self.entries):
            return None
        routes = {r for _, r in self.entries}
        return routes.pop() if len(routes) == 1 else None


def model_matches(pattern: str, name: str) -> bool:
    """A preference entry matches an installed model name.

    ``qwen3:4b`` matches exactly (and ``qwen3:4b-q4_K_M``); ``minicpm-v`` (no tag)
    matches any tag of it; shell wildcards work (``qwen2.5-coder:*``).
    """
    pattern = pattern.strip().lower()
    name = name.lower()
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(name, pattern)
    if name == pattern:
        return True
    if ":" not in pattern:
        return name.split(":", 1)[0] == pattern
    return name.startswith(pattern + "-")


def _is_chat_model(m: ModelInfo) -> bool:
    return not any(s in m.name.lower() for s in _NOT_CHAT)


@dataclass(frozen=True)
class _Option:
    peer: Peer
    server: ServerState
    model: ModelInfo

    @property
    def loaded(self) -> bool:
        return self.model.name in self.server.loaded


def resolve_route(c: Classification, history: RouteHistory | None, now: float,
                  forced: str | None = None) -> tuple[str, str]:
    """The route to use and why: forced, sticky, or as classified."""
    if forced:
        return forced, f"route {forced} (asked for)"
    if history is not None and c.confidence < BORDERLINE:
        sticky = history.sticky_route(now)
        # only a prompt with some evidence for the sticky route stays on it: a follow-up
        # about the code sticks, "tell me a joke" after three code prompts does not
        if sticky and sticky != c.route and _some_evidence(c, sticky):
            return sticky, (f"route {sticky}: the prompt looked {c.route} but only weakly "
                            f"(confidence {c.confidence:.2f}), and the last {STICKY_COUNT} "
                            f"requests went to {sticky}")
        if sticky and sticky == c.route:
            return c.route, (f"route {c.route} (confidence {c.confidence:.2f}; the last "
                             f"{STICKY_COUNT} requests went there too)")
    cheaper = _cheaper_route(c)
    if cheaper:
        return cheaper, (f"route {cheaper}: the prompt looked {c.route} but with confidence "
                         f"{c.confidence:.2f} only, so the cheaper route answers")
    return c.route, f"route {c.route} (confidence {c.confidence:.2f})"


def _some_evidence(c: Classification, route: str) -> bool:
    """Whether the classifier saw anything of `route` in the prompt."""
    if c.probabilities:
        return c.probabilities.get(route, 0.0) >= STICKY_EVIDENCE
    return c.scores.get(route, 0.0) > 0


def _cheaper_route(c: Classification) -> str | None:
    """The cheaper route for a low-confidence expensive one, or None to keep it.

    Only calibrated confidences (the learned model's probabilities) are used this way; an
    attached image stays on vision whatever the confidence.
    """
    if c.has_image or not c.probabilities or c.confidence >= CHEAPER_BELOW:
        return None
    cost = COST.get(c.route)
    if cost is None or cost < COST[REASONING]:
        return None
    if COST.get(c.runner_up, -1) >= cost:
        return None  # the other likely route is dearer still: this one is the cheaper
    alt = c.runner_up if c.runner_up in (QUICK, REASONING) else QUICK
    return alt if COST[alt] < cost else None


def choose(classification: Classification, peers: Sequence[Peer], config: Config,
           speeds: SpeedBook | None = None, history: RouteHistory | None = None,
           now: float = 0.0, *, route: str | None = None, model: str | None = None,
           node: str | None = None, spent_today: float | Callable[[], float] = 0.0,
           suspect: Iterable[tuple[str, str]] = (),
           demoted: Iterable[tuple[str, str, str]] = (),
           notes: list[str] | None = None) -> list[Candidate]:
    """Ordered candidates for a request; the first is the best. Never raises.

    ``spent_today`` may be a function: it is called only when a cloud server is up (so a
    lab without paying servers never reads the usage log). ``demoted``: (node_id,
    server_id, model) that missed a deadline or broke a stream lately (``core.health``):
    tried after every other choice.
    """
    speeds = speeds or SpeedBook()
    notes = notes if notes is not None else []
    route_name, why = resolve_route(classification, history, now, route)
    notes.append(why)
    has_image = classification.has_image
    suspect = set(suspect)
    options = _options(peers, config, route_name, spent_today, suspect, notes, node)
    demoted = set(demoted)
    # what the servers' own nodes announce as degraded is tried last here too
    demoted.update((p.node_id, s.id, m) for p in peers for s in p.servers for m in s.degraded)

    out: list[Candidate] = []
    seen: set[tuple[str, str, str]] = set()

    def add(opts: list[_Option], route_of: str, reason: str, fallback: bool,
            drop_image: bool = False) -> None:
        for o in opts:
            k = (o.peer.node_id, o.server.id, o.model.name)
            if k in seen:
                continue
            seen.add(k)
            where = "in memory" if o.loaded else "cold"
            out.append(Candidate(o.peer, o.server, o.model.name, route_of,
                                 f"{reason}; {where} on {o.peer.name}", fallback,
                                 drop_image and not o.model.vision))

    if model:
        matching = [o for o in options if model_matches(model, o.model.name)]
        add(_rank(matching, (model,), speeds), route_name, f"model {model} (asked for)", False,
            drop_image=has_image and not any(o.model.vision for o in matching))
        if not out:
            notes.append(f"no live server has a model matching {model!r}")
        return _suspects_last(out, suspect, demoted, notes)

    chain = _route_chain(config, route_name)
    for i, r in enumerate(chain):
        rc = config.route(r)
        allow_cloud = config.route(route_name).allow_cloud and rc.allow_cloud
        usable = [o for o in options if allow_cloud or not o.server.is_cloud]
        if r == "vision":
            seeing = [o for o in usable if o.model.vision]
            add(_rank(_preferred(seeing, rc.models), rc.models, speeds), r,
                f"{_nth_choice(r, i)}", i > 0)
            if has_image:
                others = [o for o in seeing if not any(model_matches(p, o.model.name)
                                                       for p in rc.models)]
                add(_rank(others, (), speeds), r, "a vision-capable model outside the list",
                    True)
            continue
        drop = has_image
        add(_rank(_preferred(usable, rc.models), rc.models, speeds), r,
            _nth_choice(r, i) + ("; image left out: no vision model is up" if drop else ""),
            i > 0, drop_image=drop)

    # something always answers: every other chat model that is up
    rest = [o for o in options if _is_chat_model(o.model)
            and (config.route(route_name).allow_cloud or not o.server.is_cloud)]
    rest.sort(key=lambda o: (not o.loaded, _size_key(o.model, route_name), o.peer.name))
    add(rest, route_name, "last resort: a model outside the route's list",
        True, drop_image=has_image)
    return _suspects_last(out, suspect, demoted, notes)


def _suspects_last(cands: list[Candidate], suspect: set[tuple[str, str]],
                   demoted: set[tuple[str, str, str]], notes: list[str]) -> list[Candidate]:
    # the ranking alone would put a suspect server's loaded model ahead of a healthy cold
    # one; a server that just failed a request, or a model on it that missed its deadline
    # lately, is tried after every healthy choice
    for c in cands:
        if c.health_key in demoted:
            notes.append(f"{c.label} missed a deadline or broke off an answer lately; "
                         "tried last")
    return sorted(cands, key=lambda c: ((c.peer.node_id, c.server.id) in suspect,
                                        c.health_key in demoted))


def _nth_choice(route: str, depth: int) -> str:
    return f"route {route}" if depth == 0 else f"fallback to route {route}"


def _route_chain(config: Config, start: str) -> list[str]:
    chain = [start]
    r = config.route(start).fallback
    while r and r not in chain:
        chain.append(r)
        r = config.route(r).fallback
    if "quick" not in chain and "quick" in config.routes:
        chain.append("quick")  # the cheapest route is every route's last fallback
    return chain


def _options(peers: Sequence[Peer], config: Config, route: str,
             spent_today: float | Callable[[], float], suspect: set[tuple[str, str]],
             notes: list[str], node: str | None) -> list[_Option]:
    out: list[_Option] = []
    spent: list[float] = []

    def budget_left() -> float:
        if not spent:  # read once, and only if a paying server is up
            spent.append(spent_today() if callable(spent_today) else spent_today)
        return config.budget.daily_usd - spent[0]

    for p in peers:
        if node and node not in (p.name, p.node_id):
            continue
        if not p.routable:
            if p.paused:
                notes.append(f"{p.name} is paused" + (f" ({p.pause_reason})"
                                                      if p.pause_reason else ""))
            elif p.state.value in ("down", "left", "joining"):
                notes.append(f"{p.name} is {p.state.value}")
            continue
        for s in p.servers:
            if not s.up:
                notes.append(f"{s.id} on {p.name} is down" + (f": {s.error}" if s.error else ""))
                continue
            if (p.node_id, s.id) in suspect:
                notes.append(f"{s.id} on {p.name} failed a request just now; tried last")
                continue
            if s.is_cloud:
                if not config.route(route).allow_cloud:
                    notes.append(f"{s.id}: this task is not worth a cloud call "
                                 f"(route {route} does not allow cloud)")
                    continue
                if budget_left() <= 0:
                    notes.append(f"{s.id}: today's cloud budget "
                                 f"(${config.budget.daily_usd:.2f}) is spent")
                    continue
            out.extend(_Option(p, s, m) for m in s.models)
    if node and not any(node in (p.name, p.node_id) for p in peers):
        notes.append(f"no machine named {node!r}; machines: "
                     + (", ".join(sorted(p.name for p in peers)) or "none"))
    # servers that just failed a request still count, after everything else
    for p in peers:
        if not p.routable or (node and node not in (p.name, p.node_id)):
            continue
        for s in p.servers:
            if s.up and (p.node_id, s.id) in suspect and not s.is_cloud:
                out.extend(_Option(p, s, m) for m in s.models)
    return out


def _preferred(opts: list[_Option], patterns: Sequence[str]) -> list[_Option]:
    return [o for o in opts if any(model_matches(p, o.model.name) for p in patterns)]


def _pref_index(name: str, patterns: Sequence[str]) -> int:
    for i, p in enumerate(patterns):
        if model_matches(p, name):
            return i
    return len(patterns)


def _classes(patterns: Sequence[str], opts: list[_Option]) -> list[int]:
    """Size class of each preference index: a new class where the size changes > 2x."""
    sizes: list[float] = []
    for p in patterns:
        size = ModelInfo.guess_params(p)
        if not size:
            for o in opts:
                if model_matches(p, o.model.name) and o.model.params_b:
                    size = o.model.params_b
                    break
        sizes.append(size)
    classes, cls, ref = [], 0, 0.0
    for size in sizes:
        if size and ref and (size > 2 * ref or size < ref / 2):
            cls += 1
            ref = size
        elif size and not ref:
            ref = size
        classes.append(cls)
    return classes


def _rank(opts: list[_Option], patterns: Sequence[str], speeds: SpeedBook) -> list[_Option]:
    classes = _classes(patterns, opts)

    def key(o: _Option) -> tuple[float, ...]:
        idx = _pref_index(o.model.name, patterns)
        cls = classes[idx] if idx < len(classes) else (classes[-1] + 1 if classes else 0)
        est = speeds.expected_seconds(f"{o.peer.name}/{o.server.id}/{o.model.name}")
        # the server's own queue first, then the node's (its servers share one GPU); the
        # node's count already includes the server's, so the two are not added
        return (cls, 0 if o.loaded else 1, idx, est if est is not None else math.inf,
                o.server.in_flight, o.peer.in_flight, 0 if o.peer.is_self else 1)

    return sorted(opts, key=key)


def _size_key(m: ModelInfo, route: str) -> float:
    # the last resort for quick wants the smallest model; for other routes the largest
    size = m.params_b or (m.size / 1e9 if m.size else 50.0)
    return size if route == "quick" else -size
