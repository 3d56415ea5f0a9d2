"""Passive health across two real daemons: a model that hangs on node1 misses its deadline
there, node1 announces it degraded, and node2 (which never asked it) tries it last."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.ollama_server import FakeOllama
from tests.test_daemon_cluster import KEY, Node, _free_port, _loopback_alias_works, wait_for

FAST = """
[timeouts]
first_token = 1.5
[routes.quick]
models = ["qwen3:4b"]
"""


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[Node, Node, FakeOllama, FakeOllama]]:
    if not _loopback_alias_works("127.0.0.2"):
        pytest.skip("127.0.0.2 cannot be bound here (macOS needs `ifconfig lo0 alias`)")
    sick, well = FakeOllama(models=["qwen3:4b"]), FakeOllama(models=["qwen3:4b"])
    sick_url, stop_sick = sick.start_in_thread()
    well_url, stop_well = well.start_in_thread()
    port = _free_port()
    nodes = [Node(tmp_path, 1, port, [1, 2], KEY, sick_url),
             Node(tmp_path, 2, port, [1, 2], KEY, well_url)]
    for n in nodes:
        n.config.write_text(n.config.read_text() + FAST, encoding="utf-8")
        n.start()
    try:
        for n in nodes:
            wait_for(lambda n=n: n.client() is not None, 20, f"node{n.index} starts")
        yield nodes[0], nodes[1], sick, well
    finally:
        for n in nodes:
            n.stop()
        stop_sick()
        stop_well()


def test_a_hung_model_is_announced_degraded_and_skipped_by_peers(
        two: tuple[Node, Node, FakeOllama, FakeOllama]) -> None:
    node1, node2, sick, _well = two
    wait_for(lambda: node2.nodes()["node1"]["state"] == "alive"
             and node2.nodes()["node1"]["servers"][0]["models"], 15, "node2 sees node1")
    sick.set_fault("hang", "qwen3:4b")
    # a request on node1 (through its daemon): its own qwen3:4b hangs past its deadline
    subprocess.run([sys.executable, "-m", "labrouter", "--config", str(node1.config), "ask",
                    "--route", "quick", "hello"], env=node1.env, capture_output=True,
                   timeout=60, cwd=Path(__file__).resolve().parents[1])

    def degraded_on_node2() -> bool:
        return node2.nodes()["node1"]["servers"][0].get("degraded") == ["qwen3:4b"]

    wait_for(degraded_on_node2, 15, "node2 hears that qwen3:4b on node1 is degraded")
    # node2's routing tries node1's model after its own
    out = subprocess.run([sys.executable, "-m", "labrouter", "--config", str(node2.config),
                          "route", "--json", "hello"], env=node2.env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.index('"node2"') < text.index('"node1"'), text
    assert os.environ.get("LABROUTER_LOOPBACK_ONLY", "1")  # loopback only, as everywhere
