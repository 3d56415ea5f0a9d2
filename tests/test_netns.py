"""Separate hosts: three network namespaces on a bridge, real broadcast, a cut link.

Needs root and `ip netns`; skipped with the reason otherwise. Everything (namespaces, the
bridge namespace, veth pairs, daemons) is created here and removed afterwards; the
bridge lives in its own namespace, so the host's network is never touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from labrouter.app.paths import resolve_paths, write_private
from labrouter.cluster.keys import Keyring, save_keyring

pytestmark = pytest.mark.netns

INTERVAL = 0.2
PREFIX = f"lr{os.getpid() % 100000}"
BRIDGE_NS = f"{PREFIX}br"
NODES = (1, 2, 3)


def ns(i: int) -> str:
    return f"{PREFIX}n{i}"


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=20)


def _skip_reason() -> str:
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if not shutil.which("ip"):
        return "the `ip` command (iproute2) is not installed"
    probe = f"{PREFIX}probe"
    res = sh("ip", "netns", "add", probe, check=False)
    if res.returncode != 0:
        return f"`ip netns add` failed: {res.stderr.strip()}"
    sh("ip", "netns", "del", probe, check=False)
    return ""


def _cleanup() -> None:
    for name in [ns(i) for i in NODES] + [BRIDGE_NS]:
        sh("ip", "netns", "del", name, check=False)


@pytest.fixture
def topology() -> Iterator[None]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    _cleanup()
    try:
        sh("ip", "netns", "add", BRIDGE_NS)
        sh("ip", "-n", BRIDGE_NS, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", BRIDGE_NS, "link", "set", "br0", "up")
        for i in NODES:
            sh("ip", "netns", "add", ns(i))
            sh("ip", "-n", ns(i), "link", "set", "lo", "up")
            sh("ip", "-n", ns(i), "link", "add", "eth0", "type", "veth", "peer", "name",
               f"b{i}", "netns", BRIDGE_NS)
            sh("ip", "-n", ns(i), "addr", "add", f"10.77.0.{i}/24", "brd", "+", "dev", "eth0")
            sh("ip", "-n", ns(i), "link", "set", "eth0", "up")
            sh("ip", "-n", BRIDGE_NS, "link", "set", f"b{i}", "master", "br0")
            sh("ip", "-n", BRIDGE_NS, "link", "set", f"b{i}", "up")
        yield
    finally:
        _cleanup()


class NsNode:
    def __init__(self, root: Path, i: int) -> None:
        self.i = i
        self.home = root / f"h{i}"
        # inside our own namespaces real broadcast is the point of the test
        self.env = {**os.environ, "LABROUTER_HOME": str(self.home),
                    "LABROUTER_LOOPBACK_ONLY": "0"}
        ring = Keyring()
        ring.add(bytes(range(32)))
        save_keyring(resolve_paths(env=self.env).keyring_file, ring, write_private)
        self.config = self.home / "config.toml"
        self.config.write_text(f"""
[node]
name = "host{i}"
[[servers]]
url = "http://127.0.0.1:9"
name = "ollama"
[cluster]
bind = "0.0.0.0"
broadcast = true
interval = {INTERVAL}
""", encoding="utf-8")
        self.log = open(self.home / "stderr.txt", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns(i), sys.executable, "-m", "labrouter", "--config",
             str(self.config), "run", "--headless"],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT)

    def nodes(self) -> dict[str, dict[str, Any]]:
        out = subprocess.run(["ip", "netns", "exec", ns(self.i), sys.executable, "-m",
                              "labrouter", "--config", str(self.config), "nodes", "--json"],
                             env=self.env, capture_output=True, text=True, timeout=20)
        return {n["name"]: n for n in json.loads(out.stdout)}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while True:
        try:
            if cond():
                return time.monotonic() - t0
        except (ValueError, KeyError, OSError):
            pass
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def test_broadcast_discovery_and_a_cut_link(topology: None, tmp_path: Path) -> None:
    nodes = [NsNode(tmp_path, i) for i in NODES]
    try:
        def everyone_alive() -> bool:
            for n in nodes:
                view = n.nodes()
                others = [view.get(f"host{j}") for j in NODES if j != n.i]
                if not all(p and p["state"] == "alive" for p in others):
                    return False
            return True

        took = wait_for(everyone_alive, 20, "three hosts find each other by broadcast")
        print(f"discovered by broadcast in {took:.2f} s (including start-up)")
        view = nodes[0].nodes()
        assert view["host2"]["address"] == "10.77.0.2"

        # cut host3's link: the others mark it down and stop routing to it
        sh("ip", "-n", BRIDGE_NS, "link", "set", "b3", "down")
        t = wait_for(lambda: all(n.nodes()["host3"]["state"] == "down" for n in nodes[:2]),
                     4.5 * INTERVAL + 5, "the cut host is marked down")
        print(f"cut link detected in {t:.2f} s")
        assert not nodes[0].nodes()["host3"]["routable"]
        assert nodes[0].nodes()["host2"]["routable"]

        # heal: back to alive (a live node's packets again, same epoch)
        sh("ip", "-n", BRIDGE_NS, "link", "set", "b3", "up")
        wait_for(lambda: nodes[0].nodes()["host3"]["state"] == "alive", 10, "the link heals")
    finally:
        for n in nodes:
            n.stop()
