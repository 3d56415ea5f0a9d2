"""The labrouter daemon: gossip, the local monitor, pausing and the control channel.

Owns ``Daemon``, the one object that wires the cluster together on one asyncio loop:
the ``PeerTable`` (this machine first), the ``GossipService`` (only with a cluster key),
the ``Monitor`` of this machine's servers and their last state (``servers``), the in-flight
table of its own servers (``in_flight``, shared with the Asker and the relay), the
keyring (reloaded when its file changes), the pause state (persisted, with its until-time,
auto-pause while a named process runs, unload on pause), the ``ControlServer`` for the CLI
and the tray, and the services ``app/runtime.py`` adds (``add_service``: the speed table's
keeper, the relay, the front door). It knows nothing of the Asker.

Threading: every method that changes state runs on the daemon's loop. ``pause``,
``resume``, ``announce_now`` and ``stop`` may be called from any thread (they hand over
with ``call_soon_threadsafe``); ``snapshot`` returns a copy and is safe anywhere.
``run_headless()`` runs the loop on the calling (main) thread until SIGTERM or Ctrl+C;
``start_in_thread()`` runs it on a worker thread for the tray, which owns the main thread.

Must not import desktop packages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from .. import __version__
from ..cluster.keys import Keyring, fingerprint, load_keyring
from ..cluster.monitor import Monitor
from ..cluster.protocol import GossipNode
from ..cluster.service import GossipService
from ..cluster.udp import TransportOptions
from ..core.errors import DaemonError, KeyringError, LabrouterError
from ..core.peers import NodeState, Peer, PeerTable, ServerState, peer_to_dict
from .control import ControlServer
from .lock import InstanceLock
from .paths import make_private, write_atomic
from .pause import PauseState, load_pause, running_process, save_pause, valid_until
from .services import OFF, RETRYING, UP, ServiceState, Supervisor
from .settings import Context

log = logging.getLogger(__name__)

AUTO_PAUSE_EVERY = 5.0  # seconds between process-list checks for pause_when_running
HOUSEKEEPING_EVERY = 1.0


class Service(Protocol):
    """A part that runs on the daemon's loop (the relay, the front door, ...). Built with
    what it uses by ``app/runtime.py``; started after the control channel, before gossip."""

    async def start(self) -> str | None:
        """Opens the service; where it listens ("127.0.0.1:47813"), if it listens."""
        ...

    async def stop(self) -> None: ...


@dataclass
class SelfInfo:
    """What this node says about itself besides its servers and pause state."""

    node_id: str
    name: str
    os: str
    version: str = __version__
    address: str = ""  # "": peers use the source address of our packets
    port: int = 0  # UDP port of the cluster
    relay_port: int = 0  # set by the relay service before gossip starts
    cert_fingerprint: str = ""  # set by the relay service


def os_name() -> str:
    if sys.platform == "darwin":
        return "macos"
    if sys.platform == "win32":
        return "windows"
    return "linux" if sys.platform.startswith("linux") else sys.platform


def load_node_id(path: Path) -> str:
    """This install's stable random node id (32 hex digits), created on first use."""
    try:
        text = path.read_text(encoding="utf-8").strip()
        if len(text) == 32 and all(c in "0123456789abcdef" for c in text):
            return text
    except OSError:
        pass
    node_id = secrets.token_hex(16)
    write_atomic(path, node_id + "\n")
    return node_id


class Daemon:
    def __init__(self, ctx: Context, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, monitor: Monitor | None = None,
                 seed: int | None = None) -> None:
        self.ctx = ctx
        self.config = ctx.config
        self.paths = ctx.paths
        self.clock, self.wall = clock, wall
        self.seed = seed
        make_private(self.paths)  # logs, usage, node id, pause: owner-only
        self.keyring: Keyring = load_keyring(self.paths.keyring_file)
        self._keyring_mtime = self._mtime()
        node_id = load_node_id(self.paths.node_id_file)
        self.epoch = secrets.randbits(63) | 1
        self.self_info = SelfInfo(node_id=node_id, name=self.config.node.name, os=os_name(),
                                  port=self.config.cluster.port)
        self.table = PeerTable(interval=self.config.cluster.interval)
        self.in_flight: dict[str, int] = {}
        self.monitor = monitor or Monitor(self.config.servers, self.config.timeouts)
        self.servers: list[ServerState] = list(self.monitor.states)
        self.pause_state: PauseState = load_pause(self.paths.pause_file, wall())
        self.control = ControlServer(self.paths)
        self.gossip: GossipService | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.started_at = 0.0
        # (service, its supervisor when it is one the user should see as up or not)
        self._services: list[tuple[Service, Supervisor | None]] = []
        self._started_services: list[Service] = []
        self._gossip_sup = Supervisor("gossip", self._open_gossip, wall=self.wall,
                                      on_change=self._service_changed)
        self._callbacks: list[Callable[[], None]] = []
        self._stop: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._lock = InstanceLock(self.paths.lock_file)
        self._last_auto_check = -1e9
        self._register_control()
        self._refresh_self()

    # ------------------------------------------------------------ public API

    @property
    def node_id(self) -> str:
        return self.self_info.node_id

    def add_service(self, svc: Service, name: str = "", off: str = "") -> None:
        """Started (in order) after the control channel, before gossip; stopped in reverse.

        A ``name``d service is shown in `status` (up, retrying, failed, or ``off`` with
        this reason when the config turns it off) and retried with backoff while its port
        is taken; an unnamed one is internal and started once."""
        sup = None
        if name:
            async def open_it() -> str:
                return await svc.start() or ""

            sup = Supervisor(name, open_it, wall=self.wall, on_change=self._service_changed)
            if off:
                sup.off(off)
        self._services.append((svc, sup))

    def service_states(self) -> list[ServiceState]:
        """The control channel, gossip and every named service, as they are now."""
        control = ServiceState("control", UP, f"127.0.0.1:{self.control.port}",
                               self.wall()) if self.control.port else ServiceState(
                               "control", "starting")
        return [control, self._gossip_sup.state,
                *(sup.state for _, sup in self._services if sup is not None)]

    def on_change(self, callback: Callable[[], None]) -> None:
        """Called on the loop whenever the table (or this node's own state) changes."""
        self._callbacks.append(callback)

    def snapshot(self) -> list[Peer]:
        """Every peer, this machine first (a copy; safe from any thread)."""
        if self._on_loop_thread():
            self._refresh_self()
            return self.table.snapshot()
        for _ in range(5):  # another thread: read only; retry if the loop resized the dict
            try:
                others = [p for p in list(self.table.peers.values()) if not p.is_self]
                break
            except RuntimeError:
                continue
        else:
            others = []
        return [self._self_peer(), *sorted(others, key=lambda p: (p.name, p.node_id))]

    def _on_loop_thread(self) -> bool:
        loop = self.loop
        if loop is None or loop.is_closed() or not loop.is_running():
            return True
        try:
            return asyncio.get_running_loop() is loop
        except RuntimeError:
            return False

    def announce_now(self) -> None:
        self._threadsafe(self._announce_now)

    def pause(self, reason: str = "", until: float | None = None, auto: bool = False) -> None:
        self._threadsafe(self._pause, reason, until, auto)

    def resume(self) -> None:
        self._threadsafe(self._resume)

    def suspect_servers(self) -> set[tuple[str, str]]:
        """(node id, server id) of servers that failed a request lately (passive health)."""
        return set(self.table.server_suspect)

    def report_failure(self, node_id: str, server_id: str) -> None:
        """Passive health: a request to that server failed as if it were down."""
        self._threadsafe(self.table.server_failed, node_id, server_id, self.clock())

    def request_stop(self) -> None:
        self._threadsafe(self._request_stop)

    # ------------------------------------------------------------ running

    def run_headless(self) -> int:
        """Run on this (main) thread until SIGTERM, SIGINT or a `stop` command."""
        try:
            asyncio.run(self.serve(install_signals=True))
        except KeyboardInterrupt:
            pass
        return 0

    def start_in_thread(self, timeout: float = 30.0) -> threading.Thread:
        """Run the loop on a worker thread (for the tray). Returns once it is serving."""
        def target() -> None:
            try:
                asyncio.run(self.serve(install_signals=False))
            except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
                self._startup_error = exc
                self._ready.set()

        self._thread = threading.Thread(target=target, name="labrouter-loop", daemon=True)
        self._thread.start()
        self._ready.wait(timeout)
        if self._startup_error is not None:
            raise self._startup_error
        return self._thread

    run_in_thread = start_in_thread

    def stop(self, timeout: float = 10.0) -> None:
        """Stop a daemon started with start_in_thread (any thread), and wait for it."""
        self.request_stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    async def serve(self, install_signals: bool = False) -> None:
        """Start everything, run until asked to stop, then stop cleanly with a goodbye."""
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._lock.acquire()
        try:
            await self._start()
            if install_signals:
                self._install_signals()
            self._ready.set()
            await self._stop.wait()
        finally:
            await self._shutdown()
            self._lock.release()

    # ------------------------------------------------------------ internals

    def _threadsafe(self, fn: Callable[..., None], *args: object) -> None:
        if self._on_loop_thread():
            fn(*args)
        else:
            assert self.loop is not None
            self.loop.call_soon_threadsafe(fn, *args)

    def _install_signals(self) -> None:
        assert self.loop is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self.loop.add_signal_handler(sig, self._request_stop)
            except (NotImplementedError, RuntimeError, ValueError):
                # Windows: the handler runs between bytecodes, hand it to the loop
                signal.signal(sig, lambda *_: self.request_stop())

    def _request_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    async def _start(self) -> None:
        self.started_at = self.clock()
        log.info("labrouter %s starting: node %s (%s), epoch %x, home %s", __version__,
                 self.self_info.name, self.node_id[:8], self.epoch, self.paths.data_dir)
        if self.pause_state.paused:
            log.info("still paused from before (%s)", self.pause_state.reason or "no reason")
        await self.control.start()
        for svc, sup in self._services:
            if sup is not None:
                # a port in use must not take the daemon and the cluster down with it: the
                # supervisor says so and tries again until the port is free
                if sup.state.state != OFF:
                    await sup.start()
                continue
            try:
                await svc.start()
            except (LabrouterError, OSError) as exc:
                hint = exc.hint if isinstance(exc, LabrouterError) else ""
                log.error("%s not started: %s%s", type(svc).__name__, exc,
                          f" ({hint})" if hint else "")
                continue
            self._started_services.append(svc)
        await self._poll_servers()
        await self._start_gossip()
        self._tasks = [asyncio.create_task(self._monitor_loop(), name="monitor"),
                       asyncio.create_task(self._housekeeping_loop(), name="housekeeping")]
        log.info("ready; control channel on 127.0.0.1:%d", self.control.port)

    async def _start_gossip(self) -> None:
        if self.keyring.active_key is None:
            log.warning(
                "no cluster key: serving only this machine. To join a cluster, run "
                "`labrouter key export` on a machine of it and `labrouter join CODE` here; "
                "to start a cluster, run `labrouter init`.")
            self._gossip_sup.off("no cluster key: this machine works alone")
            return
        if self._gossip_sup.state.state not in (UP, RETRYING):
            await self._gossip_sup.start()

    async def _open_gossip(self) -> str:
        cl = self.config.cluster
        node = GossipNode(self.node_id, self.epoch, keys=self._keys,
                          active_key=lambda: self.keyring.active_key, table=self.table,
                          self_peer=self._self_peer, interval=cl.interval)
        opts = TransportOptions(bind=cl.bind, port=cl.port, broadcast=cl.broadcast,
                                multicast6=cl.multicast6, peers=cl.peers)
        svc = GossipService(node, opts, self.clock, self.wall, on_change=self._changed,
                            seed=self.seed)
        try:
            await svc.start()
        except OSError as exc:
            raise DaemonError(
                f"cannot open the cluster port {cl.bind}:{cl.port}/udp: {exc.strerror or exc}",
                hint="Another program uses it, or the address is not on this machine; set "
                     "[cluster] port or bind in the config.") from None
        self.gossip = svc
        self.self_info.port = svc.transport.local_port
        log.info("cluster key %s; announcing on %s:%d/udp every %.2g s%s%s",
                 fingerprint(self.keyring.active_key or b""), cl.bind,
                 self.self_info.port, cl.interval, " (broadcast)" if cl.broadcast else "",
                 f", peers {', '.join(cl.peers)}" if cl.peers else "")
        return f"{cl.bind}:{self.self_info.port}/udp"

    def _service_changed(self, state: ServiceState) -> None:
        # the tray shows the services: tell it, on the loop (supervisors run there)
        self._changed()

    def _keys(self) -> dict[bytes, bytes]:
        return self.keyring.by_id()

    async def _shutdown(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        if self.gossip is not None:
            with contextlib.suppress(Exception):
                await self.gossip.stop(goodbye=True)
            self.gossip = None
        await self._gossip_sup.stop()
        for svc, sup in reversed(self._services):
            if sup is not None:
                await sup.stop()
            if (svc in self._started_services) if sup is None else sup.started:
                try:
                    await svc.stop()
                except Exception:  # noqa: BLE001
                    log.exception("a service failed to stop")
        self._started_services = []
        await self.control.stop()
        with contextlib.suppress(Exception):
            await self.monitor.aclose()
        log.info("stopped")

    def _self_peer(self) -> Peer:
        ps = self.pause_state
        servers = tuple(replace(s, in_flight=self.in_flight.get(s.id, 0)) for s in self.servers)
        si = self.self_info
        return Peer(node_id=si.node_id, name=si.name, state=NodeState.ALIVE, is_self=True,
                    address=si.address, port=si.port, relay_port=si.relay_port,
                    cert_fingerprint=si.cert_fingerprint, servers=servers,
                    paused=ps.paused, pause_reason=ps.reason, paused_until=ps.until,
                    os=si.os, version=si.version, in_flight=sum(self.in_flight.values()),
                    epoch=self.epoch, interval=self.config.cluster.interval,
                    since=self.started_at, last_seen=self.clock())

    def _refresh_self(self) -> None:
        self.table.set_self(self._self_peer())

    def _changed(self) -> None:
        for cb in list(self._callbacks):
            try:
                cb()
            except Exception:  # noqa: BLE001
                log.exception("an on_change callback failed")

    def _announce_now(self) -> None:
        self._refresh_self()
        if self.gossip is not None:
            self.gossip.announce_now()
        self._changed()

    async def _poll_servers(self) -> bool:
        new = await self.monitor.poll()
        key = [(s.id, s.up, s.loaded, s.degraded, tuple(m.name for m in s.models))
               for s in new]
        old = [(s.id, s.up, s.loaded, s.degraded, tuple(m.name for m in s.models))
               for s in self.servers]
        self.servers = list(new)
        if key != old:
            self._announce_now()
            return True
        return False

    async def _monitor_loop(self) -> None:
        iv = self.config.cluster.interval
        while True:
            await asyncio.sleep(iv)
            try:
                await self._poll_servers()
            except Exception:  # noqa: BLE001
                log.exception("monitor poll failed")

    async def _housekeeping_loop(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_EVERY)
            try:
                await self._housekeeping()
            except Exception:  # noqa: BLE001
                log.exception("housekeeping failed")

    async def _housekeeping(self) -> None:
        ps = self.pause_state
        if ps.expired(self.wall()):
            log.info("pause ended (its until-time passed)")
            self._resume()
        names = self.config.node.pause_when_running
        now = self.clock()
        if names and now - self._last_auto_check >= AUTO_PAUSE_EVERY:
            self._last_auto_check = now
            proc = await asyncio.to_thread(running_process, names)
            if proc and not self.pause_state.paused:
                self._pause(f"{proc} is running", None, auto=True)
            elif not proc and self.pause_state.paused and self.pause_state.auto:
                log.info("auto-pause lifted: no process of %s runs", ", ".join(names))
                self._resume()
        mtime = self._mtime()
        if mtime != self._keyring_mtime:
            self._keyring_mtime = mtime
            try:
                self.keyring = load_keyring(self.paths.keyring_file)
                log.info("keyring reloaded; active key %s",
                         fingerprint(self.keyring.active_key) if self.keyring.active_key
                         else "none")
            except KeyringError as exc:
                log.warning("keyring not reloaded: %s", exc)
            if self.gossip is None and self.keyring.active_key is not None:
                await self._start_gossip()

    def _mtime(self) -> float:
        try:
            return self.paths.keyring_file.stat().st_mtime
        except OSError:
            return 0.0

    def _pause(self, reason: str, until: float | None, auto: bool = False) -> None:
        self.pause_state = PauseState(True, reason, until, auto)
        save_pause(self.paths.pause_file, self.pause_state)
        try:
            when = f" until {time.strftime('%Y-%m-%d %H:%M', time.localtime(until))}" \
                if until else ""
        except (OverflowError, OSError, ValueError):  # Windows: no dates after the year 3000
            when = f" until {until:.0f}"
        log.info("paused%s%s", f": {reason}" if reason else "", when)
        self._announce_now()
        if self.config.node.unload_on_pause and self.loop is not None:
            self.loop.create_task(self._unload())

    async def _unload(self) -> None:
        names = await self.monitor.unload_all()
        if names:
            log.info("unloaded %s for the pause", ", ".join(names))
            await self._poll_servers()

    def _resume(self) -> None:
        was = self.pause_state.paused
        self.pause_state = PauseState()
        save_pause(self.paths.pause_file, self.pause_state)
        if was:
            log.info("resumed")
        self._announce_now()

    # ------------------------------------------------------------ control channel

    def _register_control(self) -> None:
        c = self.control
        c.register("status", lambda req: self.status())
        c.register("nodes", lambda req: {
            "now": self.clock(), "wall": self.wall(),
            "nodes": [peer_to_dict(p) for p in self.snapshot()]})
        c.register("pause", self._control_pause)
        c.register("resume", self._control_resume)
        c.register("report_failure", self._control_failure)
        c.register("stop", self._control_stop)

    def _control_resume(self, req: dict[str, Any]) -> dict[str, Any]:
        self._resume()
        return self.status()

    def _control_stop(self, req: dict[str, Any]) -> dict[str, Any]:
        assert self.loop is not None
        self.loop.call_later(0.05, self._request_stop)  # after the answer went out
        return {"stopping": True, "pid": os.getpid()}

    def _control_pause(self, req: dict[str, Any]) -> dict[str, Any]:
        until = req.get("until")
        if until is not None and (isinstance(until, bool) or not isinstance(until, (int, float))
                                  or not valid_until(until)):
            # checked before anything changes: a pause saved with an until-time that cannot
            # be announced (Infinity, NaN) would silence this node to its peers
            raise LabrouterError("until must be a time in Unix seconds, before the year 10000")
        self._pause(str(req.get("reason", ""))[:200], float(until) if until else None)
        return self.status()

    def _control_failure(self, req: dict[str, Any]) -> dict[str, Any]:
        node = str(req.get("node_id", ""))
        server = str(req.get("server_id", req.get("server", "")))
        if node in ("", "local"):
            node = self.node_id
        self.table.server_failed(node, server, self.clock())
        return {"node_id": node, "server_id": server, "suspect": True}

    def status(self) -> dict[str, Any]:
        self._refresh_self()
        counts: dict[str, int] = {}
        for p in self.table.peers.values():
            if not p.is_self:
                counts[p.state.value] = counts.get(p.state.value, 0) + 1
        ps = self.pause_state
        key = self.keyring.active_key
        g = self.gossip
        return {
            "node_id": self.node_id, "name": self.self_info.name, "pid": os.getpid(),
            "version": __version__, "epoch": self.epoch,
            "uptime": round(self.clock() - self.started_at, 1),
            "cluster": g is not None, "key": fingerprint(key) if key else "",
            "port": self.self_info.port if g else 0,
            "paused": ps.paused, "pause_reason": ps.reason, "paused_until": ps.until,
            "auto_paused": ps.auto, "pause_damaged": ps.damaged,
            "nodes": counts,
            "servers": [{"id": s.id, "up": s.up, "models": len(s.models),
                         "loaded": list(s.loaded), "error": s.error} for s in self.servers],
            "in_flight": sum(self.in_flight.values()),
            "drops": g.node.drops() if g else {},
            "traffic": vars(g.stats).copy() if g else {},
            "services": [s.as_dict() for s in self.service_states()],
        }

