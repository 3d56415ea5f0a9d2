"""The relay's listening socket, made to survive strangers: limits before TLS and headers.

The relay listens on every interface, so anyone on the LAN can open connections, key or
no key. aiohttp alone keeps a connection that never finishes its headers for as long as
it stays open, and each TLS connection costs a file handle and a few hundred KiB; about a
thousand of them used to exhaust the default file-handle limit and take the daemon down.

Owns ``GuardedListener``: it accepts connections itself and, *before* the TLS handshake,
refuses a source address over ``per_source`` open connections; at ``total`` it refuses an
address that holds ``per_source_when_full`` already, and makes room for any other by
closing, of the source with the most such connections, the oldest one that has not yet
sent a whole request head (a stranger holding a slot), else refuses. Every connection
must finish its TLS handshake and its first request's headers within ``header_timeout``
or is closed; idle keep-alive is aiohttp's ``keepalive_timeout`` (``RelaySite`` sets it). Also owns
``raise_open_file_limit()``: the soft RLIMIT_NOFILE raised towards the hard one at start.

Must not import app/, cluster/ or desktop packages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

HEAD_END = b"\r\n\r\n"
MAX_HEAD = 64 * 1024  # bytes looked at for the end of the first request head


@dataclass(frozen=True)
class ConnectionLimits:
    per_source: int = 32  # open connections from one address (a busy peer uses a few)
    total: int = 256  # open connections in all (far below the file-handle limit)
    per_source_when_full: int = 4  # at ``total``, an address holding this many is refused
    header_timeout: float = 5.0  # TLS handshake + the first request's headers, seconds
    keepalive: float = 20.0  # idle keep-alive (the relay client's own is 15 s)


@dataclass
class ListenerStats:
    accepted: int = 0
    refused_source: int = 0  # over per_source
    refused_total: int = 0  # at total with nothing to evict
    evicted: int = 0  # closed to make room
    timed_out: int = 0  # no request head in time
    handshake_failed: int = 0


@dataclass(eq=False)
class _Conn:
    source: str
    opened: float
    sock: socket.socket
    task: asyncio.Task[None] | None = None
    transport: asyncio.BaseTransport | None = None
    started: bool = False  # asyncio owns the socket from here on: never close it ourselves
    headed: bool = False  # a whole request head arrived: a client, not a stranger (yet)
    head: bytearray = field(default_factory=bytearray)
    timer: asyncio.TimerHandle | None = None
    closed: bool = False


class _Tracked(asyncio.Protocol):
    """Wraps aiohttp's protocol for one connection: watches for the first request head."""

    def __init__(self, owner: GuardedListener, conn: _Conn, inner: Any) -> None:
        self.owner, self.conn, self.inner = owner, conn, inner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.conn.transport = transport
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        c = self.conn
        if not c.headed:
            c.head += data[:MAX_HEAD]
            if HEAD_END in c.head:
                c.headed = True
                c.head = bytearray()
            elif len(c.head) >= MAX_HEAD:
                c.head = c.head[-3:]  # aiohttp refuses a head this long itself
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()  # type: ignore[no-any-return]

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self.inner.connection_lost(exc)
        finally:
            self.owner._release(self.conn)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


def _source(addr: Any) -> str:
    host = str(addr[0]) if isinstance(addr, tuple) and addr else str(addr)
    return host.removeprefix("::ffff:")  # an IPv4 peer on a dual-stack socket


class GuardedListener:
    """Accepts TCP connections for ``factory`` (aiohttp's server) under ``limits``."""

    def __init__(self, factory: Callable[[], Any], ssl_context: ssl.SSLContext | None,
                 limits: ConnectionLimits | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.factory = factory
        self.ssl_context = ssl_context
        self.limits = limits or ConnectionLimits()
        self.clock = clock
        self.stats = ListenerStats()
        self.conns: list[_Conn] = []  # oldest first
        self.by_source: Counter[str] = Counter()
        self._socks: list[socket.socket] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._refusals_logged: dict[str, float] = {}

    async def start(self, host: str | list[str] | None, port: int) -> int:
        """Listen on ``host`` (None: every interface, IPv4 and IPv6); returns the port."""
        hosts = host if isinstance(host, list) else [host]
        bound = port
        for h in hosts:
            self._socks.append(self._listen(h, bound))
            bound = int(self._socks[-1].getsockname()[1])
        for s in self._socks:
            self._tasks.append(asyncio.create_task(self._accept_loop(s), name="relay-accept"))
        return bound

    def _listen(self, host: str | None, port: int) -> socket.socket:
        if host in (None, "", "::") and socket.has_dualstack_ipv6():
            return socket.create_server(("", port), family=socket.AF_INET6,
                                        dualstack_ipv6=True, backlog=512)
        if host in (None, ""):
            host = "0.0.0.0"
        family = socket.AF_INET6 if ":" in str(host) else socket.AF_INET
        # SO_REUSEADDR as asyncio does on Unix; never on Windows (another program could
        # take the port over)
        return socket.create_server((host, port), family=family, backlog=512,
                                    reuse_port=False)

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks = []
        for s in self._socks:
            s.close()
        self._socks = []
        for c in list(self.conns):
            self._drop(c)

    async def _accept_loop(self, lsock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        lsock.setblocking(False)
        while True:
            try:
                sock, addr = await loop.sock_accept(lsock)
            except OSError as exc:  # EMFILE and the like: wait, do not spin
                log.warning("relay: cannot accept a connection: %s", exc)
                await asyncio.sleep(0.5)
                continue
            self._admit(sock, _source(addr))

    def _admit(self, sock: socket.socket, source: str) -> None:
        lim = self.limits
        if self.by_source[source] >= lim.per_source:
            self.stats.refused_source += 1
            self._log_refusal(source, f"more than {lim.per_source} connections")
            sock.close()
            return
        if len(self.conns) >= lim.total:
            if self.by_source[source] >= lim.per_source_when_full:
                # full, and this address holds several already: refused before any TLS
                # work (evicting for it would only trade one stranger for another)
                self.stats.refused_total += 1
                self._log_refusal(source, f"{lim.total} connections open")
                sock.close()
                return
            victim = self._victim()
            if victim is None:
                self.stats.refused_total += 1
                self._log_refusal(source, f"{lim.total} connections open")
                sock.close()
                return
            self.stats.evicted += 1
            self._drop(victim)
        conn = _Conn(source, self.clock(), sock)
        self.conns.append(conn)
        self.by_source[source] += 1
        self.stats.accepted += 1
        loop = asyncio.get_running_loop()
        conn.timer = loop.call_later(lim.header_timeout, self._deadline, conn)
        conn.task = asyncio.create_task(self._serve(conn))

    def _victim(self) -> _Conn | None:
        """The connection to close for room: of the source holding the most connections,
        its oldest one without a request head. Not simply the oldest in all: under a flood
        the strangers' connections are all young, and a peer's handshake would be first."""
        waiting = [c for c in self.conns if not c.headed]
        if not waiting:
            return None
        counts = Counter(c.source for c in waiting)
        top = max(counts, key=lambda src: counts[src])
        return next(c for c in waiting if c.source == top)

    async def _serve(self, conn: _Conn) -> None:
        loop = asyncio.get_running_loop()
        conn.started = True
        try:
            await loop.connect_accepted_socket(
                lambda: _Tracked(self, conn, self.factory()), conn.sock, ssl=self.ssl_context,
                ssl_handshake_timeout=self.limits.header_timeout if self.ssl_context else None)
        except asyncio.CancelledError:
            self._release(conn)
            raise
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            # asyncio has closed the transport and with it the socket
            self.stats.handshake_failed += 1
            log.debug("relay: TLS handshake with %s failed: %s", conn.source, exc)
            self._release(conn)

    def _deadline(self, conn: _Conn) -> None:
        if not conn.headed and not conn.closed:
            self.stats.timed_out += 1
            self._drop(conn)

    def _drop(self, conn: _Conn) -> None:
        """Close a connection wherever it is (handshake, headers, serving).

        Once asyncio has the socket, only its transport may close it: closing the socket
        under a live transport frees the file descriptor for reuse while the event loop
        still watches it.
        """
        if conn.transport is not None:
            conn.transport.abort()  # type: ignore[attr-defined]
        elif conn.task is not None and not conn.task.done():
            conn.task.cancel()  # in the handshake: asyncio closes what it made
        if not conn.started:
            with contextlib.suppress(OSError):
                conn.sock.close()
        self._release(conn)

    def _release(self, conn: _Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        if conn.timer is not None:
            conn.timer.cancel()
        with contextlib.suppress(ValueError):
            self.conns.remove(conn)
        self.by_source[conn.source] -= 1
        if self.by_source[conn.source] <= 0:
            del self.by_source[conn.source]

    def _log_refusal(self, source: str, why: str) -> None:
        # once a minute per source at most (and a bounded table): a flood must not flood
        # the log too
        now = self.clock()
        if now - self._refusals_logged.get(source, -1e9) < 60.0:
            return
        if len(self._refusals_logged) >= 256:
            self._refusals_logged.clear()
        self._refusals_logged[source] = now
        log.warning("relay: refusing connections from %s (%s)", source, why)


def raise_open_file_limit(want: int = 8192) -> tuple[int, int] | None:
    """Raise the soft RLIMIT_NOFILE towards ``want`` (never above the hard limit).

    Desktop sessions and systemd start programs at a soft limit of 1024 (launchd: 256)
    while the hard limit is far higher. Returns (old, new), or None where there is no such
    limit (Windows) or it cannot be changed.
    """
    try:
        import resource
    except ImportError:
        return None
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return soft, target
        return soft, soft
    except (OSError, ValueError) as exc:  # macOS refuses above OPEN_MAX: keep what we have
        log.debug("cannot raise the open-file limit: %s", exc)
        return None
