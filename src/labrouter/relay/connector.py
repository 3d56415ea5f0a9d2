"""The router's connector: which Backend reaches a candidate's server.

Owns ``RelayConnector``: this machine's own servers (and servers configured by hand) are
reached directly; a peer's servers through the peer's pinned relay (``client.RelayBackend``).
The relay client, and with it aiohttp and the TLS stack, is imported only when a candidate
is on another machine, so a `labrouter ask` whose candidates are all local never pays for
it.

Must not import ``app``, ``cluster`` or ``desktop``: the key comes as a ``KeySource``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ..backends.base import Backend, ChatChunk, ChatMessage, ChatOptions
from ..core.config import TimeoutConfig
from ..core.errors import BackendError, Unreachable
from ..core.peers import ModelInfo, Peer, ServerState
from ..core.policy import Candidate

if TYPE_CHECKING:
    import aiohttp

KeySource = Callable[[], bytes | None]
Connector = Callable[[Candidate], Backend]


@runtime_checkable
class Closable(Protocol):
    async def aclose(self) -> None: ...




def _key_source(key: bytes | KeySource) -> KeySource:
    """A key, or where to get the active key on each request (a reloaded keyring counts
    at once)."""
    if isinstance(key, bytes | bytearray):
        fixed = bytes(key)
        return lambda: fixed
    return key


class _NoRoute:
    """A Backend for a remote server that cannot be reached safely: every call refuses.

    A peer's server URLs are as that peer reaches them (usually 127.0.0.1), so dialling them
    from here would reach the wrong machine; without a relay there is no way to it.
    """

    def __init__(self, peer: Peer, server: ServerState) -> None:
        self.kind = server.kind
        self.url = f"relay-less://{peer.name}/{server.id}"
        self._msg = (f"{peer.name} announced no relay (port and certificate), so its "
                     f"server {server.id} cannot be reached from here")

    def _fail(self) -> Unreachable:
        return Unreachable(self._msg, hint="Update labrouter on that machine and check that "
                                           "[relay] enabled = true there.")

    async def version(self) -> str:
        raise self._fail()

    async def list_models(self) -> list[ModelInfo]:
        raise self._fail()

    async def loaded_models(self) -> list[str]:
        raise self._fail()

    async def show(self, model: str) -> ModelInfo:
        raise self._fail()

    def chat(self, model: str, messages: list[ChatMessage],
             options: ChatOptions | None = None) -> AsyncIterator[ChatChunk]:
        async def gen() -> AsyncIterator[ChatChunk]:
            raise self._fail()
            yield ChatChunk()  # pragma: no cover - makes this an async generator

        return gen()

    async def unload(self, model: str) -> None:
        raise self._fail()

    async def aclose(self) -> None:
        return None


class RelayConnector:
    """The router's ``connector(candidate) -> Backend``.

    This machine's servers (and servers configured by hand, which belong to it) are reached
    directly; a peer's servers through the peer's pinned relay. A peer that announces no
    relay (relay disabled, or an old version) is reached with ``direct`` when one was given
    (``ask.DirectConnector`` dials the peer's address, which works only where that peer
    exposes its server on the LAN), else never. One HTTP session per peer relay is kept
    and shared, so repeated requests reuse the TLS connection; ``aclose()`` closes them all,
    and the direct connector too.
    """

    def __init__(self, key: bytes | KeySource, timeouts: TimeoutConfig | None = None,
                 direct: Connector | None = None, node_name: str = "") -> None:
        self.key = _key_source(key)
        self.node_name = node_name  # this machine's, sent with each chat to a peer
        self.timeouts = timeouts or TimeoutConfig()
        self._direct = direct
        self._own: dict[tuple[str, str, str], Backend] = {}
        self._sessions: dict[tuple[str, int, str], aiohttp.ClientSession] = {}

    def __call__(self, candidate: Candidate) -> Backend:
        peer, server = candidate.peer, candidate.server
        if not peer.is_self and peer.relay_port and peer.cert_fingerprint and peer.address:
            k = (peer.address, peer.relay_port, peer.cert_fingerprint)
            from .client import RelayBackend, new_session  # aiohttp only when relaying

            session = self._sessions.get(k)
            if session is None or session.closed:
                session = self._sessions[k] = new_session(self.timeouts)
            return RelayBackend(peer.address, peer.relay_port, peer.cert_fingerprint,
                                server.id, self.key, self.timeouts, kind=server.kind,
                                peer_name=peer.name, session=session,
                                requester=self.node_name,
                                # a candidate-like object without a route sends none
                                route=str(getattr(candidate, "route", "") or ""))
        if self._direct is not None:
            return self._direct(candidate)
        if not peer.is_self:
            return _NoRoute(peer, server)
        key = (peer.node_id, server.id, server.url)
        backend = self._own.get(key)
        if backend is None:
            from ..backends import make_backend  # deferred: httpx is only needed here

            backend = self._own[key] = make_backend(server, self.timeouts)
        return backend

    async def aclose(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        own, self._own = list(self._own.values()), {}
        for s in sessions:
            await s.close()
        for b in own:
            try:
                await b.aclose()
            except BackendError:
                pass
        if isinstance(self._direct, Closable):
            await self._direct.aclose()
