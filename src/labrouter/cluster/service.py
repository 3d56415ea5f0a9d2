"""The gossip service: runs a ``protocol.GossipNode`` over a ``udp.UdpTransport``.

Owns the asyncio tasks (jittered heartbeats, triggered announcements at most four a second,
the tick that advances the table by silence and sends probes), the goodbye on stop and the
on-change callback. The clock and wall clock are injected.
Must not import app/ or desktop packages.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Callable

from ..core.peers import NodeState
from .protocol import Addr, GossipNode, Send
from .udp import GossipStats, TransportOptions, UdpTransport

log = logging.getLogger(__name__)


class GossipService:
    """Runs a GossipNode over a UdpTransport on the running asyncio loop."""

    def __init__(self, node: GossipNode, opts: TransportOptions,
                 clock: Callable[[], float], wall: Callable[[], float],
                 on_change: Callable[[], None] = lambda: None, seed: int | None = None) -> None:
        self.node = node
        self.opts = opts
        self.clock, self.wall = clock, wall
        self.on_change = on_change
        self.transport = UdpTransport(opts, self._received, clock)
        self.rng = random.Random(seed)
        self._trigger = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_triggered = -math.inf

    @property
    def stats(self) -> GossipStats:
        return self.transport.stats

    async def start(self) -> None:
        await self.transport.open()
        self.node.start(self.clock())
        self._tasks = [asyncio.create_task(self._announce_loop(), name="gossip-announce"),
                       asyncio.create_task(self._tick_loop(), name="gossip-tick")]

    def announce_now(self) -> None:
        self._trigger.set()

    async def stop(self, goodbye: bool = True) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        self._tasks = []
        if goodbye and self.transport.transport is not None:
            # three copies (0, 50, 150 ms): loss-tolerant without delaying shutdown much
            for delay in (0.0, 0.05, 0.1):
                await asyncio.sleep(delay)
                self.transport.send_all(self.node.leave(self.wall()), self._known())
        self.transport.close()

    def _known(self) -> list[Addr]:
        """Unicast also to every peer we know when broadcast is off (asymmetric configs)."""
        if self.opts.broadcast:
            return []
        return [(p.address, p.port) for p in self.node.table.peers.values()
                if not p.is_self and p.address and p.port and
                p.state not in (NodeState.LEFT, NodeState.DOWN)]

    def _received(self, data: bytes, src: Addr) -> None:
        for s in self.node.receive(data, src, self.clock(), self.wall()):
            self._send(s)
        self._changed()

    def _send(self, s: Send) -> None:
        if s.dest is None:
            self.transport.send_all(s.data, self._known())
        else:
            self.transport.send(s.data, s.dest)

    def _changed(self) -> None:
        if self.node.changed:
            self.node.changed = False
            try:
                self.on_change()
            except Exception:  # noqa: BLE001
                log.exception("on_change callback failed")

    async def _announce_loop(self) -> None:
        next_hb = self.clock()
        while True:
            now = self.clock()
            rep = self.node.next_repeat()
            wake = min(next_hb, rep if rep is not None else math.inf)
            if self._trigger.is_set():
                # a change: announce at once, but at most 4 triggered announcements a second
                wake = min(wake, max(now, self._last_triggered + 0.25))
                if wake > now:
                    await asyncio.sleep(wake - now)
            elif wake > now:
                try:
                    await asyncio.wait_for(self._trigger.wait(), wake - now)
                except TimeoutError:
                    pass
                continue
            now = self.clock()
            if self._trigger.is_set():
                self._trigger.clear()
                self._last_triggered = now
            try:
                self.transport.send_all(self.node.announcement(now, self.wall()), self._known())
            except Exception:  # noqa: BLE001
                log.exception("could not announce")
            next_hb = now + self.node.interval * self.rng.uniform(0.75, 1.25)

    async def _tick_loop(self) -> None:
        step = max(0.02, self.node.interval / 10)
        while True:
            await asyncio.sleep(step)
            try:
                for s in self.node.tick(self.clock(), self.wall()):
                    self._send(s)
            except Exception:  # noqa: BLE001
                log.exception("gossip tick failed")
            self._changed()
