"""The daemon's services around the Asker: the speed table's keeper, the peer relay and the
local front door.

Owns ``RouterService`` (keeps the one Asker's learned speeds: merged with the file every
minute and on stop, and closes the Asker's connector), ``RelayService`` and
``FrontDoorService`` (each ``async start()`` / ``async stop()``, registered with
``Daemon.add_service``), and ``DaemonRelayHost``, the daemon as the relay sees it (its own
servers, pause state, in-flight table). Each is given what it uses when it is built, by
``app/runtime.py``; none looks anything up on the daemon at run time.

``RelayService.start`` sets ``self_info.relay_port`` and ``cert_fingerprint``; the daemon
starts services before gossip, so the first announcement already carries them.

Must not import desktop packages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from ..backends.base import Backend
from ..core.config import Config, ServerConfig, TimeoutConfig
from ..core.errors import DaemonError
from ..core.peers import Peer, ServerState
from ..core.policy import SpeedBook
from ..core.usage import UsageRecord
from ..relay.auth import ProofVerifier
from ..relay.connector import RelayConnector
from ..relay.server import RelayServer, RelaySite
from ..relay.tls import ensure_identity
from .frontdoor import AskerLike, FrontDoor, FrontDoorSite, check_bind
from .local import load_speeds, save_speeds
from .paths import write_private

if TYPE_CHECKING:
    from .daemon import Daemon, SelfInfo

log = logging.getLogger(__name__)

PageHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class DaemonRelayHost:
    """The daemon as the relay sees it (``relay.server.RelayHost``). On the loop only."""

    def __init__(self, daemon: Daemon, timeouts: TimeoutConfig) -> None:
        self.daemon = daemon
        self.timeouts = timeouts
        self.in_flight: MutableMapping[str, int] = daemon.in_flight  # the same table
        self._backends: dict[tuple[str, str, str], Backend] = {}

    def _servers(self) -> list[ServerState | ServerConfig]:
        # the monitor's view first (it has the ids announced to peers); the configured
        # servers as a fallback while the first poll is still running
        live: list[ServerState | ServerConfig] = list(self.daemon.servers)
        return live or list(self.daemon.config.servers)

    @staticmethod
    def _id(server: ServerState | ServerConfig) -> str:
        return server.id if isinstance(server, ServerState) else server.label

    def server_ids(self) -> list[str]:
        return [self._id(s) for s in self._servers()]

    def backend(self, server_id: str) -> Backend | None:
        for server in self._servers():
            if self._id(server) != server_id:
                continue
            key = (server_id, server.url, server.kind)
            backend = self._backends.get(key)
            if backend is None:
                from ..backends import make_backend

                # a ServerState from the monitor has no API key; the configured server does
                for conf in self.daemon.config.servers:
                    if conf.label == server_id:
                        server = conf
                        break
                backend = self._backends[key] = make_backend(server, self.timeouts)
            return backend
        return None

    def peer_name(self, address: str) -> str | None:
        """The name of the peer at ``address`` (for a request from an older peer that
        sends no name)."""
        for peer in self.daemon.snapshot():
            if not peer.is_self and peer.address == address:
                return str(peer.name)
        return None

    def paused(self) -> str | None:
        ps = self.daemon.pause_state
        return (ps.reason or "") if ps.paused else None

    def in_flight_changed(self) -> None:
        # the announcement reads in_flight every interval; no extra packet per request
        return None

    async def aclose(self) -> None:
        backends, self._backends = list(self._backends.values()), {}
        for b in backends:
            with contextlib.suppress(Exception):
                await b.aclose()


class RelayService:
    """The HTTPS relay on ``[relay] port`` (every interface, or ``[cluster] bind``)."""

    def __init__(self, config: Config, tls_dir: Path, keys: Callable[[], list[bytes]],
                 host: DaemonRelayHost, self_info: SelfInfo, bind: str | None = None,
                 port: int | None = None,
                 on_served: Callable[[UsageRecord], None] | None = None) -> None:
        self.config = config
        # each request served for a peer, as a usage record (this machine's usage log)
        self.on_served = on_served
        self.tls_dir = tls_dir
        # every key of the (re)loaded keyring is accepted: asked on each request
        self.keys = keys
        self.host = host
        self.self_info = self_info
        self.bind = bind  # None: from the config
        self.port = port  # None: [relay] port; 0: any free port (tests)
        self.site: RelaySite | None = None
        self.fingerprint = ""

    async def start(self) -> str | None:
        cfg = self.config
        if not cfg.relay.enabled:
            log.info("relay disabled ([relay] enabled = false): peers cannot use this "
                     "machine's servers")
            return None
        identity = await asyncio.to_thread(ensure_identity, self.tls_dir, write_private,
                                           f"labrouter {cfg.node.name}")
        verifier = ProofVerifier(self.keys)
        server = RelayServer(self.host, verifier, cfg.relay.max_concurrent_per_model,
                             on_served=self.on_served, node_name=cfg.node.name)
        bind = self.bind
        if bind is None:
            bind = cfg.cluster.bind if cfg.cluster.bind not in ("", "0.0.0.0", "::") else None
        port = cfg.relay.port if self.port is None else self.port
        self.site = RelaySite(server, identity.server_context(), port, host=bind)
        try:
            bound = await self.site.start()
        except OSError as exc:
            await self.site.stop()
            self.site = None
            raise DaemonError(
                f"cannot open the relay port {bind or '*'}:{port}/tcp: {exc.strerror or exc}",
                hint="Another program uses it; set [relay] port in the config (every machine "
                     "learns the new port from the announcements).") from None
        self.fingerprint = identity.fingerprint
        self.self_info.relay_port = bound
        self.self_info.cert_fingerprint = identity.fingerprint
        log.info("relay on %s:%d/tcp, certificate %s", bind or "*", bound,
                 identity.fingerprint[:16])
        return f"{bind or '*'}:{bound}/tcp"

    async def stop(self) -> None:
        if self.site is not None:
            await self.site.stop()
            self.site = None
        await self.host.aclose()


class FrontDoorService:
    """The Ollama/OpenAI API on ``[api] bind:port`` (127.0.0.1:47813 by default)."""

    def __init__(self, asker: AskerLike, peers: Callable[[], list[Peer]], config: Config,
                 port: int | None = None, pages: Mapping[str, PageHandler] | None = None
                 ) -> None:
        self.asker = asker
        self.pages = dict(pages or {})  # extra GET pages: the usage page
        self.peers = peers
        self.config = config
        self.port = port  # None: [api] port; 0: any free port (tests)
        self.bound_port = 0
        self.site: FrontDoorSite | None = None

    async def start(self) -> str | None:
        api = self.config.api
        if not api.enabled:
            return None
        check_bind(api.bind, api.allow_lan)
        door = FrontDoor(self.asker, self.peers, self.config, allow_lan=api.allow_lan)
        door.pages.update(self.pages)
        port = api.port if self.port is None else self.port
        self.site = FrontDoorSite(door, api.bind, port)
        try:
            self.bound_port = await self.site.start()
        except OSError as exc:
            await self.site.stop()
            self.site = None
            raise DaemonError(
                f"cannot open the API port {api.bind}:{port}/tcp: {exc.strerror or exc}",
                hint="Another program uses it (a second labrouter?); set [api] port, or "
                     "[api] enabled = false.") from None
        log.info("Ollama/OpenAI API on http://%s:%d (models: auto, auto:<route>, or a name)",
                 api.bind, self.bound_port)
        return f"http://{api.bind}:{self.bound_port}"

    async def stop(self) -> None:
        if self.site is not None:
            await self.site.stop()
            self.site = None


def merge_speeds(book: SpeedBook, on_disk: SpeedBook) -> None:
    """Take from the file what was learned elsewhere (an entry measured more often there:
    a `labrouter ask` that ran without the daemon), so that saving does not undo it."""
    for key, speed in on_disk.speeds.items():
        mine = book.speeds.get(key)
        if mine is None or speed.n > mine.n:
            book.speeds[key] = speed


class RouterService:
    """Keeps what the daemon's one Asker learns: its speed table is merged with the file
    every minute and on stop (a crash loses at most a minute); closes its connector."""

    SAVE_EVERY = 60.0  # seconds

    def __init__(self, speeds: SpeedBook, speeds_file: Path, connector: RelayConnector,
                 save_every: float = SAVE_EVERY) -> None:
        self.speeds = speeds
        self.speeds_file = speeds_file
        self.connector = connector
        self.save_every = save_every
        self._saver: asyncio.Task[None] | None = None
        self._last = ""

    async def start(self) -> None:
        self._saver = asyncio.get_running_loop().create_task(self._save_loop())

    def save(self) -> None:
        merge_speeds(self.speeds, load_speeds(self.speeds_file))
        now = repr(self.speeds.to_dict())
        if now != self._last:  # write only when something changed
            save_speeds(self.speeds_file, self.speeds)
            self._last = now

    async def _save_loop(self) -> None:
        while True:
            await asyncio.sleep(self.save_every)
            try:
                self.save()  # on the loop: the Asker records into the same table here
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("saving the speed table failed")

    async def stop(self) -> None:
        if self._saver is not None:
            self._saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._saver
            self._saver = None
        self.save()
        await self.connector.aclose()
