"""Two real daemons in one process, on 127.0.0.1: `ask` on one is answered by the other.

Each daemon has its own home, its own fake Ollama (bound to 127.0.0.1 only), the relay and
the front door as services; they find each other by unicast announcements on loopback. The
model asked for exists only on the second machine, so the answer must come through the
pinned relay; then the second machine pauses and the answer moves back.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import ollama
import pytest

from labrouter.app.daemon import Daemon
from labrouter.app.http_services import FrontDoorService, RelayService
from labrouter.app.paths import resolve_paths, write_private
from labrouter.app.runtime import Ports, Runtime, build_runtime
from labrouter.app.settings import Context
from labrouter.cluster.keys import Keyring, save_keyring
from labrouter.core.config import parse_config
from tests.fakes.ollama_server import FakeOllama

KEY = bytes(range(32))


def _udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Running:
    daemon: Daemon
    api: FrontDoorService
    relay: RelayService
    task: asyncio.Task[None]
    fake: FakeOllama
    rt: Runtime


async def _start(root: Path, name: str, port: int, peer_port: int, model: str) -> Running:
    fake = await FakeOllama(models=[model], name=name).start()
    home = root / name
    paths = resolve_paths(env={"LABROUTER_HOME": str(home)})
    ring = Keyring()
    ring.add(KEY)
    save_keyring(paths.keyring_file, ring, write_private)
    config = parse_config(f"""
[node]
name = "{name}"
unload_on_pause = false

[[servers]]
url = "{fake.url}"
name = "ollama"

[cluster]
bind = "127.0.0.1"
port = {port}
broadcast = false
interval = 0.2
peers = ["127.0.0.1:{peer_port}"]
""", source=str(home / "config.toml"))
    # as `labrouter run` does: one Asker, shared by the front door and the control channel
    rt = build_runtime(Context(paths=paths, config=config, config_exists=True),
                       ports=Ports(relay_bind="127.0.0.1", relay=0, api=0))
    task = asyncio.create_task(rt.daemon.serve())
    return Running(rt.daemon, rt.front_door, rt.relay, task, fake, rt)


async def _until(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[Running, Running]]:
    pa, pb = _udp_port(), _udp_port()
    a = await _start(tmp_path, "mac", pa, pb, "qwen3:4b")
    b = await _start(tmp_path, "gpu", pb, pa, "qwen2.5-coder:7b")
    try:
        def sees(x: Running, other: str) -> bool:
            return any(p.name == other and p.routable and p.relay_port and p.cert_fingerprint
                       and p.servers and p.servers[0].models for p in x.daemon.snapshot())

        await _until(lambda: sees(a, "gpu") and sees(b, "mac"), 20, "the daemons see each other")
        yield a, b
    finally:
        for r in (a, b):
            r.daemon.request_stop()
        for r in (a, b):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(r.task, 10)
            await r.fake.stop()


async def test_a_request_on_one_daemon_is_answered_through_the_others_relay(
        pair: tuple[Running, Running]) -> None:
    a, b = pair
    assert a.daemon.self_info.relay_port and len(a.daemon.self_info.cert_fingerprint) == 64
    client = ollama.AsyncClient(host=f"http://127.0.0.1:{a.api.bound_port}")
    names = [m.model for m in (await client.list()).models]
    assert "qwen2.5-coder:7b" in names and "qwen3:4b" in names
    r = await client.chat(model="qwen2.5-coder:7b", stream=False,
                          messages=[{"role": "user", "content": "review my code"}])
    assert r.message.content == b.fake.answer_for("qwen2.5-coder:7b")
    assert [x.path for x in b.fake.received if x.path == "/api/chat"] == ["/api/chat"]
    assert not [x for x in a.fake.received if x.path == "/api/chat"]

    # the machine that did the work logs it under the asker's name ("served for others")
    from labrouter.app.usagelog import UsageLog
    from labrouter.core.usage import summarise

    served = [r for r in UsageLog(b.daemon.paths.data_dir).read(1)[0] if r.served_for]
    assert [(r.served_for, r.node, r.model, r.outcome) for r in served] == [
        ("mac", "gpu", "qwen2.5-coder:7b", "ok")]
    s = summarise(UsageLog(b.daemon.paths.data_dir).read(1)[0])
    assert s.served_for_requests == 1 and s.requests == 0
    # and the asking machine's usage page, on its front door, shows where it went
    import aiohttp

    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{a.api.bound_port}/usage?range=today"
        async with http.get(url) as page:
            assert page.status == 200 and page.headers["X-Frame-Options"] == "DENY"
            assert "qwen2.5-coder:7b" in await page.text()
        async with http.get(url, headers={"Host": "rebound.example"}) as page:
            assert page.status == 403

    # the second machine pauses: its relay refuses and `auto:code` falls back to the mac
    b.daemon.pause("rented out")
    r = await client.chat(model="auto:code", stream=False,
                          messages=[{"role": "user", "content": "def f(): pass"}])
    assert r.message.content == a.fake.answer_for("qwen3:4b")
    # and the asking machine's statistics say so: a code prompt answered by the quick model
    s = summarise(UsageLog(a.daemon.paths.data_dir).read(1)[0])
    assert [(c, r, n) for c, r, n, _why in s.crossings()] == [("code", "quick", 1)]
    assert s.fallovers == 1


async def test_the_daemons_asker_learns_speeds_and_keeps_them_across_a_restart(
        pair: tuple[Running, Running]) -> None:
    import json

    from labrouter.ask import AskRequest

    a, _ = pair
    result = await a.rt.asker.ask(AskRequest("hello there", model="qwen2.5-coder:7b"))
    assert result.node == "gpu"
    a.daemon.request_stop()
    await asyncio.wait_for(a.task, 10)
    saved = json.loads(a.daemon.paths.speeds_file.read_text())
    assert any(k.startswith("gpu/") and k.endswith("/qwen2.5-coder:7b") for k in saved)
