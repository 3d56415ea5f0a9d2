"""The relay server: an aiohttp application that forwards to this node's own servers.

Owns the relay's HTTP API (``POST /relay/v1/{info,version,models,loaded,show,chat,unload}``,
JSON in, JSON or NDJSON out; see docs/relay.md), the key-proof check on every request
(``auth.ProofVerifier``: 401 without valid proof, replays refused), and the destination's own
rules: a paused node answers 503 with its reason, a model already serving
``max_concurrent_per_model`` relay requests answers 429, and every request being served is
counted in the host's in-flight table (which the announcements carry). Every chat served
for a peer becomes a ``UsageRecord`` with ``served_for`` = the peer's name, handed to
``on_served`` (the daemon appends it to this machine's usage log), so the owner of the
machine sees where its GPU went.

Also owns ``ollama_exposure()``, the doctor's check that Ollama listens on every interface,
which the relay makes unnecessary.

The node's state comes in through ``RelayHost`` (the daemon adapts itself in
``app/http_services.py``), so this module must not import ``app``, ``cluster`` or ``desktop``.
Timeouts towards the local servers are those of the backends the host gives (built with the
router's ``TimeoutConfig``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import math
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Protocol

import psutil
from aiohttp import web

from ..backends.base import Backend
from ..core.errors import BackendError, Refused
from ..core.usage import UsageRecord
from . import (
    RELAY_PROTOCOL,
    chunk_to_json,
    error_to_json,
    messages_from_json,
    model_to_json,
    options_from_json,
)
from .auth import ProofError, ProofVerifier
from .listener import ConnectionLimits, GuardedListener, raise_open_file_limit

log = logging.getLogger(__name__)

PREFIX = f"/relay/{RELAY_PROTOCOL}/"
#: requests carry a prompt and maybe a base64 image; 64 MiB bounds what a key holder can
#: make this node buffer; anyone else is refused from the headers, before the body is read
MAX_BODY = 64 * 1024 * 1024

_STATUS: dict[str, int] = {
    "ModelNotFound": 404, "Refused": 503, "BackendTimeout": 504, "Unreachable": 502,
    "ServerFailure": 502, "ProtocolError": 502,
}


class RelayHost(Protocol):
    """What the relay needs from the node it runs on. Called on the event loop only."""

    #: server id -> requests in flight (shared with the daemon, announced to peers)
    in_flight: MutableMapping[str, int]

    def backend(self, server_id: str) -> Backend | None:
        """A backend for one of this node's own servers, or None when there is no such id."""
        ...

    def server_ids(self) -> list[str]: ...

    def paused(self) -> str | None:
        """None when the node takes work; else the reason it is paused (may be "")."""
        ...

    def in_flight_changed(self) -> None:
        """Called after every change of ``in_flight`` (the daemon may announce sooner)."""
        ...


class RefusalLog:
    """Refused requests, logged once per source per ``every`` seconds with a count.

    One WARNING per refused request let a single client erase the log's history in
    minutes. Bounded: at most ``max_sources`` sources are remembered.
    """

    def __init__(self, every: float = 60.0, max_sources: int = 256,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.every, self.max_sources, self.clock = every, max_sources, clock
        #: source -> (when last logged, refusals since, last reason)
        self.sources: dict[str, tuple[float, int, str]] = {}

    def refused(self, source: str, reason: str) -> None:
        now = self.clock()
        last, count, _ = self.sources.get(source, (-math.inf, 0, ""))
        count += 1
        if now - last < self.every:
            self.sources[source] = (last, count, reason)
            return
        if source not in self.sources and len(self.sources) >= self.max_sources:
            self.sources.pop(next(iter(self.sources)))
        if count > 1:
            log.warning("relay: refused %d requests from %s in the last %.0f s (last: %s)",
                        count, source, now - last, reason)
        else:
            log.warning("relay: refused a request from %s: %s", source, reason)
        self.sources[source] = (now, 0, reason)


@web.middleware
async def _close_on_http_error(request: web.Request,
                               handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                               ) -> web.StreamResponse:
    """Unknown paths and methods: a JSON error and the connection closed (no slot held)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        resp = _error(exc.status, "ProtocolError", exc.reason)
        resp.force_close()
        return resp


#: what a served request's record may carry from the peer's claims (names, a route)
_NAME_MAX = 64


def _claimed(value: Any) -> str:
    """A name the peer sent, fit for a log line: a short string without control
    characters, else "" (the peer holds the cluster key, but its text is still input)."""
    if not isinstance(value, str):
        return ""
    text = "".join(ch for ch in value if ch.isprintable()).strip()
    return text[:_NAME_MAX]


def _error(status: int, kind: str, message: str, hint: str = "") -> web.Response:
    return web.json_response({"error": {"type": kind, "message": message, "hint": hint}},
                             status=status)


def _backend_error(exc: BackendError) -> web.Response:
    body = error_to_json(exc)
    return web.json_response(body, status=_STATUS.get(body["error"]["type"], 502))


class RelayServer:
    """Builds the aiohttp application for one node's relay."""

    def __init__(self, host: RelayHost, verifier: ProofVerifier,
                 max_concurrent_per_model: int = 2,
                 clock: Callable[[], float] = time.time,
                 on_served: Callable[[UsageRecord], None] | None = None,
                 node_name: str = "",
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.host = host
        self.verifier = verifier
        self.max_per_model = max_concurrent_per_model
        self.clock = clock  # wall clock: the proof's timestamp is compared with it
        self.on_served = on_served
        self.node_name = node_name  # this machine's name, for the served records
        self.monotonic = monotonic
        #: (server id, model) -> relay requests being served now
        self.active: dict[tuple[str, str], int] = {}
        self.refusals = RefusalLog(clock=time.monotonic)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[_close_on_http_error])
        for name in ("info", "version", "models", "loaded", "show", "unload"):
            app.router.add_post(PREFIX + name, self._authed(self._simple))
        app.router.add_post(PREFIX + "chat", self._authed(self._chat))
        return app

    # ------------------------------------------------------------ authentication

    def _authed(self, handler: Callable[[web.Request, dict[str, Any]],
                                        Awaitable[web.StreamResponse]]
                ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def checked(request: web.Request) -> web.StreamResponse:
            data = await self._authenticate(request)
            if isinstance(data, web.Response):
                return data
            return await handler(request, data)

        return checked

    async def _authenticate(self, request: web.Request) -> dict[str, Any] | web.Response:
        """The request's JSON body once its key proof checks out, else the error to send."""
        headers: Mapping[str, str] = request.headers
        try:
            # the proof covers the body's digest, which travels in a header: a stranger is
            # refused before any of the body is read, so only key holders can make this
            # node buffer up to MAX_BODY
            self.verifier.check_headers(request.method, request.raw_path, headers,
                                        self.clock())
            body = await request.read()
            self.verifier.check_body(headers, body)
        except ProofError as exc:
            self.refusals.refused(request.remote or "?", exc.reason)
            resp = _error(401, "Unauthorized", exc.reason,
                          "Both machines need the same cluster key (compare `labrouter key "
                          "show` on each) and clocks that agree within a minute.")
            resp.force_close()  # a stranger gets no kept-alive connection to hold
            return resp
        except web.HTTPRequestEntityTooLarge:
            resp = _error(413, "ProtocolError", "request body too large")
            resp.force_close()
            return resp
        try:
            data = json.loads(body) if body else {}
        except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested deep
            return _error(400, "ProtocolError", "the request body is not JSON")
        if not isinstance(data, dict):
            return _error(400, "ProtocolError", "the request body must be a JSON object")
        return data

    # ------------------------------------------------------------ handlers

    def _backend(self, data: dict[str, Any]) -> Backend | web.Response:
        server_id = data.get("server")
        if not isinstance(server_id, str):
            return _error(400, "ProtocolError", "no server id in the request")
        backend = self.host.backend(server_id)
        if backend is None:
            return _error(404, "Unreachable", f"this node has no server {server_id!r}",
                          "The peer's announcement is out of date; it refreshes by itself.")
        return backend

    async def _simple(self, request: web.Request, data: dict[str, Any]) -> web.StreamResponse:
        action = request.path.rsplit("/", 1)[-1]
        if action == "info":
            paused = self.host.paused()
            return web.json_response({"protocol": RELAY_PROTOCOL,
                                      "servers": self.host.server_ids(),
                                      "paused": paused is not None,
                                      "reason": paused or ""})
        backend = self._backend(data)
        if isinstance(backend, web.Response):
            return backend
        model = data.get("model")
        try:
            if action == "version":
                return web.json_response({"version": await backend.version()})
            if action == "models":
                models = await backend.list_models()
                return web.json_response({"models": [model_to_json(m) for m in models]})
            if action == "loaded":
                return web.json_response({"loaded": await backend.loaded_models()})
            if not isinstance(model, str) or not model:
                return _error(400, "ProtocolError", "no model in the request")
            if action == "show":
                return web.json_response({"model": model_to_json(await backend.show(model))})
            await backend.unload(model)
            return web.json_response({})
        except BackendError as exc:
            return _backend_error(exc)

    async def _chat(self, request: web.Request, data: dict[str, Any]) -> web.StreamResponse:
        reason = self.host.paused()
        if reason is not None:
            # the destination enforces its own pause: a peer with an old table still ends here
            return _backend_error(Refused(
                "paused" + (f": {reason}" if reason else ""),
                hint="This machine is paused; labrouter tries the next candidate."))
        backend = self._backend(data)
        if isinstance(backend, web.Response):
            return backend
        model = data.get("model")
        if not isinstance(model, str) or not model:
            return _error(400, "ProtocolError", "no model in the request")
        try:
            messages = messages_from_json(data.get("messages"))
            options = options_from_json(data.get("options"))
        except (ValueError, TypeError) as exc:
            return _error(400, "ProtocolError", f"bad chat request: {exc}")
        server_id: str = data["server"]
        key = (server_id, model)
        if self.active.get(key, 0) >= self.max_per_model:
            return web.json_response(
                {"error": {"type": "Refused",
                           "message": f"{model} is busy ({self.max_per_model} requests running)",
                           "hint": "Raise [relay] max_concurrent_per_model on that machine."}},
                status=429)
        self.active[key] = self.active.get(key, 0) + 1
        self.host.in_flight[server_id] = self.host.in_flight.get(server_id, 0) + 1
        self.host.in_flight_changed()
        served = _Served(self.clock(), self.monotonic(), server_id, model,
                         self._peer_name(request, data), _claimed(data.get("route")))
        try:
            return await self._stream(request, backend, model, messages, options, served)
        finally:
            self._log_served(served)
            self.active[key] -= 1
            if not self.active[key]:
                del self.active[key]
            left = self.host.in_flight.get(server_id, 1) - 1
            if left > 0:
                self.host.in_flight[server_id] = left
            else:
                self.host.in_flight.pop(server_id, None)
            self.host.in_flight_changed()

    def _peer_name(self, request: web.Request, data: Mapping[str, Any]) -> str:
        """Who asked: the name the peer sent, else what the host knows of its address,
        else the address itself (an older peer sends no name)."""
        claim = data.get("for")
        name = _claimed(claim.get("node")) if isinstance(claim, dict) else _claimed(claim)
        if name:
            return name
        address = request.remote or ""
        lookup = getattr(self.host, "peer_name", None)
        if lookup is not None and address:
            with contextlib.suppress(Exception):
                name = _claimed(lookup(address))
        return name or address or "?"

    def _log_served(self, served: _Served) -> None:
        if self.on_served is None:
            return
        end = self.monotonic()
        text_tokens = max(1, served.chars // 4) if served.chars else 0  # no usage came
        try:
            self.on_served(UsageRecord(
                ts=served.ts, route=served.route, node=self.node_name,
                server=served.server, model=served.model, outcome=served.outcome,
                prompt_tokens=served.prompt_tokens,
                completion_tokens=served.completion_tokens or text_tokens,
                ttft_ms=round(((served.first or end) - served.start) * 1000, 1),
                duration_ms=round((end - served.start) * 1000, 1), source="relay",
                classified_route=served.route, finish_reason=served.finish_reason,
                served_for=served.peer))
        except Exception:  # noqa: BLE001 - a lost log line must not break the relay
            log.exception("relay: could not log a request served for %s", served.peer)

    async def _stream(self, request: web.Request, backend: Backend, model: str,
                      messages: Any, options: Any, served: _Served) -> web.StreamResponse:
        stream = backend.chat(model, messages, options)
        it = aiter(stream)
        served.outcome = "cancelled"  # until the answer's last chunk went out
        try:
            # wait for the first chunk before sending headers, so an error before any text
            # (no such model, server down, load timeout) travels as a proper HTTP status
            try:
                first = await anext(it)
            except StopAsyncIteration:
                first = None
            except BackendError as exc:
                served.outcome, served.finish_reason = "failed", "error"
                return _backend_error(exc)
            served.first = self.monotonic()
            resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson",
                                               "Cache-Control": "no-store"})
            await resp.prepare(request)
            try:
                if first is not None:
                    served.add(first)
                    await resp.write(_line(chunk_to_json(first)))
                    try:
                        async for chunk in it:
                            served.add(chunk)
                            await resp.write(_line(chunk_to_json(chunk)))
                    except BackendError as exc:
                        # headers are gone: the error travels as the last line, Ollama-style
                        served.outcome, served.finish_reason = "failed", "error"
                        await resp.write(_line(error_to_json(exc)))
                await resp.write_eof()
                if served.outcome == "cancelled":
                    served.outcome = "ok"
            except ConnectionResetError:
                # the client went away mid-answer; closing the stream below stops upstream
                log.debug("relay: client %s went away mid-answer", request.remote)
                served.finish_reason = "cancelled"
            return resp
        finally:
            # closing the stream early (client gone, error) aborts the upstream request,
            # which makes Ollama stop generating or loading
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()


class _Served:
    """What the relay learns of one chat it serves for a peer, for its usage record."""

    def __init__(self, ts: float, start: float, server: str, model: str, peer: str,
                 route: str) -> None:
        self.ts, self.start, self.server, self.model = ts, start, server, model
        self.peer, self.route = peer, route
        self.first: float | None = None
        self.outcome = "failed"
        self.finish_reason = ""
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.chars = 0

    def add(self, chunk: Any) -> None:
        self.chars += len(chunk.text)
        if chunk.done:
            self.prompt_tokens = chunk.prompt_tokens or 0
            self.completion_tokens = chunk.completion_tokens or 0
            self.finish_reason = chunk.done_reason or "stop"


def _line(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


class Site:
    """An aiohttp app listening on ``host:port`` inside the current event loop.

    Shared by the relay and the front door: both cancel a handler whose client went away
    (``handler_cancellation``), which closes the upstream stream, so a dropped request
    stops the model instead of letting it generate for nobody.
    """

    def __init__(self, app: web.Application, host: str | None, port: int,
                 ssl_context: Any = None) -> None:
        self.app = app
        self.host = host  # None: every interface
        self.port = port
        self.ssl_context = ssl_context
        self.runner: web.AppRunner | None = None

    async def start(self) -> int:
        """Start listening; returns the bound port (useful when ``port`` is 0)."""
        self.runner = web.AppRunner(self.app, handler_cancellation=True, access_log=None)
        await self.runner.setup()
        # reuse_address left to asyncio: on by default on Unix, and never on Windows, where
        # SO_REUSEADDR would let another program take over the port
        site = web.TCPSite(self.runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        return int(sockets[0].getsockname()[1]) if sockets else self.port

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


class RelaySite(Site):
    """Runs a ``RelayServer`` on a TLS socket; ``host`` None listens where peers reach it.

    Connections come in through ``listener.GuardedListener`` (limits per source and in
    all, before the TLS handshake; a deadline for the handshake and the first request
    head), and aiohttp keeps an idle connection only ``limits.keepalive`` seconds.
    """

    def __init__(self, server: RelayServer, ssl_context: Any, port: int,
                 host: str | None = None,
                 limits: ConnectionLimits | None = None) -> None:
        super().__init__(server.app(), host, port, ssl_context)
        self.server = server
        self.limits = limits or ConnectionLimits()
        self.listener: GuardedListener | None = None

    async def start(self) -> int:
        changed = raise_open_file_limit()
        if changed and changed[0] != changed[1]:
            log.info("open-file limit raised from %d to %d", *changed)
        self.runner = web.AppRunner(
            self.app, handler_cancellation=True, access_log=None,
            keepalive_timeout=self.limits.keepalive, lingering_time=2.0,
            max_line_size=8190, max_field_size=8190)
        await self.runner.setup()
        server = self.runner.server
        assert server is not None
        self.listener = GuardedListener(server, self.ssl_context, self.limits)
        try:
            return await self.listener.start(self.host, self.port)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self.listener is not None:
            await self.listener.close()
            self.listener = None
        await super().stop()


# ------------------------------------------------------------------ doctor check

_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
_WILDCARD_HOSTS = {"0.0.0.0", "::", "[::]", "*", ""}


def _host_of(ollama_host: str) -> tuple[str, int]:
    text = ollama_host.strip()
    text = re.sub(r"^https?://", "", text).split("/", 1)[0]
    port = 11434
    if text.startswith("["):  # [::]:11434
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
        return host, port
    if text.count(":") == 1:
        host, _, p = text.partition(":")
        if p.isdigit():
            port = int(p)
        return host, port
    return text, port


def listening_addresses(port: int) -> list[str]:
    """Local addresses with a TCP socket listening on ``port`` (psutil; all three OSes).

    macOS lists every process's sockets only to root: then the processes this user may
    see are asked one by one (Ollama runs as the user).
    """
    # (local address, status) of every TCP socket we may see
    found: list[tuple[Any, str]] = []
    try:
        found = [(c.laddr, c.status) for c in psutil.net_connections(kind="tcp")]
    except psutil.AccessDenied:
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                found += [(c.laddr, c.status) for c in proc.net_connections(kind="tcp")]
    except (psutil.Error, OSError) as exc:
        log.debug("cannot list listening sockets: %s", exc)
        return []
    return sorted({str(laddr.ip) for laddr, status in found
                   if status == psutil.CONN_LISTEN and laddr and laddr.port == port})


def _exposed(addresses: list[str]) -> list[str]:
    found = []
    for a in addresses:
        ip = a.split("%", 1)[0]  # fe80::1%eth0
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            continue
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        if addr.is_unspecified:
            found.append(str(addr))
        elif not addr.is_loopback:
            found.append("a non-loopback address" if addr.version == 4
                         else "a non-loopback IPv6 address")
    return found


def ollama_exposure(url: str | None = None, *, env: Mapping[str, str] | None = None,
                    port: int | None = None,
                    listeners: Callable[[int], list[str]] = listening_addresses) -> str | None:
    """A warning when this machine's Ollama listens beyond loopback, else None.

    ``url`` is the configured Ollama URL (its port is the one checked; default 11434).
    Looks only at this machine: the ``OLLAMA_HOST`` setting and the kernel's table of
    listening sockets (``listeners``, psutil by default). It sends no traffic at all.
    """
    if port is None:
        port = _host_of(url)[1] if url else 11434
    env = os.environ if env is None else env
    why = []
    setting = env.get("OLLAMA_HOST", "").strip()
    if setting:
        host, port = _host_of(setting)
        if host in _WILDCARD_HOSTS:
            why.append(f"OLLAMA_HOST={setting} makes it listen on every network interface")
        elif host not in _LOOPBACK_HOSTS and not host.startswith("127."):
            why.append(f"OLLAMA_HOST={setting} makes it listen on {host}")
    exposed = _exposed(listeners(port))
    if exposed:
        why.append(f"port {port} is listening on {', '.join(sorted(set(exposed)))}")
    if not why:
        return None
    return ("Ollama is reachable from the network without a password ("
            + "; ".join(why) + "). labrouter's relay carries requests between machines "
            "with encryption and the cluster key, so Ollama no longer needs this: remove "
            "OLLAMA_HOST (or set it to 127.0.0.1:11434) and restart Ollama.")
