"""The deadlines of one request to an inference server, for both HTTP clients.

Owns ``Deadlines`` (used by ``backends/_http.py`` over httpx and ``relay/client.py`` over
aiohttp), ``Expired`` and ``timeout_error``, the one wording of a timeout. What the four
``[timeouts]`` mean, for every server, direct or through a peer's relay:

- ``connect``: the TCP (and TLS) handshake; the HTTP library enforces it.
- ``first_token``: from the request's start until its first token.
- ``gap``: after the first token, each wait for the server, from the start of that wait
  (the caller's own time between two chunks is not the server's silence).
- ``total``: from the request's start until its end, whatever the time went to: the
  server's work, the caller's own time between chunks, the network. It is what a user
  waits, so it is counted like a user would count it.

Standard library and ``core`` only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from ..core.config import TimeoutConfig
from ..core.errors import BackendTimeout

T = TypeVar("T")


class Expired(Exception):
    """A deadline passed; ``which`` names the timeout ("first_token", "gap" or "total")."""

    def __init__(self, which: str) -> None:
        super().__init__(which)
        self.which = which


@dataclass
class Deadlines:
    """The deadlines of one request, from its start, on ``clock`` (the loop's time)."""

    timeouts: TimeoutConfig
    clock: Callable[[], float]
    start: float
    token_seen: bool = False  # after the first token, the gap deadline applies

    @classmethod
    def begin(cls, timeouts: TimeoutConfig,
              clock: Callable[[], float] | None = None) -> Deadlines:
        clock = clock or asyncio.get_running_loop().time
        return cls(timeouts, clock, clock())

    @property
    def total_at(self) -> float:
        return self.start + self.timeouts.total

    def got_token(self) -> None:
        """The first token arrived: from now on the gap timeout applies."""
        self.token_seen = True

    def next(self, which: str | None = None) -> tuple[float, str]:
        """When the next wait must end and which timeout that is: ``which`` ("first_token"
        or "gap"), by default the one that applies now; "total" when it comes first."""
        which = which or ("gap" if self.token_seen else "first_token")
        at = self.clock() + self.timeouts.gap if which == "gap" \
            else self.start + self.timeouts.first_token
        return (self.total_at, "total") if self.total_at <= at else (at, which)

    async def wait(self, aw: Awaitable[T], which: str | None = None) -> T:
        """``aw``'s result, or Expired when the next deadline passes first (also when it
        has passed already: data that is buffered does not outrun ``total``)."""
        at, kind = self.next(which)
        left = at - self.clock()
        if left <= 0:
            if asyncio.iscoroutine(aw):
                aw.close()  # never awaited: say so, without a warning
            raise Expired(kind)
        try:
            async with asyncio.timeout(left):
                return await aw
        except TimeoutError:
            raise Expired(kind) from None


def timeout_error(timeouts: TimeoutConfig, which: str, where: str, what: str) -> BackendTimeout:
    """The error for an expired timeout of ``where`` (a server's or a peer's name)."""
    seconds = {"connect": timeouts.connect, "first_token": timeouts.first_token,
               "gap": timeouts.gap, "total": timeouts.total}[which]
    text = {
        "connect": f"could not connect to {where} within {seconds:g} s",
        "first_token": f"{where} sent no answer to {what} within {seconds:g} s",
        "gap": f"{where} went silent for {seconds:g} s in the middle of {what}",
        "total": f"{what} on {where} took longer than {seconds:g} s in all",
    }[which]
    return BackendTimeout(
        f"{text} (timeouts.{which})",
        hint=f"Check that {where} is up and not overloaded, or raise timeouts.{which} in "
             "the config.")
