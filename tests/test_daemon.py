"""The daemon in-process: control channel, single instance, pause state, key commands."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from labrouter.app.control import ControlClient
from labrouter.app.daemon import Daemon
from labrouter.app.lock import InstanceLock
from labrouter.app.pause import PauseState, load_pause, parse_until, running_process, save_pause
from labrouter.app.settings import load_context
from labrouter.cli import main
from labrouter.cluster import wire
from labrouter.cluster.keys import decode_join_code, encode_join_code, load_keyring
from labrouter.cluster.monitor import Monitor
from labrouter.core.config import ServerConfig
from labrouter.core.errors import (
    AlreadyRunning,
    BackendError,
    DaemonError,
    KeyringError,
    Unreachable,
)
from labrouter.core.peers import ModelInfo


class FakeBackend:
    """The Backend protocol over a dict: no HTTP."""

    kind = "ollama"

    def __init__(self, url: str, models: list[str], loaded: list[str], up: bool = True) -> None:
        self.url, self.models, self.loaded, self.up = url, models, loaded, up
        self.unloaded: list[str] = []

    async def version(self) -> str:
        return "0.0-fake"

    async def list_models(self) -> list[ModelInfo]:
        if not self.up:
            raise Unreachable("connection refused")
        return [ModelInfo(m) for m in self.models]

    async def loaded_models(self) -> list[str]:
        if not self.up:
            raise Unreachable("connection refused")
        return list(self.loaded)

    async def unload(self, model: str) -> None:
        self.unloaded.append(model)
        self.loaded.remove(model)

    async def aclose(self) -> None:
        return None


def write_config(home: Path, extra: str = "") -> None:
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "config.toml").write_text(f"""
[node]
name = "testbox"
{extra}
[[servers]]
url = "http://127.0.0.1:9"
name = "ollama"

[cluster]
bind = "127.0.0.1"
broadcast = false
interval = 0.05
""", encoding="utf-8")


def make_daemon(home: Path, backend: FakeBackend, extra: str = "") -> Daemon:
    write_config(home, extra)
    ctx = load_context()
    monitor = Monitor(ctx.config.servers, factory=lambda s, t: backend)
    return Daemon(ctx, monitor=monitor)


async def call(d: Daemon, cmd: str, **kw: Any) -> Any:
    client = await asyncio.to_thread(ControlClient.from_paths, d.paths)
    assert client is not None
    return await asyncio.to_thread(client.call, cmd, **kw)


async def started(d: Daemon) -> asyncio.Task[None]:
    task = asyncio.create_task(d.serve())
    for _ in range(500):
        if d.control.port and d.paths.control_file.exists():
            return task
        await asyncio.sleep(0.01)
    raise AssertionError("daemon did not start")


async def test_control_channel_without_a_key(labrouter_home: Path) -> None:
    backend = FakeBackend("x", ["qwen3:4b"], ["qwen3:4b"])
    d = make_daemon(labrouter_home, backend)
    task = await started(d)
    try:
        st = await call(d, "status")
        assert st["cluster"] is False and st["name"] == "testbox"
        assert st["servers"] == [{"id": "ollama", "up": True, "models": 1,
                                  "loaded": ["qwen3:4b"], "error": ""}]
        nodes = (await call(d, "nodes"))["nodes"]
        assert [n["name"] for n in nodes] == ["testbox"] and nodes[0]["is_self"]
        # the control file is private, and a wrong token is refused
        info = json.loads(d.paths.control_file.read_text())
        if os.name != "nt":
            assert stat.S_IMODE(d.paths.control_file.stat().st_mode) == 0o600

        def bad_token() -> Any:
            with socket.create_connection(("127.0.0.1", info["port"]), timeout=5) as s:
                s.sendall(b'{"token": "nope", "cmd": "status"}\n')
                return json.loads(s.makefile().readline())

        assert await asyncio.to_thread(bad_token) == {"ok": False, "error": "bad token"}

        def hostile(line: bytes) -> Any:
            with socket.create_connection(("127.0.0.1", info["port"]), timeout=5) as s:
                s.sendall(line)
                f = s.makefile("rb")
                first = json.loads(f.readline())
                try:
                    s.sendall(json.dumps({"token": info["token"], "cmd": "status"}).encode()
                              + b"\n")
                    return first, f.readline()  # b"": closed after a bad guess
                except ConnectionResetError:
                    return first, b""

        # a non-ASCII token, deeply nested JSON: answered, and the daemon keeps going
        first, after = await asyncio.to_thread(hostile, '{"token": "é", "cmd": "x"}\n'.encode())
        assert first == {"ok": False, "error": "bad token"} and after == b""
        first, _ = await asyncio.to_thread(hostile, b"[" * 60_000 + b"\n")
        assert first == {"ok": False, "error": "not a JSON object"}
        # passive health from a CLI ask
        await call(d, "report_failure", node_id="local", server_id="ollama")
        assert d.table.is_server_suspect(d.node_id, "ollama")
        client = ControlClient.from_paths(d.paths)
        assert client is not None
        await asyncio.to_thread(client.request, {"cmd": "report_failure", "node_id": "n2",
                                                 "server": "gpu"})
        assert d.table.is_server_suspect("n2", "gpu")
        # a second daemon for the same home refuses
        with pytest.raises(AlreadyRunning):
            InstanceLock(d.paths.lock_file).acquire()
        await call(d, "stop")
        await asyncio.wait_for(task, 5)
    finally:
        d.request_stop()
        await asyncio.wait_for(task, 5)
    assert not d.paths.control_file.exists()
    assert ControlClient.from_paths(d.paths) is None


async def test_pause_persists_unloads_and_announces(labrouter_home: Path) -> None:
    backend = FakeBackend("x", ["qwen3:4b"], ["qwen3:4b"])
    d = make_daemon(labrouter_home, backend)
    changes: list[int] = []
    d.on_change(lambda: changes.append(1))
    task = await started(d)
    try:
        st = await call(d, "pause", reason="rented", until=None)
        assert st["paused"] and st["pause_reason"] == "rented"
        for _ in range(200):
            if backend.unloaded:
                break
            await asyncio.sleep(0.01)
        assert backend.unloaded == ["qwen3:4b"]  # keep_alive 0 for the renter
        assert changes
        me = d.snapshot()[0]
        assert me.paused and not me.routable
    finally:
        d.request_stop()
        await asyncio.wait_for(task, 5)
    # survives a restart
    d2 = make_daemon(labrouter_home, backend)
    assert d2.pause_state.paused and d2.pause_state.reason == "rented"
    assert d2.node_id == d.node_id and d2.epoch != d.epoch


async def test_an_impossible_until_is_refused_and_announcing_goes_on(
        labrouter_home: Path) -> None:
    """`pause --until 1e400s` (Infinity in JSON) or NaN must not leave the node paused with
    an until-time it cannot announce: its announcements would fail and peers mark it down."""
    d = make_daemon(labrouter_home, FakeBackend("x", [], []))
    task = await started(d)
    try:
        client = await asyncio.to_thread(ControlClient.from_paths, d.paths)
        assert client is not None
        for bad in (float("inf"), float("nan"), 1e300, True, -5):
            with pytest.raises(DaemonError, match="until"):
                await asyncio.to_thread(client.call, "pause", until=bad)
            assert not d.pause_state.paused
        # whatever the state holds, building an announcement never fails
        d.pause_state = PauseState(True, "x", float("inf"))
        wire.announce_body(d._self_peer(), 1.0, 1, True)
    finally:
        d.request_stop()
        await asyncio.wait_for(task, 5)


def test_parse_until_and_load_pause_refuse_impossible_times(tmp_path: Path) -> None:
    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    for text in ("1" * 400 + "d", "100000000d"):
        with pytest.raises(Exception, match="too far"):
            parse_until(text, now)
    f = tmp_path / "pause.json"
    # an impossible until-time is a damaged file: paused, to be safe (tests/test_pause.py)
    f.write_text('{"paused": true, "reason": "r", "until": Infinity}')
    assert load_pause(f, 0.0).damaged and load_pause(f, 0.0).until is None
    f.write_text('{"paused": true, "reason": "r", "until": NaN}')
    assert load_pause(f, 0.0).damaged


async def test_auto_pause_while_a_process_runs(labrouter_home: Path) -> None:
    me = running_process([Path(f"/proc/{os.getpid()}/comm").read_text().strip()]) \
        if Path("/proc").is_dir() else ""
    if not me:
        pytest.skip("no /proc here")
    backend = FakeBackend("x", [], [])
    d = make_daemon(labrouter_home, backend, f'pause_when_running = ["{me}"]')
    d._last_auto_check = -1e9
    await d._housekeeping()
    assert d.pause_state.paused and d.pause_state.auto and me in d.pause_state.reason
    d.config = d.config.__class__(**{**d.config.__dict__, "node": d.config.node.__class__(
        name="testbox", pause_when_running=("no-such-process-xyz",))})
    d._last_auto_check = -1e9
    await d._housekeeping()
    assert not d.pause_state.paused


async def test_monitor_reports_down_with_reason() -> None:
    backend = FakeBackend("x", ["a"], [], up=False)
    m = Monitor([ServerConfig(name="ollama")], factory=lambda s, t: backend)
    [st] = await m.poll()
    assert not st.up and "refused" in st.error
    backend.up = True
    [st] = await m.poll()
    assert st.up and st.models[0].name == "a"


def test_pause_file_and_until(tmp_path: Path) -> None:
    f = tmp_path / "pause.json"
    save_pause(f, PauseState(True, "r", 100.0))
    assert load_pause(f, 50.0).paused
    assert not load_pause(f, 100.0).paused  # expired
    save_pause(f, PauseState(True, "auto", None, auto=True))
    assert not load_pause(f, 0.0).paused  # auto pauses are re-checked, not restored
    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    assert parse_until("2h", now) == now.timestamp() + 7200
    assert parse_until("1h30m", now) == now.timestamp() + 5400
    assert parse_until("11:00", now) == (now + dt.timedelta(hours=23)).timestamp()
    with pytest.raises(Exception, match="not a duration"):
        parse_until("soon", now)


def test_join_code_typos_are_clear() -> None:
    code = encode_join_code(bytes(range(32)))
    assert decode_join_code(code.lower().replace("-", " ")) == bytes(range(32))
    for bad, msg in ((code.replace("LR1", "XX1"), "not a labrouter join code"),
                     (code[:-6], "should have"),
                     (code[:10] + ("A" if code[10] != "A" else "B") + code[11:], "typo"),
                     (code + "!", "cannot be in it")):
        with pytest.raises(KeyringError, match=msg):
            decode_join_code(bad)


def test_key_commands(labrouter_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["key", "show"]) == 2
    assert "no cluster key" in capsys.readouterr().err
    assert main(["init"]) == 0
    out = capsys.readouterr().out
    code = out.split("labrouter join ")[1].strip()
    ring_file = labrouter_home / "config" / "cluster.key"
    if os.name != "nt":
        assert stat.S_IMODE(ring_file.stat().st_mode) == 0o600
    assert main(["init"]) == 2  # refuses to replace the key
    assert main(["key", "export"]) == 0
    assert capsys.readouterr().out.strip() == code
    assert main(["key", "add"]) == 0
    new_fp = capsys.readouterr().out.split("Added key ")[1][:9]
    assert main(["key", "use", new_fp]) == 0
    old = [k for k in load_keyring(ring_file).keys if k != new_fp.replace("-", "")][0]
    assert main(["key", "remove", new_fp]) == 2  # the active one
    assert main(["key", "remove", old[:4]]) == 0
    assert list(load_keyring(ring_file).keys) == [new_fp.replace("-", "")]
    assert main(["join", code]) == 0
    assert main(["join", code[:-1] + "Z"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err


def test_cli_without_a_daemon(labrouter_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_config(labrouter_home)
    assert main(["status"]) == 3
    assert "not running" in capsys.readouterr().out
    assert main(["nodes", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)[0]["name"] == "testbox"
    assert main(["pause", "--reason", "gaming", "--until", "1h"]) == 0
    assert load_pause(labrouter_home / "data" / "pause.json", 0.0).reason == "gaming"
    assert main(["resume"]) == 0
    assert main(["pause", "--until", "whenever"]) == 2


def test_monitor_rejects_no_generation_requests() -> None:
    # the monitor calls only list/loaded/version: a backend without chat is enough
    assert not hasattr(FakeBackend, "chat")
    assert issubclass(Unreachable, BackendError)


def test_start_in_thread_and_stop(labrouter_home: Path) -> None:
    """The tray's way: the loop on a worker thread, calls from the main thread."""
    backend = FakeBackend("x", ["qwen3:4b"], [])
    d = make_daemon(labrouter_home, backend)
    seen: list[int] = []
    d.on_change(lambda: seen.append(1))
    thread = d.start_in_thread()
    try:
        assert thread.is_alive()
        client = ControlClient.from_paths(d.paths)
        assert client is not None and client.call("status")["name"] == "testbox"
        d.pause("from the tray", None)
        assert client.call("status")["paused"]  # the call ran after the pause on the loop
        d.resume()
        assert not client.call("status")["paused"]
        assert seen
    finally:
        d.stop()
    assert not thread.is_alive()
    assert ControlClient.from_paths(d.paths) is None
