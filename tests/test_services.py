"""The daemon's services: up, retrying with backoff, failed, off (issue 12, item 3)."""

from __future__ import annotations

import asyncio
import errno
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from labrouter.app.services import FAILED, OFF, RETRYING, UP, ServiceState, Supervisor, retryable
from labrouter.core.errors import ConfigError, DaemonError
from tests.fakes.ollama_server import FakeOllama


class FakeSleep:
    """Records the delays; each call lets the test decide when the wait is over."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


async def test_a_busy_port_is_retried_with_backoff_until_it_is_free() -> None:
    busy = 3
    states: list[ServiceState] = []

    async def start() -> str:
        nonlocal busy
        if busy:
            busy -= 1
            raise DaemonError("cannot open the API port 127.0.0.1:47813/tcp: Address in use")
        return "127.0.0.1:47813"

    sleep = FakeSleep()
    sup = Supervisor("front door", start, wall=lambda: 5.0, sleep=sleep,
                     backoff=(1, 2, 4), on_change=states.append)
    first = await sup.start()
    assert first.state == RETRYING and "Address in use" in first.detail
    assert "RETRYING" in first.text() and not first.ok
    for _ in range(20):
        if sup.state.state == UP:
            break
        await asyncio.sleep(0)
    assert sup.state.state == UP and sup.state.detail == "127.0.0.1:47813" and sup.started
    assert sleep.delays == [1, 2, 4]
    assert [s.state for s in states] == [RETRYING, RETRYING, RETRYING, UP]
    assert [s.attempts for s in states[:3]] == [1, 2, 3]
    await sup.stop()


async def test_a_config_error_fails_without_retrying() -> None:
    async def start() -> str:
        raise ConfigError("[api] bind = '0.0.0.0' would let anyone on the network in")

    sleep = FakeSleep()
    sup = Supervisor("front door", start, sleep=sleep)
    st = await sup.start()
    assert st.state == FAILED and "anyone on the network" in st.text()
    await asyncio.sleep(0)
    assert sleep.delays == [] and not sup.started


async def test_stop_ends_the_retries() -> None:
    async def start() -> str:
        raise OSError(errno.EADDRINUSE, "Address already in use")

    async def forever(delay: float) -> None:
        await asyncio.Event().wait()

    sup = Supervisor("relay", start, sleep=forever)
    assert (await sup.start()).state == RETRYING
    await sup.stop()
    assert sup.state.state == RETRYING and not sup.started


def test_off_is_ok_and_round_trips() -> None:
    sup = Supervisor("relay", lambda: asyncio.sleep(0, "x"))  # type: ignore[arg-type]
    sup.off("[relay] enabled = false")
    assert sup.state.state == OFF and sup.state.ok
    again = ServiceState.from_dict({**sup.state.as_dict(), "future_field": 1})
    assert again == sup.state


def test_which_errors_are_retried() -> None:
    assert retryable(OSError(errno.EADDRINUSE, "in use"))
    assert retryable(OSError(errno.EADDRNOTAVAIL, "not available"))
    assert not retryable(OSError(errno.EACCES, "permission denied"))
    assert not retryable(ConfigError("bad"))
    assert retryable(DaemonError("cannot open the relay port"))


# ------------------------------------------------------------------ the real daemon


def _free(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABROUTER_")}
    env.update(LABROUTER_HOME=str(home), LABROUTER_LOOPBACK_ONLY="1")
    for k in ("DISPLAY", "WAYLAND_DISPLAY"):
        env.pop(k, None)
    return subprocess.run([sys.executable, "-m", "labrouter", *args], capture_output=True,
                          text=True, env=env, timeout=60, check=False)


def _wait_for(home: Path, pattern: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        out = _cli(home, "status").stdout
        if re.search(pattern, out):
            return out
        time.sleep(0.2)
    raise AssertionError(f"status never matched {pattern!r}; last:\n{out}")


def test_a_taken_port_is_reported_and_the_service_comes_up_when_it_is_free(
        tmp_path: Path) -> None:
    url, stop_server = FakeOllama(models=["qwen3:4b"]).start_in_thread()
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    api_port = busy.getsockname()[1]
    home = tmp_path / "home"
    (home / "config").mkdir(parents=True)
    (home / "config" / "config.toml").write_text(
        f'[[servers]]\nurl = "{url}"\nname = "box"\n'
        f'[cluster]\nbind = "127.0.0.1"\nbroadcast = false\nport = {_free(socket.SOCK_DGRAM)}\n'
        f"[relay]\nport = {_free(socket.SOCK_STREAM)}\n[api]\nport = {api_port}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABROUTER_")}
    env.update(LABROUTER_HOME=str(home), LABROUTER_LOOPBACK_ONLY="1",
               OLLAMA_HOST=url.removeprefix("http://"))
    daemon = subprocess.Popen([sys.executable, "-m", "labrouter", "run", "--headless"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # the taken port: reported as such, not as running
        out = _wait_for(home, r"gossip off.*front door RETRYING")
        assert "address already in use" in out.lower()
        assert re.search(r"relay up \(\S+:\d+/tcp\)", out), out
        assert "gossip off (no cluster key" in out, out
        doc = _cli(home, "doctor")
        assert doc.returncode == 1, doc.stdout
        assert "FAIL  service front door: RETRYING" in doc.stdout
        assert "1 problem(s): service front door" in doc.stdout
        nodes = _cli(home, "nodes")
        assert "this machine's services:" in nodes.stdout and "RETRYING" in nodes.stdout
        # the port is freed: the daemon opens it by itself
        busy.close()
        out = _wait_for(home, rf"front door up \(http://127.0.0.1:{api_port}\)")
        with socket.create_connection(("127.0.0.1", api_port), timeout=5):
            pass
        doc = _cli(home, "doctor")
        assert doc.returncode == 0, doc.stdout
        assert f"OK    service front door: up (http://127.0.0.1:{api_port})" in doc.stdout
    finally:
        busy.close()
        daemon.terminate()
        try:
            daemon.wait(20)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait(5)
        stop_server()
    assert daemon.stderr is not None
    log = daemon.stderr.read().decode()
    assert "front door not started: cannot open the API port" in log
    assert "front door is up after" in log and "Traceback" not in log


def test_the_tray_menu_names_a_service_that_does_not_run() -> None:
    from labrouter.core.peers import Peer
    from labrouter.desktop.tray.view import TrayActions, TrayView, build_menu

    def nothing(*_: object) -> None:
        return None

    actions = TrayActions(ask_selection=nothing, pause=nothing, resume=nothing,
                          copy_answer=nothing, toggle_autostart=nothing, open_config=nothing,
                          open_usage=nothing, quit=nothing)
    me = (Peer(node_id="me", name="mac", is_self=True),)
    down = ServiceState("front door", RETRYING, "address already in use", attempts=2,
                        retry_in=4)
    menu = build_menu(TrayView(peers=me, services_down=(down.text(),)), actions)
    texts = [m.text for m in menu]
    assert "Not running: front door RETRYING (address already in use; attempt 3 in 4 s)" \
        in texts
    assert not any(t.startswith("Not running") for t in
                   (m.text for m in build_menu(TrayView(peers=me), actions)))
