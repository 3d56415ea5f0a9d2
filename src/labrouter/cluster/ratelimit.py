"""Per-source token buckets for the UDP port, checked before any crypto.

Owns ``TokenBuckets``: a bounded number of buckets (least recently used evicted), so a
flood from spoofed addresses costs memory only up to ``max_sources``. Pure: the time is
given. Must not import sockets, asyncio or app/.
"""

from __future__ import annotations

from collections import OrderedDict

RATE = 50.0  # packets per second per source address, before crypto
BURST = 100.0


class TokenBuckets:
    """Per-source token buckets (checked before any crypto), bounded in number."""

    def __init__(self, rate: float = RATE, burst: float = BURST, max_sources: int = 1024) -> None:
        self.rate, self.burst, self.max_sources = rate, burst, max_sources
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, source: str, now: float) -> bool:
        tokens, at = self.buckets.get(source, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        ok = tokens >= 1.0
        self.buckets[source] = (tokens - 1.0 if ok else tokens, now)
        self.buckets.move_to_end(source)
        while len(self.buckets) > self.max_sources:
            self.buckets.popitem(last=False)
        return ok
