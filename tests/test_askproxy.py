"""`labrouter ask` through the running daemon's one Asker, over the control channel.

A real daemon built by the composition root (``app/runtime.py``) on 127.0.0.1 with a fake
Ollama; commands ask through its control channel, in-process (``DaemonAsker``) and as a
real `labrouter ask` process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from labrouter.app.askproxy import (
    DaemonAsker,
    ProxyAsker,
    event_from_json,
    event_to_json,
    request_from_json,
    request_to_json,
)
from labrouter.app.control import ControlClient
from labrouter.app.local import save_speeds
from labrouter.app.paths import resolve_paths
from labrouter.app.runtime import Ports, Runtime, build_runtime
from labrouter.app.settings import Context
from labrouter.app.usagelog import UsageLog
from labrouter.ask import AskRequest, Done, Started, Text, collect
from labrouter.backends.base import ChatMessage, ChatOptions
from labrouter.core.config import parse_config
from labrouter.core.errors import NoCandidate
from labrouter.core.policy import Speed, SpeedBook
from tests.fakes import FakeModel
from tests.fakes.ollama_server import FakeOllama


@dataclass
class Running:
    rt: Runtime
    fake: FakeOllama
    home: Path
    task: asyncio.Task[None]

    def client(self) -> ControlClient:
        client = ControlClient.from_paths(self.rt.ctx.paths)
        assert client is not None
        return client


@pytest.fixture
async def daemon(labrouter_home: Path) -> AsyncIterator[Running]:
    fake = await FakeOllama(models=[FakeModel("qwen3:4b", answer="word " * 60)],
                            tokens_per_s=200).start()
    paths = resolve_paths(env={"LABROUTER_HOME": str(labrouter_home)})
    (labrouter_home / "config").mkdir(parents=True, exist_ok=True)
    text = (f'[[servers]]\nurl = "{fake.url}"\nname = "ollama"\n'
            '[relay]\nenabled = false\n[api]\nenabled = false\n'
            '[cluster]\nbind = "127.0.0.1"\nbroadcast = false\n')
    (labrouter_home / "config" / "config.toml").write_text(text)
    config = parse_config(text)
    rt = build_runtime(Context(paths=paths, config=config, config_exists=True),
                       ports=Ports(relay_bind="127.0.0.1", relay=0, api=0))
    task = asyncio.create_task(rt.daemon.serve())
    for _ in range(500):
        if rt.daemon.control.port and rt.daemon.servers and rt.daemon.servers[0].up:
            break
        await asyncio.sleep(0.02)
    try:
        yield Running(rt, fake, labrouter_home, task)
    finally:
        rt.daemon.request_stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        await fake.stop()


def test_requests_and_events_survive_their_json_form() -> None:
    req = AskRequest("caf\u00e9?", image=b"\x89PNG", route="code", model="qwen3:*", node="gpu",
                     instruction="be brief", bare=True, source="selection",
                     options=ChatOptions(temperature=0.2, max_tokens=5, extra={"top_k": 3}),
                     messages=(ChatMessage("system", "terse"),))
    assert request_from_json(json.loads(json.dumps(request_to_json(req)))) == req
    with pytest.raises(ValueError):
        request_from_json({"prompt": 3})
    with pytest.raises(ValueError):
        request_from_json({"prompt": "x", "image": "not base64!"})


async def test_a_command_asks_through_the_daemons_one_asker(daemon: Running) -> None:
    asker = DaemonAsker(await asyncio.to_thread(daemon.client))
    events = [e async for e in asker.stream(AskRequest("hello there", source="cli"))]
    assert isinstance(events[0], Started) and events[0].candidate.model == "qwen3:4b"
    assert isinstance(events[-1], Done)
    result = events[-1].result
    assert "".join(e.text for e in events if isinstance(e, Text)) == result.answer
    assert result.answer == daemon.fake.answer_for("qwen3:4b")
    # the daemon did the work: its speed table, its stickiness history, its usage log
    rt = daemon.rt
    assert any(k.endswith("/qwen3:4b") for k in rt.asker.speeds.speeds)
    assert [r for _, r in rt.asker.history.entries] == [result.classified_route]
    (rec,), _ = UsageLog(rt.ctx.paths.data_dir).read(1)
    assert (rec.source, rec.outcome, rec.finish_reason) == ("cli", "ok", "stop")
    # the events went over the wire and back unchanged
    assert [event_from_json(json.loads(json.dumps(event_to_json(e)))) for e in events[1:]] \
        == events[1:]


async def test_errors_travel_as_themselves(daemon: Running) -> None:
    asker = DaemonAsker(await asyncio.to_thread(daemon.client))
    with pytest.raises(NoCandidate, match="no live server"):
        await collect(asker.stream(AskRequest("hello", model="nosuch:1b")))


async def test_hanging_up_stops_the_request_in_the_daemon(daemon: Running) -> None:
    daemon.fake.models["qwen3:4b"] = FakeModel("qwen3:4b", answer="word " * 400)
    asker = DaemonAsker(await asyncio.to_thread(daemon.client))
    events = asker.stream(AskRequest("hello"))
    async for event in events:
        if isinstance(event, Text):
            break
    await events.aclose()
    log = UsageLog(daemon.rt.ctx.paths.data_dir)
    for _ in range(250):
        if log.read(1)[0]:
            break
        await asyncio.sleep(0.02)
    (rec,), _ = log.read(1)
    assert (rec.outcome, rec.finish_reason) == ("cancelled", "cancelled")
    assert not any(daemon.rt.daemon.in_flight.values())


async def test_without_a_daemon_the_proxy_asks_in_process(daemon: Running) -> None:
    client = await asyncio.to_thread(daemon.client)
    daemon.rt.daemon.request_stop()
    await asyncio.wait_for(daemon.task, 10)
    made: list[str] = []

    async def here() -> object:
        made.append("local")
        return daemon.rt.asker  # stands in for the in-process Asker

    proxy = ProxyAsker(DaemonAsker(client), here)  # type: ignore[arg-type]
    result = await collect(proxy.stream(AskRequest("hello")))
    assert result.model == "qwen3:4b" and made == ["local"] and not proxy.through_daemon


async def test_the_daemon_merges_speeds_learned_elsewhere(daemon: Running) -> None:
    rt = daemon.rt
    await rt.asker.ask(AskRequest("hello"))
    (key,) = rt.asker.speeds.speeds
    mine = rt.asker.speeds.speeds[key]
    other = SpeedBook({key: Speed(9.0, 1.0, mine.n + 5), "cli/only/model": Speed(1.0, 50.0)})
    save_speeds(rt.ctx.paths.speeds_file, other)  # a `labrouter ask` without the daemon
    rt.router.save()
    assert rt.asker.speeds.speeds["cli/only/model"].tps == 50.0
    assert rt.asker.speeds.speeds[key].ttft == 9.0  # measured more often there
    saved = json.loads(rt.ctx.paths.speeds_file.read_text())
    assert "cli/only/model" in saved and saved[key]["ttft"] == 9.0


async def test_the_cli_asks_through_the_running_daemon(daemon: Running) -> None:
    env = dict(os.environ, LABROUTER_HOME=str(daemon.home))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "labrouter", "ask", "--json", "hello", "there",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err
    d = json.loads(out)
    assert d["answer"] == daemon.fake.answer_for("qwen3:4b")
    # the daemon's table learned it and its history has it: it was asked there
    assert len(daemon.rt.asker.history.entries) == 1
    assert daemon.rt.daemon.status()["in_flight"] == 0
