"""Three (four) real daemons as subprocesses on 127.0.0.1/2/3, exchanging real UDP packets.

Broadcast is off and peers are configured, so nothing leaves 127.0.0.0/8. The interval is
0.2 s, so suspect comes after 0.7 s of silence and down after 0.9 s (4.5 intervals).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from labrouter.app.control import ControlClient
from labrouter.app.paths import resolve_paths, write_private
from labrouter.cluster.keys import Keyring, save_keyring

INTERVAL = 0.2
KEY = bytes(range(32))
ROGUE_KEY = bytes(range(3, 35))
SLACK = 1.5  # scheduling on a loaded CI machine; the figures themselves are in the bench


def _free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _loopback_alias_works(ip: str) -> bool:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((ip, 0))
        return True
    except OSError:
        return False


class Node:
    def __init__(self, root: Path, index: int, port: int, peers: list[int], key: bytes,
                 models_url: str) -> None:
        self.index = index
        self.ip = f"127.0.0.{index}"
        self.home = root / f"node{index}"
        self.home.mkdir(parents=True)
        self.env = {**os.environ, "LABROUTER_HOME": str(self.home)}
        self.paths = resolve_paths(env=self.env)
        ring = Keyring()
        ring.add(key)
        save_keyring(self.paths.keyring_file, ring, write_private)
        peer_list = ", ".join(f'"127.0.0.{p}:{port}"' for p in peers if p != index)
        self.config = self.home / "config.toml"
        self.config.write_text(f"""
[node]
name = "node{index}"
unload_on_pause = false

[[servers]]
url = "{models_url}"
name = "ollama"

[cluster]
bind = "{self.ip}"
port = {port}
broadcast = false
interval = {INTERVAL}
peers = [{peer_list}]
""", encoding="utf-8")
        self.proc: subprocess.Popen[bytes] | None = None
        self.node_id = ""

    def start(self) -> None:
        self.log = open(self.home / "stderr.txt", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "labrouter", "--config", str(self.config), "run",
             "--headless"], env=self.env, stdout=self.log, stderr=subprocess.STDOUT)

    def client(self) -> ControlClient | None:
        return ControlClient.from_paths(self.paths)

    def call(self, cmd: str, **kw: Any) -> Any:
        c = self.client()
        assert c is not None, f"node{self.index} has no control channel"
        return c.call(cmd, **kw)

    def nodes(self) -> dict[str, dict[str, Any]]:
        return {n["name"]: n for n in self.call("nodes")["nodes"]}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self.log.close()


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until cond() held (polling every 20 ms); fails after timeout."""
    t0 = time.monotonic()
    while True:
        try:
            if cond():
                return time.monotonic() - t0
        except Exception:  # noqa: BLE001 - a daemon still starting
            pass
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"not within {timeout:.1f} s: {what}")
        time.sleep(0.02)


@pytest.fixture
def fake_ollama_url() -> Iterator[str]:
    port = _free_port(socket.SOCK_STREAM)
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.ollama_server", "--port",
                             str(port), "--models", "qwen3:4b,llava:7b"], cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: socket.create_connection(("127.0.0.1", port), 0.2).close() is None,
                 15, "the fake Ollama listens")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def cluster(tmp_path: Path, fake_ollama_url: str) -> Iterator[list[Node]]:
    if not all(_loopback_alias_works(f"127.0.0.{i}") for i in (2, 3, 4)):
        pytest.skip("127.0.0.2-4 cannot be bound here (macOS needs `ifconfig lo0 alias`)")
    port = _free_port()
    nodes = [Node(tmp_path, i, port, [1, 2, 3, 4], KEY, fake_ollama_url) for i in (1, 2, 3)]
    rogue = Node(tmp_path, 4, port, [1, 2, 3], ROGUE_KEY, fake_ollama_url)
    for n in [*nodes, rogue]:
        n.start()
    try:
        for n in [*nodes, rogue]:
            try:
                wait_for(lambda n=n: n.client() is not None, 20, f"node{n.index} starts")
            except AssertionError:
                n.stop()
                raise AssertionError((n.home / "stderr.txt").read_text()[-3000:]) from None
        yield [*nodes, rogue]
    finally:
        for n in [*nodes, rogue]:
            n.stop()


def test_three_daemons(cluster: list[Node]) -> None:
    a, b, c, rogue = cluster
    names = {"node1", "node2", "node3"}

    # they see each other (alive, with the fake server's models) within 2 s
    def all_alive() -> bool:
        for n in (a, b, c):
            view = n.nodes()
            if set(view) != names:
                return False
            for name in names - {f"node{n.index}"}:
                p = view[name]
                if p["state"] != "alive" or not p["routable"]:
                    return False
                models = {m["name"] for s in p["servers"] for m in s["models"]}
                if models != {"qwen3:4b", "llava:7b"}:
                    return False
        return True

    took = wait_for(all_alive, 2.0 + SLACK, "three daemons see each other, alive, with models")
    print(f"converged in {took:.2f} s")

    # a daemon with the wrong key is never listed, and its packets are counted
    wait_for(lambda: a.call("status")["drops"].get("unknown_key", 0) > 0, 2.0 + SLACK,
             "the rogue's packets are dropped for their unknown key")
    assert "node4" not in a.nodes()

    # pause one: the others see it within one interval (it is announced at once)
    t0 = time.monotonic()
    b.call("pause", reason="rented")
    seen = wait_for(lambda: all(n.nodes()["node2"]["paused"] for n in (a, c)),
                    INTERVAL + SLACK, "the pause is seen")
    print(f"pause seen after {time.monotonic() - t0:.3f} s")
    assert a.nodes()["node2"]["pause_reason"] == "rented"
    assert not a.nodes()["node2"]["routable"]
    b.call("resume")
    wait_for(lambda: not a.nodes()["node2"]["paused"], INTERVAL + SLACK, "the resume is seen")
    assert seen < INTERVAL + SLACK

    # kill -9 one: the others mark it down within 4.5 intervals (+ one tick)
    assert c.proc is not None
    c.proc.send_signal(signal.SIGKILL)
    t0 = time.monotonic()
    down = wait_for(lambda: all(n.nodes()["node3"]["state"] == "down" for n in (a, b)),
                    4.5 * INTERVAL + 0.1 + SLACK, "the killed daemon is marked down")
    print(f"kill -9 detected (down) after {down:.2f} s")
    assert not a.nodes()["node3"]["routable"]

    # a clean stop says goodbye: marked left at once
    b.stop()
    wait_for(lambda: a.nodes()["node2"]["state"] == "left", 1.0 + SLACK, "the goodbye is seen")
    assert "node4" not in a.nodes()
