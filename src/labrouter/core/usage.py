"""Usage records and their statistics.

Owns ``UsageRecord`` (one request: route, node, model, tokens, timings, fallbacks,
outcome), its JSON-line form, a tolerant line parser (a crash may leave one partial last
line, which is skipped), and ``summarise()`` for `labrouter stats`. Reading and writing
files is ``app/usagelog.py``'s job. Standard library only.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
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
        hand-edited or foreign line), so that one bad line cannot break the statistics."""
        known = set(cls.__dataclass_fields__)
        kwargs = {k: v for k, v in d.items() if k in known}
        for k, v in kwargs.items():
            if k in _TEXT and not isinstance(v, str):
                raise ValueError(f"{k}: expected a string")
            if k in _COUNTS and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
                raise ValueError(f"{k}: expected a count")
            if k in _FIGURES and (isinstance(v, bool) or not isinstance(v, (int, float))
                                  or not math.isfinite(v)):
                raise ValueError(f"{k}: expected a number")
            if k in _FLAGS and not isinstance(v, bool):
                raise ValueError(f"{k}: expected true or false")
        fallbacks = kwargs.get("fallbacks") or ()
        if not isinstance(fallbacks, (list, tuple)) or not all(
                isinstance(f, dict) for f in fallbacks):
            raise ValueError("fallbacks: expected a list of objects")
        kwargs["fallbacks"] = tuple(fallbacks)
        if kwargs.get("prompt") is not None and not isinstance(kwargs["prompt"], str):
            raise ValueError("prompt: expected a string")
        return cls(**kwargs)


_TEXT = ("route", "node", "server", "model", "outcome", "source", "classified_route",
         "finish_reason", "served_for")
_FLAGS = ("hedged", "continued")
_COUNTS = ("prompt_tokens", "completion_tokens")
_FIGURES = ("ts", "ttft_ms", "duration_ms", "confidence", "cost_usd")


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


@dataclass
class Group:
    requests: int = 0
    tokens: int = 0
    share: float = 0.0  # of all requests
    durations: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.durations) if self.durations else 0.0

    @property
    def median_ttft_ms(self) -> float:
        return statistics.median(self.ttfts) if self.ttfts else 0.0


@dataclass
class Summary:
    requests: int = 0
    answered: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    fallovers: int = 0
    by_route: dict[str, Group] = field(default_factory=dict)
    by_model: dict[str, Group] = field(default_factory=dict)
    by_node: dict[str, Group] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        def groups(g: dict[str, Group]) -> dict[str, Any]:
            return {k: {"requests": v.requests, "tokens": v.tokens, "share": round(v.share, 4),
                        "median_ms": round(v.median_ms, 1),
                        "median_ttft_ms": round(v.median_ttft_ms, 1)}
                    for k, v in g.items()}
        return {"requests": self.requests, "answered": self.answered, "tokens": self.tokens,
                "cost_usd": round(self.cost_usd, 4), "fallovers": self.fallovers,
                "by_route": groups(self.by_route), "by_model": groups(self.by_model),
                "by_node": groups(self.by_node)}


def summarise(records: Iterable[UsageRecord]) -> Summary:
    s = Summary()
    for r in records:
        s.requests += 1
        tokens = r.prompt_tokens + r.completion_tokens
        s.tokens += tokens
        s.cost_usd += r.cost_usd
        if r.fallbacks:
            s.fallovers += 1
        answered = r.outcome not in ("failed", "no_candidate", "cancelled", "error")
        s.answered += answered
        keys = [(s.by_route, r.route or "?")]
        # a request cancelled mid-answer still used its model's machine; one cancelled
        # before any server was asked did not
        if answered or r.model:
            keys += [(s.by_model, r.model or "?"), (s.by_node, r.node or "?")]
        for table, key in keys:
            g = table.setdefault(key, Group())
            g.requests += 1
            g.tokens += tokens
            if answered:
                g.durations.append(r.duration_ms)
                g.ttfts.append(r.ttft_ms)
    for table in (s.by_route, s.by_model, s.by_node):
        total = sum(g.requests for g in table.values()) or 1
        for g in table.values():
            g.share = g.requests / total
        # biggest first: the table reads as "where my compute goes"
        ordered = sorted(table.items(), key=lambda kv: (-kv[1].requests, kv[0]))
        table.clear()
        table.update(ordered)
    return s
