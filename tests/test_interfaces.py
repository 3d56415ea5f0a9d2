"""Broadcast discovery from psutil: the shapes each OS reports, and this machine's truth."""

from __future__ import annotations

import shutil
import socket
import subprocess
from types import SimpleNamespace

import psutil
import pytest

from labrouter.cluster import interfaces


def _addr(address: str, netmask: str | None, broadcast: str | None = None,
          ptp: str | None = None, family: int = socket.AF_INET) -> SimpleNamespace:
    return SimpleNamespace(family=family, address=address, netmask=netmask,
                           broadcast=broadcast, ptp=ptp)


def test_each_os_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    addrs = {
        "lo": [_addr("127.0.0.1", "255.0.0.0")],
        # Windows: psutil gives no broadcast address; it is computed from the netmask
        "Ethernet": [_addr("192.168.1.20", "255.255.255.0"),
                     _addr("fe80::1", None, family=socket.AF_INET6)],
        # Linux/macOS: the kernel's broadcast address is taken as it is
        "en0": [_addr("10.1.2.3", "255.255.0.0", broadcast="10.1.255.255")],
        "utun0": [_addr("100.64.0.2", "255.255.255.255", ptp="100.64.0.1")],  # VPN
        "p2p": [_addr("172.16.0.1", "255.255.255.254")],  # /31: no broadcast
        "down0": [_addr("192.168.9.9", "255.255.255.0")],
    }
    stats = {n: SimpleNamespace(isup=n != "down0") for n in addrs}
    monkeypatch.setattr(psutil, "net_if_addrs", lambda: addrs)
    monkeypatch.setattr(psutil, "net_if_stats", lambda: stats)
    assert interfaces.broadcast_addresses() == ["192.168.1.255", "10.1.255.255"]


def test_limited_broadcast_when_nothing_or_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(psutil, "net_if_addrs", dict)
    assert interfaces.broadcast_addresses() == ["255.255.255.255"]

    def refuse() -> dict[str, list[SimpleNamespace]]:
        raise OSError("denied")

    monkeypatch.setattr(psutil, "net_if_addrs", refuse)
    assert interfaces.broadcast_addresses() == ["255.255.255.255"]


@pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2")
def test_matches_what_the_kernel_says() -> None:
    """On this machine, the same directed broadcasts as `ip -4 addr` (up interfaces)."""
    out = subprocess.run(["ip", "-o", "-4", "addr", "show", "up"], capture_output=True,
                         text=True, check=True).stdout
    want = []
    for line in out.splitlines():
        words = line.split()
        if "brd" in words and words[words.index("brd") + 1] not in want:
            want.append(words[words.index("brd") + 1])
    assert sorted(interfaces.directed_broadcasts()) == sorted(want)
