"""The composition root: every part of the daemon built once, in one place, each given
what it uses.

Owns ``Runtime`` (what `labrouter run` runs: the ``Daemon``, the one ``Asker`` and its
connector, the speed table's keeper, the relay and the front door), ``build_runtime``
(the only place they are wired), ``local_asker`` (the same Asker for a command when no
daemon runs: same speed table file, same usage log, same connector) and ``run`` (`labrouter
run`: headless, or with the desktop on top).

Nothing else builds an Asker for the daemon, and nothing looks its parts up at run time:
the tray, the hotkey, the front door and `labrouter ask` (through the control channel, see
``app/askproxy.py``) all use ``Runtime.asker``, so there is one speed table, one in-flight
count and one stickiness history.

Must not import desktop packages at module level (``run`` imports the desktop app only when
a desktop runs).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..ask import Asker, DirectConnector
from ..cluster.keys import load_keyring
from ..cluster.monitor import Monitor
from ..core.config import Config
from ..core.errors import BackendError, KeyringError
from ..core.health import FaultBook
from ..core.policy import Candidate
from ..core.usage import UsageRecord
from ..relay.connector import KeySource, RelayConnector
from .askproxy import register_ask
from .daemon import Daemon
from .local import load_speeds
from .settings import Context
from .usagelog import UsageLog
from .usagepage import settings_from, usage_handler

if TYPE_CHECKING:  # the services (aiohttp) are imported by build_runtime: a command's
    # local_asker with only local servers never loads them
    from .http_services import FrontDoorService, PageHandler, RelayService, RouterService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ports:
    """Where the services listen; None: from the config, 0: any free port (tests)."""

    relay_bind: str | None = None
    relay: int | None = None
    api: int | None = None


@dataclass
class Runtime:
    """The daemon and the parts around it; ``daemon.serve()`` runs them all."""

    ctx: Context
    daemon: Daemon
    asker: Asker
    connector: RelayConnector
    router: RouterService
    relay: RelayService
    front_door: FrontDoorService


def build_runtime(ctx: Context, *, monitor: Monitor | None = None,
                  ports: Ports = Ports(),
                  clock: Callable[[], float] = time.monotonic,
                  wall: Callable[[], float] = time.time) -> Runtime:
    """Everything `labrouter run` starts, wired; nothing runs until ``daemon.serve()``."""
    from .http_services import DaemonRelayHost, FrontDoorService, RelayService, RouterService

    config, paths = ctx.config, ctx.paths
    daemon = Daemon(ctx, monitor=monitor, clock=clock, wall=wall)

    def active_key() -> bytes | None:  # the keyring is replaced when its file changes
        return daemon.keyring.active_key

    def server_failed(cand: Candidate, exc: BackendError) -> None:
        daemon.report_failure(cand.peer.node_id, cand.server.id)

    # the node name goes with each chat to a peer, which logs it as "served for" us
    connector = RelayConnector(active_key, config.timeouts, DirectConnector(config),
                               node_name=config.node.name)
    speeds = load_speeds(paths.speeds_file)
    # faults the Asker remembers are announced (degraded) and probed by the monitor
    faults = FaultBook()
    daemon.monitor.attach_faults(faults, daemon.node_id, clock)
    usage_log = UsageLog(paths.data_dir, config.usage.retention_days)
    asker = Asker(config, daemon.snapshot, speeds=speeds, usage_log=usage_log,
                  connector=connector, on_server_failed=server_failed,
                  suspect=daemon.suspect_servers, in_flight=daemon.in_flight,
                  clock=clock, wall=wall, faults=faults)
    router = RouterService(speeds, paths.speeds_file, connector)
    relay = RelayService(config, paths.tls_dir,
                         keys=lambda: list(daemon.keyring.keys.values()),
                         host=DaemonRelayHost(daemon, config.timeouts),
                         self_info=daemon.self_info, bind=ports.relay_bind, port=ports.relay,
                         on_served=usage_log.append)
    front_door = FrontDoorService(asker, daemon.snapshot, config, port=ports.api,
                                  pages={"/usage": usage_page(usage_log, config, wall)})
    daemon.add_service(router)
    # named: `status`, `doctor` and the tray show whether they run; retried while the
    # port is taken
    daemon.add_service(relay, "relay",
                       off="" if config.relay.enabled else "[relay] enabled = false")
    daemon.add_service(front_door, "front door",
                       off="" if config.api.enabled else "[api] enabled = false")
    register_ask(daemon.control, asker)
    return Runtime(ctx, daemon, asker, connector, router, relay, front_door)


def usage_page(usage_log: UsageLog, config: Config, wall: Callable[[], float]
               ) -> PageHandler:
    """The front door's ``/usage`` page over this machine's usage log."""
    settings = settings_from(config)
    return usage_handler(usage_log.read, lambda: settings, clock=wall)


def keyring_key(ctx: Context) -> KeySource:
    """The active cluster key from the keyring file, for a command (read once)."""
    try:
        key = load_keyring(ctx.paths.keyring_file).active_key
    except KeyringError as exc:
        log.warning("no cluster key for the relay: %s", exc)
        key = None
    return lambda: key


def local_asker(ctx: Context, peers: Callable[[], list],  # type: ignore[type-arg]
                on_server_failed: Callable[[Candidate, BackendError], None] | None = None
                ) -> tuple[Asker, RelayConnector]:
    """The Asker a command uses when no daemon runs: the daemon's speed table file and
    usage log, peers through the relay with the key file's key. The caller closes the
    connector and saves the speeds (``local.save_speeds``)."""
    config, paths = ctx.config, ctx.paths
    connector = RelayConnector(keyring_key(ctx), config.timeouts, DirectConnector(config),
                               node_name=config.node.name)
    log_ = UsageLog(paths.data_dir, config.usage.retention_days)
    asker = Asker(config, peers, speeds=load_speeds(paths.speeds_file), usage_log=log_,
                  connector=connector, on_server_failed=on_server_failed)
    seed_history(asker, log_)
    return asker, connector


def seed_history(asker: Asker, usage_log: UsageLog) -> None:
    """Context stickiness across `labrouter ask` runs without a daemon: each run is a new
    process, so the last requests' routes come from today's usage log, placed on the
    asker's clock."""
    from ..core.policy import STICKY_COUNT

    records, _ = usage_log.read(1)
    now_wall, now = time.time(), asker.clock()
    recent: list[UsageRecord] = [r for r in records if r.outcome != "no_candidate"]
    for r in recent[-STICKY_COUNT:]:
        # the route the request was on; older records have only the serving route
        asker.history.add(now - max(0.0, now_wall - r.ts), r.classified_route or r.route)


def run(ctx: Context, headless: bool = True) -> int:
    """`labrouter run`: the daemon in the foreground, with the tray when there is a desktop."""
    from .logsetup import configure

    configure(ctx.paths)
    rt = build_runtime(ctx)
    if not headless:
        from .desktop_app import desktop_problem, run_desktop

        problem = desktop_problem()
        if problem is None:
            # the tray owns the main thread, the loop a worker
            return run_desktop(ctx, rt.daemon, rt.asker)
        log.info("%s: running headless", problem)
        print(f"labrouter: {problem}: running headless", file=sys.stderr)
    return rt.daemon.run_headless()
