"""The daemon's two HTTP services: the peer relay and the local front door.

Owns ``RelayService`` and ``FrontDoorService`` (each with ``async start(daemon)`` and
``async stop()``, registered with ``Daemon.add_service``), the adapter that shows the daemon
to the relay as a ``RelayHost`` (its own servers, pause state, in-flight table, keyring),
and ``build_asker(daemon)``, an Asker over the live table that reaches peers through the
relay. Both servers run on the daemon's event loop.

``RelayService.start`` sets ``daemon.self_info.relay_port`` and ``cert_fingerprint``; the
daemon starts services before gossip, so the first announcement already carries them.

Must not import desktop packages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import MutableMapping
from typing import Any

from ..backends.base import Backend
from ..core.config import ServerConfig, TimeoutConfig
from ..core.errors import DaemonError
from ..core.peers import ServerState
from ..relay.auth import ProofVerifier
from ..relay.client import RelayConnector, relay_connector
from ..relay.server import RelayServer, RelaySite
from ..relay.tls import ensure_identity
from .frontdoor import FrontDoor, FrontDoorSite, check_bind
from .paths import write_private

log = logging.getLogger(__name__)


class DaemonRelayHost:
    """The daemon as the relay sees it. Used on the daemon's loop only."""

    def __init__(self, daemon: Any, timeouts: TimeoutConfig) -> None:
        self.daemon = daemon
        self.timeouts = timeouts
        self._backends: dict[tuple[str, str, str], Backend] = {}

    @property
    def in_flight(self) -> MutableMapping[str, int]:
        return self.daemon.in_flight  # type: ignore[no-any-return]

    def _servers(self) -> list[ServerState | ServerConfig]:
        # the monitor's view first (it has the ids announced to peers); the configured
        # servers as a fallback while the first poll is still running
        live = list(getattr(self.daemon, "servers", []) or [])
        if live:
            return live
        return list(self.daemon.config.servers)

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

    def __init__(self, bind: str | None = None, port: int | None = None) -> None:
        self.bind = bind  # None: from the config
        self.port = port  # None: [relay] port; 0: any free port (tests)
        self.site: RelaySite | None = None
        self.host: DaemonRelayHost | None = None
        self.fingerprint = ""

    async def start(self, daemon: Any) -> None:
        cfg = daemon.config
        if not cfg.relay.enabled:
            log.info("relay disabled ([relay] enabled = false): peers cannot use this "
                     "machine's servers")
            return
        identity = await asyncio.to_thread(ensure_identity, daemon.paths.tls_dir,
                                           write_private, f"labrouter {cfg.node.name}")
        # every key of the (re)loaded keyring is accepted; the daemon replaces its keyring
        # object on reload, so it is looked up on each request
        verifier = ProofVerifier(lambda: list(daemon.keyring.keys.values()))
        self.host = DaemonRelayHost(daemon, cfg.timeouts)
        server = RelayServer(self.host, verifier, cfg.relay.max_concurrent_per_model)
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
        daemon.self_info.relay_port = bound
        daemon.self_info.cert_fingerprint = identity.fingerprint
        log.info("relay on %s:%d/tcp, certificate %s", bind or "*", bound,
                 identity.fingerprint[:16])

    async def stop(self) -> None:
        if self.site is not None:
            await self.site.stop()
            self.site = None
        if self.host is not None:
            await self.host.aclose()
            self.host = None


def build_asker(daemon: Any) -> tuple[Any, RelayConnector]:
    """An Asker over the daemon's live table that reaches peers through the relay.

    Returns (asker, connector); the caller closes the connector when done.
    """
    from ..ask import Asker, DirectConnector
    from .local import load_speeds
    from .usagelog import UsageLog

    ctx_config = daemon.config
    paths = daemon.paths
    connector = relay_connector(daemon, ctx_config.timeouts, DirectConnector(ctx_config))

    def failed(cand: Any, exc: Exception) -> None:
        daemon.report_failure(cand.peer.node_id, cand.server.id)

    asker = Asker(ctx_config, daemon.snapshot, speeds=load_speeds(paths.speeds_file),
                  usage_log=UsageLog(paths.data_dir, ctx_config.usage.retention_days),
                  connector=connector, on_server_failed=failed,
                  suspect=lambda: set(daemon.table.server_suspect),
                  in_flight=daemon.in_flight)
    return asker, connector


class FrontDoorService:
    """The Ollama/OpenAI API on ``[api] bind:port`` (127.0.0.1:47813 by default)."""

    def __init__(self, asker: Any = None, allow_lan: bool | None = None,
                 port: int | None = None) -> None:
        self.asker = asker  # None: the daemon's ``asker`` if it has one, else build_asker
        self.allow_lan = allow_lan  # None: [api] allow_lan when the config has it
        self.port = port  # None: [api] port; 0: any free port (tests)
        self.bound_port = 0
        self.site: FrontDoorSite | None = None
        self._connector: RelayConnector | None = None
        self._asker: Any = None
        self._daemon: Any = None

    async def start(self, daemon: Any) -> None:
        cfg = daemon.config
        if not cfg.api.enabled:
            return
        allow_lan = self.allow_lan
        if allow_lan is None:
            allow_lan = bool(getattr(cfg.api, "allow_lan", False))
        check_bind(cfg.api.bind, allow_lan)
        asker = self.asker or getattr(daemon, "asker", None)
        if asker is None:
            asker, self._connector = build_asker(daemon)
        self._asker, self._daemon = asker, daemon
        door = FrontDoor(asker, daemon.snapshot, cfg, allow_lan=allow_lan)
        port = cfg.api.port if self.port is None else self.port
        self.site = FrontDoorSite(door, cfg.api.bind, port)
        try:
            self.bound_port = await self.site.start()
        except OSError as exc:
            await self.site.stop()
            self.site = None
            raise DaemonError(
                f"cannot open the API port {cfg.api.bind}:{port}/tcp: {exc.strerror or exc}",
                hint="Another program uses it (a second labrouter?); set [api] port, or "
                     "[api] enabled = false.") from None
        log.info("Ollama/OpenAI API on http://%s:%d (models: auto, auto:<route>, or a name)",
                 cfg.api.bind, self.bound_port)

    async def stop(self) -> None:
        if self.site is not None:
            await self.site.stop()
            self.site = None
        if self._connector is not None:
            await self._connector.aclose()
            self._connector = None
            # the asker was ours: keep what it learned about speeds
            from .local import save_speeds

            with contextlib.suppress(Exception):
                save_speeds(self._daemon.paths.speeds_file, self._asker.speeds)


class RouterService:
    """The daemon's one Asker, shared by the tray, the hotkey and the front door.

    Started first, so the services after it find ``daemon.asker``; on stop it saves the
    learned speeds (kept across restarts) and closes the relay sessions.
    """

    SAVE_EVERY = 60.0  # seconds: a crash loses at most a minute of learned speeds

    def __init__(self) -> None:
        self._daemon: Any = None
        self._connector: RelayConnector | None = None
        self._saver: asyncio.Task[None] | None = None

    async def start(self, daemon: Any) -> None:
        self._daemon = daemon
        daemon.asker, self._connector = build_asker(daemon)
        daemon.ask_connector = self._connector
        self._saver = asyncio.get_running_loop().create_task(self._save_loop())

    def _save(self) -> None:
        from .local import save_speeds

        asker = getattr(self._daemon, "asker", None)
        if asker is not None:
            save_speeds(self._daemon.paths.speeds_file, asker.speeds)

    async def _save_loop(self) -> None:
        last = ""
        while True:
            await asyncio.sleep(self.SAVE_EVERY)
            asker = getattr(self._daemon, "asker", None)
            now = repr(asker.speeds.to_dict()) if asker is not None else ""
            if now != last:  # write only when something was learned
                self._save()
                last = now

    async def stop(self) -> None:
        if self._daemon is None:
            return
        if self._saver is not None:
            self._saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._saver
            self._saver = None
        self._save()
        if self._connector is not None:
            await self._connector.aclose()
            self._connector = None


def standard_services() -> list[Any]:
    """What `labrouter run` starts besides gossip: the router, the relay, the front door.

    Each checks its own ``enabled`` setting when it starts.
    """
    return [RouterService(), RelayService(), FrontDoorService()]
