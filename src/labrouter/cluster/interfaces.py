"""This machine's network interfaces, as the UDP transport needs them: broadcast targets.

Owns ``broadcast_addresses()``: the IPv4 directed-broadcast address of every interface
that is up, not loopback and not point-to-point, from psutil (one maintained library with
wheels for Linux, macOS and Windows, instead of raw ioctls on one OS and an undeclared
import on the others). Windows reports no broadcast address, so it is computed from the
address and netmask. Must not import asyncio, app/ or desktop packages.
"""

from __future__ import annotations

import ipaddress
import logging
import socket

import psutil

log = logging.getLogger(__name__)

LIMITED_BROADCAST = "255.255.255.255"


def _broadcast_of(address: str, netmask: str | None, broadcast: str | None) -> str | None:
    if address.startswith("127."):
        return None
    if broadcast and broadcast != "0.0.0.0":
        return broadcast
    if not netmask:
        return None
    try:
        net = ipaddress.IPv4Network(f"{address}/{netmask}", strict=False)
    except ValueError:
        return None
    # /31 and /32 have no broadcast address (RFC 3021)
    return str(net.broadcast_address) if net.prefixlen < 31 else None


def directed_broadcasts() -> list[str]:
    """Directed-broadcast addresses of the up, broadcast-capable interfaces (may be empty)."""
    stats = psutil.net_if_stats()
    found: list[str] = []
    for name, addrs in psutil.net_if_addrs().items():
        st = stats.get(name)
        if st is not None and not st.isup:
            continue
        for a in addrs:
            if a.family != socket.AF_INET or a.ptp:
                continue
            b = _broadcast_of(a.address, a.netmask, a.broadcast)
            if b is not None and b not in found:
                found.append(b)
    return found


def broadcast_addresses() -> list[str]:
    """Where to broadcast: every directed broadcast, or 255.255.255.255 when there is none."""
    try:
        found = directed_broadcasts()
    except (OSError, RuntimeError) as exc:  # psutil raises these when the OS refuses
        log.debug("cannot list the network interfaces: %s", exc)
        found = []
    return found or [LIMITED_BROADCAST]
