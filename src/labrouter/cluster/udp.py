"""The cluster's UDP transport: sockets, targets and the per-source limit. No protocol.

Owns ``UdpTransport``: the IPv4 socket (directed broadcast on every interface that has one,
computed at each send by ``interfaces``; 255.255.255.255 as the fallback), optional IPv6
multicast, unicast to configured peers, and a per-source token bucket (``ratelimit``)
*before* any crypto. What may be sent is decided by an injected ``SendFilter``; the default
one is the ``LABROUTER_LOOPBACK_ONLY=1`` safety catch used by CI and the tests on shared
machines. Knows nothing of peers or packets beyond their bytes.
Must not import app/ or desktop packages.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import struct
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .interfaces import broadcast_addresses
from .ratelimit import TokenBuckets

log = logging.getLogger(__name__)

Addr = tuple[str, int]
#: decides whether a datagram may go to an address; False drops it (counted as filtered)
SendFilter = Callable[[Addr], bool]

MCAST6_GROUP = "ff12::4c52"  # transient, link-local scope ("LR")


def is_loopback(dest: Addr) -> bool:
    return dest[0].startswith("127.") or dest[0] == "::1"


def send_filter_from_env() -> SendFilter | None:
    """``is_loopback`` when LABROUTER_LOOPBACK_ONLY=1, else None (send anywhere).

    A safety catch for tests and CI on shared machines: no datagram leaves 127.0.0.0/8 or
    ::1, whatever the config says.
    """
    return is_loopback if os.environ.get("LABROUTER_LOOPBACK_ONLY") == "1" else None


@dataclass
class GossipStats:
    sent: int = 0
    sent_bytes: int = 0
    received: int = 0
    received_bytes: int = 0
    rate_limited: int = 0
    filtered: int = 0  # refused by the send filter
    send_errors: int = 0


def parse_peer(text: str, default_port: int) -> Addr:
    """``host``, ``host:port``, ``[v6]:port`` -> (host, port)."""
    t = text.strip()
    if t.startswith("["):
        host, _, rest = t[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if t.count(":") == 1:
        host, port = t.split(":")
        return host, int(port)
    return t, default_port


@dataclass
class TransportOptions:
    bind: str = "0.0.0.0"
    port: int = 47811
    broadcast: bool = True
    multicast6: bool = False
    peers: tuple[str, ...] = ()
    extra_targets: list[Addr] = field(default_factory=list)
    # read when the options are made, so a daemon built under LABROUTER_LOOPBACK_ONLY=1
    # keeps the catch even if nobody passes a filter
    send_filter: SendFilter | None = field(default_factory=send_filter_from_env)


class UdpTransport(asyncio.DatagramProtocol):
    """The sockets. Knows nothing of peers or packets beyond their bytes."""

    def __init__(self, opts: TransportOptions,
                 handler: Callable[[bytes, Addr], None], clock: Callable[[], float]) -> None:
        self.opts = opts
        self.handler = handler
        self.clock = clock
        self.buckets = TokenBuckets()
        self.stats = GossipStats()
        self.transport: asyncio.DatagramTransport | None = None
        self.transport6: asyncio.DatagramTransport | None = None
        self._errors_logged: set[tuple[str, int]] = set()
        self._peer_addrs: list[Addr] = []

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            if self.opts.broadcast:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.bind((self.opts.bind, self.opts.port))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self.transport, _ = await loop.create_datagram_endpoint(lambda: self, sock=sock)
        if self.opts.multicast6:
            try:
                s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
                s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s6.bind(("::", self.opts.port))
                mreq = socket.inet_pton(socket.AF_INET6, MCAST6_GROUP) + struct.pack("@I", 0)
                s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
                s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
                s6.setblocking(False)
                self.transport6, _ = await loop.create_datagram_endpoint(lambda: self, sock=s6)
            except OSError as exc:
                log.warning("IPv6 multicast is off: %s", exc)
        self._peer_addrs = await self._resolve_peers()

    async def _resolve_peers(self) -> list[Addr]:
        loop = asyncio.get_running_loop()
        out: list[Addr] = []
        for text in self.opts.peers:
            try:
                host, port = parse_peer(text, self.opts.port)
                infos = await loop.getaddrinfo(host, port, family=socket.AF_INET,
                                               type=socket.SOCK_DGRAM)
                out.extend((str(i[4][0]), int(i[4][1])) for i in infos[:1])
            except (OSError, ValueError) as exc:
                log.warning("cluster peer %r cannot be resolved: %s", text, exc)
        return out

    @property
    def local_port(self) -> int:
        if self.transport is None:
            return self.opts.port
        return int(self.transport.get_extra_info("sockname")[1])

    def close(self) -> None:
        for t in (self.transport, self.transport6):
            if t is not None:
                t.close()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        src = (str(addr[0]), int(addr[1]))
        if not self.buckets.allow(src[0], self.clock()):
            self.stats.rate_limited += 1
            return
        self.stats.received += 1
        self.stats.received_bytes += len(data)
        self.handler(data, src)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)

    def targets(self, known: Iterable[Addr] = ()) -> list[Addr]:
        out: list[Addr] = []
        if self.opts.broadcast:
            out += [(b, self.opts.port) for b in broadcast_addresses()]
        for a in [*self._peer_addrs, *self.opts.extra_targets, *known]:
            if a not in out:
                out.append(a)
        return out

    def send(self, data: bytes, dest: Addr) -> None:
        t = self.transport6 if ":" in dest[0] else self.transport
        if t is None:
            return
        if self.opts.send_filter is not None and not self.opts.send_filter(dest):
            self.stats.filtered += 1
            return
        try:
            t.sendto(data, dest)
            self.stats.sent += 1
            self.stats.sent_bytes += len(data)
        except OSError as exc:
            self.stats.send_errors += 1
            if dest not in self._errors_logged:
                self._errors_logged.add(dest)
                extra = (" (macOS: allow labrouter under System Settings > Privacy & Security"
                         " > Local Network)" if exc.errno == errno.EHOSTUNREACH and
                         sys.platform == "darwin" else "")
                log.warning("cannot send to %s:%d: %s%s", dest[0], dest[1], exc, extra)

    def send_all(self, data: bytes, known: Iterable[Addr] = ()) -> None:
        for dest in self.targets(known):
            self.send(data, dest)
        if self.transport6 is not None:
            self.send(data, (MCAST6_GROUP, self.opts.port))
