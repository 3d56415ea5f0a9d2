"""The local monitor: what this node's own inference servers offer right now.

Owns ``Monitor``: every interval it asks each configured server, through the ``Backend``
protocol (``backends.make_backend``), for its installed models (``list_models``: Ollama
/api/tags, OpenAI /v1/models) and the models in memory (``loaded_models``: Ollama /api/ps),
and turns the answers into ``core.peers.ServerState`` for the announcement. A server that
fails is reported down with the reason. Never a generation request; ``version()`` only
when a server comes back, for the log. Must not import app/ or desktop packages.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from ..core.config import ServerConfig, TimeoutConfig
from ..core.errors import BackendError
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
        return self.states

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
                cost_output_per_1k=base.cost_output_per_1k, api_key_env=base.api_key_env)
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
        for b in self._backends.values():
            try:
                await b.aclose()
            except Exception:  # noqa: BLE001
                pass
        self._backends.clear()
