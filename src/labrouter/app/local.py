"""The peer table a command uses: the running daemon's live table, or a one-shot probe.

Owns ``probe_servers`` (ask each configured server what it has, never a generation
request) and ``current_peers`` (through the control channel when a daemon runs, else the
configured servers probed now), and the speed table's file.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ..core.config import ServerConfig, TimeoutConfig
from ..core.errors import BackendError
from ..core.peers import ModelInfo, Peer, ServerState, peer_from_dict, static_peers
from ..core.policy import SpeedBook
from .control import ControlClient
from .paths import write_atomic
from .settings import Context

log = logging.getLogger(__name__)

PROBE_TIMEOUTS = TimeoutConfig(connect=2.0, first_token=5.0, gap=5.0, total=5.0)


async def probe_server(server: ServerConfig, timeouts: TimeoutConfig = PROBE_TIMEOUTS
                       ) -> ServerState:
    """What one server has now. Never raises: a failure gives ``up=False`` and why."""
    from ..backends import make_backend

    state = ServerState(id=server.label, url=server.url, kind=server.kind,
                        cost_input_per_1k=server.cost_input_per_1k,
                        cost_output_per_1k=server.cost_output_per_1k,
                        api_key_env=server.api_key_env)
    backend = make_backend(server, timeouts)
    try:
        models: list[ModelInfo] = await backend.list_models()
        names = {m.name for m in models}
        models += [ModelInfo(name=m) for m in server.models if m not in names]
        loaded = await backend.loaded_models() if server.kind == "ollama" else []
        return replace(state, up=True, models=tuple(models), loaded=tuple(loaded))
    except BackendError as exc:
        return replace(state, up=False, error=str(exc))
    finally:
        await backend.aclose()


async def probe_servers(servers: Sequence[ServerConfig],
                        timeouts: TimeoutConfig = PROBE_TIMEOUTS) -> list[ServerState]:
    return list(await asyncio.gather(*(probe_server(s, timeouts) for s in servers)))


def daemon_peers(ctx: Context) -> list[Peer] | None:
    """The running daemon's table, or None when no daemon answers."""
    client = ControlClient.from_paths(ctx.paths)
    if client is None:
        return None
    try:
        reply = client.request({"cmd": "nodes"})
    except Exception as exc:  # noqa: BLE001 - any failure means: no usable daemon
        log.debug("daemon did not answer: %s", exc)
        return None
    nodes = reply.get("nodes") if isinstance(reply, dict) else None
    if not isinstance(nodes, list):
        return None
    return [peer_from_dict(n) for n in nodes]


async def current_peers(ctx: Context) -> tuple[list[Peer], str]:
    """Peers to route over and where they came from ("daemon" or "probe")."""
    peers = await asyncio.to_thread(daemon_peers, ctx)
    if peers:
        return peers, "daemon"
    servers = await probe_servers(ctx.config.servers)
    return static_peers(ctx.config.node.name, servers), "probe"


def load_speeds(path: Path) -> SpeedBook:
    try:
        return SpeedBook.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return SpeedBook()
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable speed table %s: %s", path, exc)
        return SpeedBook()


def save_speeds(path: Path, book: SpeedBook) -> None:
    try:
        write_atomic(path, json.dumps(book.to_dict(), indent=1))
    except OSError as exc:
        log.warning("could not save the speed table %s: %s", path, exc)
