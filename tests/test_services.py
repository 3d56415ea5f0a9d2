"""The daemon's services: up, retrying with backoff, failed, off (issue 12, item 3)."""

from __future__ import annotations

import asyncio
import errno

from labrouter.app.services import FAILED, OFF, RETRYING, UP, ServiceState, Supervisor, retryable
from labrouter.core.errors import ConfigError, DaemonError


class FakeSleep:
    """Records the delays; each call lets the test decide when the wait is over."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


async def test_a_busy_port_is_retried_with_backoff_until_it_is_free() -> None:
    busy = 3
    states: list[ServiceState] = []

    async def start() -> str:
        nonlocal busy
        if busy:
            busy -= 1
            raise DaemonError("cannot open the API port 127.0.0.1:47813/tcp: Address in use")
        return "127.0.0.1:47813"

    sleep = FakeSleep()
    sup = Supervisor("front door", start, wall=lambda: 5.0, sleep=sleep,
                     backoff=(1, 2, 4), on_change=states.append)
    first = await sup.start()
    assert first.state == RETRYING and "Address in use" in first.detail
    assert "RETRYING" in first.text() and not first.ok
    for _ in range(20):
        if sup.state.state == UP:
            break
        await asyncio.sleep(0)
    assert sup.state.state == UP and sup.state.detail == "127.0.0.1:47813" and sup.started
    assert sleep.delays == [1, 2, 4]
    assert [s.state for s in states] == [RETRYING, RETRYING, RETRYING, UP]
    assert [s.attempts for s in states[:3]] == [1, 2, 3]
    await sup.stop()


async def test_a_config_error_fails_without_retrying() -> None:
    async def start() -> str:
        raise ConfigError("[api] bind = '0.0.0.0' would let anyone on the network in")

    sleep = FakeSleep()
    sup = Supervisor("front door", start, sleep=sleep)
    st = await sup.start()
    assert st.state == FAILED and "anyone on the network" in st.text()
    await asyncio.sleep(0)
    assert sleep.delays == [] and not sup.started


async def test_stop_ends_the_retries() -> None:
    async def start() -> str:
        raise OSError(errno.EADDRINUSE, "Address already in use")

    async def forever(delay: float) -> None:
        await asyncio.Event().wait()

    sup = Supervisor("relay", start, sleep=forever)
    assert (await sup.start()).state == RETRYING
    await sup.stop()
    assert sup.state.state == RETRYING and not sup.started


def test_off_is_ok_and_round_trips() -> None:
    sup = Supervisor("relay", lambda: asyncio.sleep(0, "x"))  # type: ignore[arg-type]
    sup.off("[relay] enabled = false")
    assert sup.state.state == OFF and sup.state.ok
    again = ServiceState.from_dict({**sup.state.as_dict(), "future_field": 1})
    assert again == sup.state


def test_which_errors_are_retried() -> None:
    assert retryable(OSError(errno.EADDRINUSE, "in use"))
    assert retryable(OSError(errno.EADDRNOTAVAIL, "not available"))
    assert not retryable(OSError(errno.EACCES, "permission denied"))
    assert not retryable(ConfigError("bad"))
    assert retryable(DaemonError("cannot open the relay port"))
