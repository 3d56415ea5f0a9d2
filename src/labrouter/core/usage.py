"""Usage records and their statistics.

Owns ``UsageRecord`` (one request: route, node, model, tokens, timings, fallbacks,
outcome, the classified route, the peer served for), its JSON-line form, a tolerant line
parser (a crash may leave one partial last line, which is skipped), and ``summarise()``:
the figures `labrouter stats` and the usage page show (shares, where each classified
route was answered, fallovers and their reasons, work done for peers, per-day counts,
time to first token). Reading and writing files is ``app/usagelog.py``'s job; drawing the
figures is the stats command's and ``app/usagepage.py``'s. Standard library only.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from array import array
from collections.abc import Iterable
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class UsageRecord:
    ts: float  # wall-clock seconds since the epoch
    route: str
    node: str
    server: str
    model: str
    # ok | fallback | restarted | escalated | failed | no_candidate | cancelled (Ctrl+C, a
    # client that hung up, stdout closed) | error (a bug cut the request short)
    outcome: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_ms: float = 0.0
    duration_ms: float = 0.0
    fallbacks: tuple[dict[str, str], ...] = ()  # {"model", "node", "reason"} per skipped try
    source: str = "cli"  # cli | hotkey | tray | api:<path>
    confidence: float = 0.0
    cost_usd: float = 0.0
    prompt: str | None = None  # only when [usage] log_prompts is on
    # the route the classifier chose; ``route`` is the one that served (they differ when
    # the lab lacked the chosen route's model); "" in records written before this field
    classified_route: str = ""
    # as the serving backend reported it: stop | length | cancelled | error | ""
    finish_reason: str = ""
    # the peer's node name when this machine served the request for a peer over the relay
    served_for: str = ""
    hedged: bool = False  # a second candidate was started in parallel (tail latency)
    continued: bool = False  # a stalled answer was continued on another model

    def to_json(self) -> str:
        d = asdict(self)
        d["fallbacks"] = list(self.fallbacks)
        if self.prompt is None:
            d.pop("prompt")
        return json.dumps(d, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UsageRecord:
        """A record from its JSON object; ValueError when a field has the wrong type (a
        hand-edited or foreign line), so that one bad line cannot break the statistics.

        Written for speed (`stats` reads a year of logs): one table lookup per field, and
        the checks are exact type tests, which is right for what ``json.loads`` returns.
        """
        kwargs: dict[str, Any] = {}
        for k, v in d.items():
            check = _CHECKS.get(k)
            if check is None:
                continue  # a field of a newer version, or a foreign one
            if not check(v):
                raise ValueError(f"{k}: expected {_EXPECTED[k]}")
            kwargs[k] = v
        fallbacks = kwargs.get("fallbacks")
        if fallbacks:
            kwargs["fallbacks"] = tuple(fallbacks)
        elif fallbacks is not None:
            kwargs["fallbacks"] = ()
        if not kwargs.keys() >= _REQUIRED:
            raise ValueError("missing " + ", ".join(sorted(_REQUIRED - kwargs.keys())))
        # every field was checked above and every default is immutable, so the frozen
        # __init__ (one object.__setattr__ per field: half the time of reading a year of
        # logs) is skipped
        record = object.__new__(cls)
        record.__dict__.update(_DEFAULTS)
        record.__dict__.update(kwargs)
        return record


def _text(v: Any) -> bool:
    return type(v) is str


def _count(v: Any) -> bool:
    return type(v) is int and v >= 0


def _figure(v: Any) -> bool:
    # bool is not int here (type() is exact): `true` is no number of milliseconds
    return type(v) is int or (type(v) is float and math.isfinite(v))


def _flag(v: Any) -> bool:
    return type(v) is bool


def _fallbacks(v: Any) -> bool:
    return type(v) in (list, tuple) and all(type(f) is dict for f in v)


def _prompt(v: Any) -> bool:
    return v is None or type(v) is str


_TEXT = ("route", "node", "server", "model", "outcome", "source", "classified_route",
         "finish_reason", "served_for")
_FLAGS = ("hedged", "continued")
_COUNTS = ("prompt_tokens", "completion_tokens")
_FIGURES = ("ts", "ttft_ms", "duration_ms", "confidence", "cost_usd")
_REQUIRED = frozenset(f.name for f in fields(UsageRecord) if f.default is MISSING)
_DEFAULTS = {f.name: f.default for f in fields(UsageRecord) if f.default is not MISSING}
_CHECKS: dict[str, Any] = {
    **dict.fromkeys(_TEXT, _text), **dict.fromkeys(_FLAGS, _flag),
    **dict.fromkeys(_COUNTS, _count), **dict.fromkeys(_FIGURES, _figure),
    "fallbacks": _fallbacks, "prompt": _prompt}
_EXPECTED = {
    **dict.fromkeys(_TEXT, "a string"), **dict.fromkeys(_FLAGS, "true or false"),
    **dict.fromkeys(_COUNTS, "a count"), **dict.fromkeys(_FIGURES, "a number"),
    "fallbacks": "a list of objects", "prompt": "a string"}


def parse_lines(lines: Iterable[str]) -> tuple[list[UsageRecord], int]:
    """Records from JSON lines, and how many lines were skipped as unreadable."""
    out: list[UsageRecord] = []
    bad = 0
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            d = json.loads(line)
            if not isinstance(d, dict):
                raise ValueError
            out.append(UsageRecord.from_dict(d))
        except (ValueError, TypeError):
            bad += 1
    return out, bad


#: outcomes of a request that got no answer
UNANSWERED = frozenset({"failed", "no_candidate", "cancelled", "error"})


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile (``q`` in 0..100) of ``values``; 0.0 when empty.

    Nearest rank, not interpolation: "p95 = 2.1 s" is then a time a request really took.
    """
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass
class Group:
    requests: int = 0
    tokens: int = 0
    share: float = 0.0  # of all requests
    durations: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    busy_ms: float = 0.0  # time a machine spent on these requests, cut-off ones included
    cost_usd: float = 0.0
    # work this machine did for peers over the relay (by_node only)
    peer_requests: int = 0
    peer_tokens: int = 0
    peer_busy_ms: float = 0.0

    @property
    def median_ms(self) -> float:
        return statistics.median(self.durations) if self.durations else 0.0

    @property
    def median_ttft_ms(self) -> float:
        return statistics.median(self.ttfts) if self.ttfts else 0.0

    @property
    def p95_ttft_ms(self) -> float:
        return percentile(self.ttfts, 95)

    _STATE = ("requests", "tokens", "busy_ms", "cost_usd", "peer_requests", "peer_tokens",
              "peer_busy_ms", "durations", "ttfts")

    def merge(self, other: Group) -> None:
        self.requests += other.requests
        self.tokens += other.tokens
        self.busy_ms += other.busy_ms
        self.cost_usd += other.cost_usd
        self.peer_requests += other.peer_requests
        self.peer_tokens += other.peer_tokens
        self.peer_busy_ms += other.peer_busy_ms
        self.durations.extend(other.durations)
        self.ttfts.extend(other.ttfts)

    def state(self) -> list[Any]:
        return [getattr(self, k) for k in self._STATE]

    @classmethod
    def from_state(cls, state: list[Any]) -> Group:
        (requests, tokens, busy, cost, peer_requests, peer_tokens, peer_busy, durations,
         ttfts) = state
        return cls(requests=int(requests), tokens=int(tokens), busy_ms=float(busy),
                   cost_usd=float(cost), peer_requests=int(peer_requests),
                   peer_tokens=int(peer_tokens), peer_busy_ms=float(peer_busy),
                   # array() checks and converts in C: a year of cached days is ~600k figures
                   durations=list(array("d", durations)), ttfts=list(array("d", ttfts)))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "requests": self.requests, "tokens": self.tokens, "share": round(self.share, 4),
            "median_ms": round(self.median_ms, 1), "median_ttft_ms": round(self.median_ttft_ms, 1),
            "p95_ttft_ms": round(self.p95_ttft_ms, 1), "busy_ms": round(self.busy_ms, 1)}
        if self.cost_usd:
            d["cost_usd"] = round(self.cost_usd, 6)
        if self.peer_requests:
            d.update(peer_requests=self.peer_requests, peer_tokens=self.peer_tokens,
                     peer_busy_ms=round(self.peer_busy_ms, 1))
        return d


@dataclass
class RouteFlow:
    """The requests the classifier put on one route, and where they were answered."""

    requests: int = 0
    #: (serving route, model) -> requests answered there
    answered: dict[tuple[str, str], int] = field(default_factory=dict)
    #: why requests of this route were answered on another route -> how many
    reasons: dict[str, int] = field(default_factory=dict)
    unanswered: int = 0

    def merge(self, other: RouteFlow) -> None:
        self.requests += other.requests
        self.unanswered += other.unanswered
        for k, n in other.answered.items():
            self.answered[k] = self.answered.get(k, 0) + n
        for why, n in other.reasons.items():
            self.reasons[why] = self.reasons.get(why, 0) + n

    def state(self) -> dict[str, Any]:
        return {"requests": self.requests, "unanswered": self.unanswered,
                "answered": [[r, m, n] for (r, m), n in self.answered.items()],
                "reasons": self.reasons}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> RouteFlow:
        return cls(requests=int(d["requests"]), unanswered=int(d["unanswered"]),
                   answered={(str(r), str(m)): int(n) for r, m, n in d["answered"]},
                   reasons={str(k): int(v) for k, v in d["reasons"].items()})

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "unanswered": self.unanswered,
                "answered": [{"route": r, "model": m, "requests": n}
                             for (r, m), n in self.answered.items()],
                "reasons": dict(self.reasons)}


@dataclass
class Summary:
    requests: int = 0  # this machine's own requests (work for peers is counted apart)
    answered: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    fallovers: int = 0
    by_route: dict[str, Group] = field(default_factory=dict)  # by the route that served
    by_model: dict[str, Group] = field(default_factory=dict)
    by_node: dict[str, Group] = field(default_factory=dict)
    #: by the route the classifier chose: how many, and where they were answered
    flows: dict[str, RouteFlow] = field(default_factory=dict)
    #: why requests fell over (a failed try, or a route whose model was not up) -> count
    fallover_reasons: dict[str, int] = field(default_factory=dict)
    #: work this machine did for peers over the relay, by the peer's name
    served_for: dict[str, Group] = field(default_factory=dict)
    #: "YYYY-MM-DD" (local time) -> serving route -> own requests
    days: dict[str, dict[str, int]] = field(default_factory=dict)
    day_cost: dict[str, float] = field(default_factory=dict)

    _COUNTS = ("requests", "answered", "tokens", "cost_usd", "fallovers")
    _GROUPS = ("by_route", "by_model", "by_node", "served_for")

    def merge(self, other: Summary) -> None:
        """Add another tally (of other days) to this one."""
        for k in self._COUNTS:
            setattr(self, k, getattr(self, k) + getattr(other, k))
        for k in self._GROUPS:
            mine: dict[str, Group] = getattr(self, k)
            for key, g in getattr(other, k).items():
                mine.setdefault(key, Group()).merge(g)
        for key, flow in other.flows.items():
            self.flows.setdefault(key, RouteFlow()).merge(flow)
        for why, n in other.fallover_reasons.items():
            self.fallover_reasons[why] = self.fallover_reasons.get(why, 0) + n
        for day, routes in other.days.items():
            mine_day = self.days.setdefault(day, {})
            for route, n in routes.items():
                mine_day[route] = mine_day.get(route, 0) + n
        for day, usd in other.day_cost.items():
            self.day_cost[day] = self.day_cost.get(day, 0.0) + usd

    def state(self) -> dict[str, Any]:
        """A tally as JSON-able data (a day's tally is cached in this form)."""
        d: dict[str, Any] = {k: getattr(self, k) for k in self._COUNTS}
        for k in self._GROUPS:
            d[k] = {key: g.state() for key, g in getattr(self, k).items()}
        d["flows"] = {k: f.state() for k, f in self.flows.items()}
        d.update(fallover_reasons=self.fallover_reasons, days=self.days,
                 day_cost=self.day_cost)
        return d

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> Summary:
        """The tally of ``state()``; ValueError, KeyError or TypeError when it is damaged."""
        s = cls(requests=int(d["requests"]), answered=int(d["answered"]),
                tokens=int(d["tokens"]), cost_usd=float(d["cost_usd"]),
                fallovers=int(d["fallovers"]))
        for k in cls._GROUPS:
            setattr(s, k, {str(key): Group.from_state(g) for key, g in d[k].items()})
        s.flows = {str(k): RouteFlow.from_state(f) for k, f in d["flows"].items()}
        s.fallover_reasons = {str(k): int(v) for k, v in d["fallover_reasons"].items()}
        s.days = {str(day): {str(r): int(n) for r, n in v.items()} for day, v in d["days"].items()}
        s.day_cost = {str(k): float(v) for k, v in d["day_cost"].items()}
        return s

    @property
    def served_for_requests(self) -> int:
        return sum(g.requests for g in self.served_for.values())

    def crossings(self) -> list[tuple[str, str, int, str]]:
        """(classified route, serving route, requests, main reason) for every route whose
        requests were answered on another route, most first: the lines that say "code: 9
        answered by the quick model (no code model was up)"."""
        out = []
        for route, flow in self.flows.items():
            served: dict[str, int] = {}
            for (r, _model), n in flow.answered.items():
                if r != route:
                    served[r] = served.get(r, 0) + n
            reason = max(flow.reasons.items(), key=lambda kv: (kv[1], kv[0]))[0] \
                if flow.reasons else ""
            for r, n in served.items():
                out.append((route, r, n, reason))
        out.sort(key=lambda x: (-x[2], x[0], x[1]))
        return out

    def to_dict(self) -> dict[str, Any]:
        def groups(g: dict[str, Group]) -> dict[str, Any]:
            return {k: v.to_dict() for k, v in g.items()}
        return {"requests": self.requests, "answered": self.answered, "tokens": self.tokens,
                "cost_usd": round(self.cost_usd, 4), "fallovers": self.fallovers,
                "by_route": groups(self.by_route), "by_model": groups(self.by_model),
                "by_node": groups(self.by_node),
                "classified": {k: v.to_dict() for k, v in self.flows.items()},
                "fallover_reasons": dict(self.fallover_reasons),
                "served_for_others": {"requests": self.served_for_requests,
                                      "by_peer": groups(self.served_for)},
                "days": {d: dict(v) for d, v in self.days.items()},
                "day_cost_usd": {d: round(v, 6) for d, v in self.day_cost.items()}}


def reason_kind(reason: str) -> str:
    """A short, countable form of a fallover reason ("qwen3:8b on gpu: gpu (relay): cannot
    connect (...)" -> "could not connect"), so that reasons add up across machines."""
    low = reason.lower()
    for needle, kind in _REASON_KINDS:
        if needle in low:
            return kind
    tail = reason.rsplit(": ", 1)[-1].split(" (", 1)[0].strip()
    return (tail[:57] + "...") if len(tail) > 60 else (tail or "unknown")


_REASON_KINDS = (
    ("mid-answer", "stopped mid-answer"), ("weak answer", "weak answer, escalated"),
    ("escalation to", "escalation failed"), ("no answer in time", "timed out"),
    ("timed out", "timed out"), ("timeout", "timed out"), ("cannot connect", "could not connect"),
    ("unreachable", "could not connect"), ("connection refused", "could not connect"),
    ("paused", "machine paused"), ("busy", "model busy"), ("not found", "model not found"),
    ("budget", "over the cloud budget"), ("key proof", "cluster keys differ"),
)


def day_of(ts: float) -> str:
    """The local calendar day of a timestamp, as the usage files are named."""
    return time.strftime("%Y-%m-%d", time.localtime(ts))


def summarise(records: Iterable[UsageRecord]) -> Summary:
    """The figures of ``records``: ``tally`` then ``finish``."""
    return finish(tally(records))


def tally(records: Iterable[UsageRecord], s: Summary | None = None) -> Summary:
    """Add ``records`` to ``s`` (a new Summary when None) without ordering or shares, so
    that tallies of separate days can be kept, merged and finished later."""
    s = Summary() if s is None else s
    day_cache: dict[int, str] = {}
    for r in records:
        tokens = r.prompt_tokens + r.completion_tokens
        answered = r.outcome not in UNANSWERED
        if r.served_for:
            # a peer's request served here over the relay: this machine's work, not one of
            # its user's requests
            g = s.served_for.setdefault(r.served_for, Group())
            g.requests += 1
            g.tokens += tokens
            g.busy_ms += r.duration_ms
            if answered:
                g.durations.append(r.duration_ms)
                g.ttfts.append(r.ttft_ms)
            n = s.by_node.setdefault(r.node or "?", Group())
            n.peer_requests += 1
            n.peer_tokens += tokens
            n.peer_busy_ms += r.duration_ms
            continue
        s.requests += 1
        s.tokens += tokens
        s.cost_usd += r.cost_usd
        s.answered += answered
        route = r.route or "?"
        # records from before the field: the classified route is taken to be the served one
        classified = r.classified_route or route
        crossed = answered and classified != route
        if crossed or r.fallbacks or r.outcome == "fallback":
            s.fallovers += 1
            reasons = [reason_kind(str(f.get("reason", ""))) for f in r.fallbacks]
            if crossed and not r.fallbacks:
                reasons.append(f"no {classified} model was up")
            if not reasons:  # an older record: "fallback" with no tries listed
                reasons.append("a later choice answered")
            for why in reasons:
                s.fallover_reasons[why] = s.fallover_reasons.get(why, 0) + 1
        flow = s.flows.setdefault(classified, RouteFlow())
        flow.requests += 1
        if answered:
            where = (route, r.model or "?")
            flow.answered[where] = flow.answered.get(where, 0) + 1
            if crossed:
                # the last try that failed says why the route was left
                why = (reason_kind(str(r.fallbacks[-1].get("reason", ""))) if r.fallbacks
                       else f"no {classified} model was up")
                flow.reasons[why] = flow.reasons.get(why, 0) + 1
        else:
            flow.unanswered += 1
        hour = int(r.ts // 3600)  # days change on the hour in every time zone
        day = day_cache.get(hour)
        if day is None:
            day = day_cache[hour] = day_of(r.ts)
        per_day = s.days.setdefault(day, {})
        per_day[route] = per_day.get(route, 0) + 1
        if r.cost_usd:
            s.day_cost[day] = s.day_cost.get(day, 0.0) + r.cost_usd
        keys: list[tuple[dict[str, Group], str]] = [(s.by_route, route)]
        # a request cancelled mid-answer still used its model's machine; one cancelled
        # before any server was asked did not
        if answered or r.model:
            keys += [(s.by_model, r.model or "?"), (s.by_node, r.node or "?")]
        for table, key in keys:
            g = table.setdefault(key, Group())
            g.requests += 1
            g.tokens += tokens
            g.busy_ms += r.duration_ms
            g.cost_usd += r.cost_usd
            if answered:
                g.durations.append(r.duration_ms)
                g.ttfts.append(r.ttft_ms)
    return s


def finish(s: Summary) -> Summary:
    """Shares and order (biggest first) of a tally; returns ``s``."""
    for table in (s.by_route, s.by_model, s.by_node, s.served_for):
        total = sum(g.requests for g in table.values()) or 1
        for g in table.values():
            g.share = g.requests / total
        # biggest first: the table reads as "where my compute goes"
        ordered = sorted(table.items(), key=lambda kv: (-kv[1].requests - kv[1].peer_requests,
                                                         kv[0]))
        table.clear()
        table.update(ordered)
    flows = sorted(s.flows.items(), key=lambda kv: (-kv[1].requests, kv[0]))
    s.flows = dict(flows)
    for flow in s.flows.values():
        flow.answered = dict(sorted(flow.answered.items(), key=lambda kv: (-kv[1], kv[0])))
        flow.reasons = dict(sorted(flow.reasons.items(), key=lambda kv: (-kv[1], kv[0])))
    s.fallover_reasons = dict(sorted(s.fallover_reasons.items(), key=lambda kv: (-kv[1], kv[0])))
    s.days = dict(sorted(s.days.items()))
    return s
