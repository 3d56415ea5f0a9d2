"""Which of the daemon's services run, and bringing back the ones that could not start.

Owns ``ServiceState`` (one service: up, retrying, failed or off, with the address or the
reason) and ``Supervisor``, which starts one service and, when it cannot open its port
(another program holds it, the address is not up yet), tries again with backoff until it
can. The daemon keeps one supervisor per service (gossip, relay, front door; the control
channel is the daemon itself) and shows their states in `labrouter status`, `nodes`,
`doctor`, the tray and the installer's last line, so a dead service is never reported as
running.

Time is injected (``sleep``), so the backoff is tested without waiting. Must not import
desktop packages.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from ..core.errors import ConfigError, DaemonError, LabrouterError

log = logging.getLogger(__name__)

UP, RETRYING, FAILED, OFF, STARTING = "up", "retrying", "failed", "off", "starting"
# seconds between attempts; the last one repeats
BACKOFF = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
# OS errors that pass by themselves: the port is freed, the address comes up
_TRANSIENT = {errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.ENETDOWN, errno.ENETUNREACH}


@dataclass(frozen=True)
class ServiceState:
    name: str  # gossip, relay, front door
    state: str  # up | retrying | failed | off | starting
    detail: str = ""  # up: where it listens; otherwise why not
    since: float = 0.0  # wall clock of the last change
    attempts: int = 0  # failed attempts since the last start
    retry_in: float = 0.0  # retrying: seconds until the next attempt

    @property
    def ok(self) -> bool:
        """Up, or off because the config turns it off."""
        return self.state in (UP, OFF)

    def text(self) -> str:
        """``front door RETRYING (Address already in use; attempt 3 in 4 s)``."""
        return f"{self.name} {self.summary()}"

    def summary(self) -> str:
        """The state without the name: ``up (127.0.0.1:47813)``."""
        if self.state == RETRYING:
            return (f"RETRYING ({self.detail}; attempt {self.attempts + 1} in "
                    f"{self.retry_in:.0f} s)")
        if self.state == FAILED:
            return f"FAILED ({self.detail})"
        return self.state + (f" ({self.detail})" if self.detail else "")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ServiceState:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def retryable(exc: BaseException) -> bool:
    """A port in use or an address not up yet: worth trying again. A bad config is not."""
    if isinstance(exc, ConfigError):
        return False
    if isinstance(exc, OSError):
        return exc.errno in _TRANSIENT
    # the services wrap the OSError of a busy port in a DaemonError with a hint
    return isinstance(exc, DaemonError)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, LabrouterError):
        return exc.message
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc) or type(exc).__name__


class Supervisor:
    """Starts one service; keeps trying with backoff while the failure is transient.

    ``start`` opens the service and returns where it listens ("127.0.0.1:47813"); it
    raises when it cannot. Used on the daemon's event loop only.
    """

    def __init__(self, name: str, start: Callable[[], Awaitable[str]],
                 wall: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 backoff: Sequence[float] = BACKOFF,
                 on_change: Callable[[ServiceState], None] | None = None) -> None:
        self.name = name
        self._start = start
        self._wall = wall
        self._sleep = sleep
        self._backoff = tuple(backoff)
        self._on_change = on_change
        self.state = ServiceState(name, STARTING, since=wall())
        self._task: asyncio.Task[None] | None = None
        self.started = False  # whether the service is open now (it needs a stop)

    def off(self, why: str) -> None:
        """The config turns this service off (or it cannot apply): not a failure."""
        self._set(ServiceState(self.name, OFF, why, self._wall()))

    async def start(self) -> ServiceState:
        """The first attempt, awaited; on a transient failure the retries go on in a task."""
        if await self._attempt(0):
            return self.state
        if self.state.state == RETRYING:
            self._task = asyncio.create_task(self._retry(), name=f"retry {self.name}")
        return self.state

    async def _attempt(self, failures: int) -> bool:
        try:
            where = await self._start()
        except (LabrouterError, OSError) as exc:
            reason = _reason(exc)
            hint = getattr(exc, "hint", "")
            if retryable(exc):
                delay = self._backoff[min(failures, len(self._backoff) - 1)]
                if failures == 0:
                    log.error("%s not started: %s%s; trying again every %g-%g s until it "
                              "works", self.name, reason, f" ({hint})" if hint else "",
                              self._backoff[0], self._backoff[-1])
                self._set(ServiceState(self.name, RETRYING, reason, self._wall(),
                                       failures + 1, delay))
            else:
                log.error("%s not started: %s%s", self.name, reason,
                          f" ({hint})" if hint else "")
                self._set(ServiceState(self.name, FAILED, reason, self._wall(), failures + 1))
            return False
        self.started = True
        if failures:
            log.info("%s is up after %d failed attempt(s): %s", self.name, failures, where)
        self._set(ServiceState(self.name, UP, where, self._wall()))
        return True

    async def _retry(self) -> None:
        failures = 1
        while self.state.state == RETRYING:
            await self._sleep(self.state.retry_in)
            if await self._attempt(failures):
                return
            failures += 1

    async def stop(self) -> None:
        """Stops the retries (the caller stops the service itself when ``started``)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    def _set(self, state: ServiceState) -> None:
        self.state = state
        if self._on_change is not None:
            try:
                self._on_change(state)
            except Exception:  # noqa: BLE001 - a display callback must not stop a service
                log.exception("service state callback failed")
