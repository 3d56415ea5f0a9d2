"""Faults remembered: which server+model pairs failed lately, and for how long to avoid them.

Owns ``FaultBook``. A pair that missed its deadline, dropped or stalled a stream is
*demoted* at once (passive health: the next request tries it after every healthy
choice), with a back-off that grows with each fault in a row (30 s, 60 s, 120 s, ... up to
``max_backoff``); one normal answer (or a passing probe with the real model) forgives it.
While demoted, a probe is due every ``probe_every`` seconds, so the pair comes back as
soon as it answers again, without waiting for a user's request to find out.

Keys are ``(node_id, server_id, model)``. Pure, standard library only; ``now`` is passed
in by the caller (tests use an injected clock).
"""

from __future__ import annotations

from dataclasses import dataclass, field

Key = tuple[str, str, str]  # (node_id, server_id, model)


@dataclass
class Fault:
    count: int  # faults in a row
    until: float  # demoted until then
    last: float  # when the last fault happened
    reason: str
    next_probe: float


@dataclass
class FaultBook:
    base_backoff: float = 30.0
    max_backoff: float = 1800.0
    probe_every: float = 15.0
    faults: dict[Key, Fault] = field(default_factory=dict)

    def fault(self, key: Key, now: float, reason: str) -> float:
        """Remember a fault; returns the seconds the pair is demoted for."""
        old = self.faults.get(key)
        count = old.count + 1 if old is not None else 1
        backoff = min(self.max_backoff, self.base_backoff * 2.0 ** (count - 1))
        self.faults[key] = Fault(count, now + backoff, now, reason, now + self.probe_every)
        return backoff

    def ok(self, key: Key) -> bool:
        """A normal answer: forgiven. Returns whether the pair had been demoted."""
        return self.faults.pop(key, None) is not None

    def demoted(self, now: float) -> set[Key]:
        """The pairs to try only after every healthy choice."""
        return {k for k, f in self.faults.items() if f.until > now}

    def servers_demoted(self, now: float) -> set[tuple[str, str]]:
        return {(k[0], k[1]) for k in self.demoted(now)}

    def due_probes(self, now: float) -> list[Key]:
        """Demoted pairs whose next probe is due; marks them probed (the caller probes)."""
        due = []
        for k, f in self.faults.items():
            if f.until > now and f.next_probe <= now:
                f.next_probe = now + self.probe_every
                due.append(k)
        return due

    def expire(self, now: float) -> None:
        """Forget the back-off of pairs whose demotion ended long ago (a day of quiet)."""
        for k in [k for k, f in self.faults.items() if now - f.last > 86400]:
            del self.faults[k]
