"""The local monitor: what this node's own inference servers offer right now.

Owns ``Monitor``: every interval it asks each configured server, through the ``Backend``
protocol (``backends.make_backend``), for its installed models (``list_models``: Ollama
/api/tags, OpenAI /v1/models) and the models in memory (``loaded_models``: Ollama /api/ps),
and turns the answers into ``core.peers.ServerState`` for the announcement. A server that
fails is reported down with the reason; ``version()`` only when a server comes back, for
the log.

Passive health (``attach_faults``): a model of this node's servers that missed a deadline
or broke off an answer (the Asker's ``core.health.FaultBook``) is announced as
``degraded``, so peers try it last too, and probed in the background with the real model
(a one-token chat under a short deadline) as its back-off allows; it comes back when a
probe, or a request, is answered normally. The only generation requests the monitor sends.
Must not import app/ or desktop packages.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..core.config import ServerConfig, TimeoutConfig
from ..core.errors import BackendError
from ..core.health import FaultBook
from ..core.peers import ServerState

log = logging.getLogger(__name__)

BackendFactory = Callable[[ServerConfig, TimeoutConfig], Any]


def _default_factory(server: ServerConfig, timeouts: TimeoutConfig) -> Any:
    from ..backends import make_backend

    return make_backend(server, timeouts)


class Monitor:
    """Polls this node's servers. ``poll()`` returns one ServerState per server, in order."""

    def __init__(self, servers: Sequence[ServerConfig], timeouts: TimeoutConfig | None = None,
                 factory: BackendFactory = _default_factory, poll_timeout: float = 5.0) -> None:
        self.servers = tuple(servers)
        t = timeouts or TimeoutConfig()
        # a health check is quick or it is a failure: cap the connect timeout
        self.timeouts = TimeoutConfig(connect=min(t.connect, poll_timeout),
                                      first_token=poll_timeout, gap=poll_timeout,
                                      total=poll_timeout)
        self.factory = factory
        self.poll_timeout = poll_timeout
        self._backends: dict[str, Any] = {}
        self.states: list[ServerState] = [self._initial(s) for s in self.servers]
        self.faults: FaultBook | None = None
        self.node_id = ""
        self.clock: Callable[[], float] = time.monotonic
        self._probing: set[asyncio.Task[None]] = set()

    def attach_faults(self, faults: FaultBook, node_id: str,
                      clock: Callable[[], float] = time.monotonic) -> None:
        """Announce and probe the faults the Asker remembers for this node's servers
        (``clock`` must be the Asker's)."""
        self.faults, self.node_id, self.clock = faults, node_id, clock

    def degraded(self, server: str) -> tuple[str, ...]:
        if self.faults is None:
            return ()
        return tuple(sorted(m for n, sid, m in self.faults.demoted(self.clock())
                            if n == self.node_id and sid == server))

    @staticmethod
    def _initial(s: ServerConfig) -> ServerState:
        return ServerState(id=s.label, url=s.url, kind=s.kind, up=False,
                           cost_input_per_1k=s.cost_input_per_1k,
                           cost_output_per_1k=s.cost_output_per_1k,
                           api_key_env=s.api_key_env, error="not checked yet")

    def backend(self, s: ServerConfig) -> Any:
        b = self._backends.get(s.label)
        if b is None:
            b = self.factory(s, self.timeouts)
            self._backends[s.label] = b
        return b

    async def poll(self) -> list[ServerState]:
        results = await asyncio.gather(*(self._one(s, old) for s, old in
                                         zip(self.servers, self.states, strict=True)))
        self.states = list(results)
        self._start_probes()
        return self.states

    def _start_probes(self) -> None:
        if self.faults is None:
            return
        by_label = {s.label: s for s in self.servers}
        up = {st.id for st in self.states if st.up}
        for node, sid, model in self.faults.due_probes(self.clock()):
            server = by_label.get(sid)
            if node != self.node_id or server is None or sid not in up:
                continue  # another node's server, or down already: no probe needed
            task = asyncio.create_task(self._probe(server, model),
                                       name=f"labrouter-probe {model} on {sid}")
            self._probing.add(task)
            task.add_done_callback(self._probing.discard)

    async def _probe(self, server: ServerConfig, model: str) -> None:
        """One token from the real model under a short deadline: healthy again, or the
        back-off grows."""
        from ..backends.base import ChatMessage, ChatOptions

        assert self.faults is not None
        key = (self.node_id, server.label, model)
        try:
            async with asyncio.timeout(self.poll_timeout):
                async for chunk in self.backend(server).chat(
                        model, [ChatMessage("user", "Say OK.")], ChatOptions(max_tokens=1)):
                    if chunk.text or chunk.done:
                        break
            self.faults.ok(key)
            log.info("%s on %s answers again", model, server.label)
        except (BackendError, TimeoutError, OSError) as exc:
            backoff = self.faults.fault(key, self.clock(), f"probe: {exc}")
            log.info("%s on %s still does not answer (%s); next look in %.0f s", model,
                     server.label, exc or "timed out", backoff)

    async def _one(self, s: ServerConfig, old: ServerState) -> ServerState:
        base = self._initial(s)
        try:
            b = self.backend(s)
            models = await asyncio.wait_for(b.list_models(), self.poll_timeout)
            loaded: list[str] = []
            if s.kind == "ollama":
                loaded = await asyncio.wait_for(b.loaded_models(), self.poll_timeout)
            if not old.up:
                try:
                    version = await asyncio.wait_for(b.version(), self.poll_timeout)
                except (BackendError, TimeoutError):
                    version = "?"
                log.info("server %s (%s) is up, version %s, %d models", s.label, s.url,
                         version, len(models))
            return ServerState(
                id=base.id, url=base.url, kind=base.kind, up=True, models=tuple(models),
                loaded=tuple(loaded), cost_input_per_1k=base.cost_input_per_1k,
                cost_output_per_1k=base.cost_output_per_1k, api_key_env=base.api_key_env,
                degraded=self.degraded(s.label))
        except (BackendError, TimeoutError, OSError) as exc:
            why = str(exc) or type(exc).__name__
            if old.up or old.error == "not checked yet":
                log.warning("server %s (%s) is down: %s", s.label, s.url, why)
            return ServerState(id=base.id, url=base.url, kind=base.kind, up=False,
                               models=old.models, cost_input_per_1k=base.cost_input_per_1k,
                               cost_output_per_1k=base.cost_output_per_1k,
                               api_key_env=base.api_key_env, error=why[:200])

    async def unload_all(self) -> list[str]:
        """Ask every Ollama server to drop its loaded models (keep_alive 0). Returns names."""
        done: list[str] = []
        for s, st in zip(self.servers, self.states, strict=True):
            if s.kind != "ollama":
                continue
            for model in st.loaded:
                try:
                    await asyncio.wait_for(self.backend(s).unload(model), self.poll_timeout)
                    done.append(model)
                except (BackendError, TimeoutError) as exc:
                    log.warning("could not unload %s from %s: %s", model, s.label, exc)
        return done

    async def aclose(self) -> None:
        for t in list(self._probing):
            t.cancel()
        await asyncio.gather(*self._probing, return_exceptions=True)
        for b in self._backends.values():
            try:
                await b.aclose()
            except Exception:  # noqa: BLE001
                pass
        self._backends.clear()
