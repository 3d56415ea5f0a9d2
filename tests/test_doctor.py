"""`labrouter doctor` and `labrouter notify`: one line per check, the exit code, and the
reasons of unavailable desktop backends. Servers are real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from labrouter.app import doctor
from labrouter.app.settings import Context, load_context
from labrouter.cli import main
from labrouter.core.config import ServerConfig
from tests.fakes import unused_url
from tests.fakes.ollama_server import FakeOllama


@pytest.fixture
def fake_url() -> Iterator[str]:
    fake = FakeOllama(models=["qwen3:4b"])
    url, stop = fake.start_in_thread()
    try:
        yield url
    finally:
        stop()


def _ctx(servers: tuple[ServerConfig, ...], port: int | None = None) -> Context:
    ctx = load_context(None)
    cluster = dataclasses.replace(ctx.config.cluster, bind="127.0.0.1",
                                  port=port or _free_udp())
    # free TCP ports too: a daemon someone runs on this machine holds the default ones
    relay = dataclasses.replace(ctx.config.relay, port=_free_tcp())
    api = dataclasses.replace(ctx.config.api, port=_free_tcp())
    return dataclasses.replace(ctx, config=dataclasses.replace(
        ctx.config, servers=servers, cluster=cluster, relay=relay, api=api))


def _free_tcp() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _free_udp() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _by_name(checks: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {c.name: c for c in checks}


def test_a_reachable_server_a_key_and_a_free_port_pass(fake_url: str) -> None:
    ctx = _ctx((ServerConfig(url=fake_url, name="box"),))
    ctx.paths.keyring_file.parent.mkdir(parents=True, exist_ok=True)
    ctx.paths.keyring_file.write_text("{}")
    ctx.paths.keyring_file.chmod(0o600)
    env = {"OLLAMA_HOST": fake_url}
    checks = doctor.run_checks(ctx, env, desktop=False)
    c = _by_name(checks)
    assert c["server box"].ok and "version 0.12.6" in c["server box"].detail
    assert "local Ollama" not in c  # the configured server is the local Ollama
    assert c["cluster key"].ok and c["udp port"].ok
    lines, code = doctor.report(checks)
    assert code == 0 and lines[-1] == f"{len(checks)} of {len(checks)} checks OK"
    assert all(line.startswith("OK  ") for line in lines[:-1])


def test_an_unreachable_server_and_no_key_fail_with_a_fix() -> None:
    dead = unused_url()
    ctx = _ctx((ServerConfig(url=dead, name="gone"),))
    checks = doctor.run_checks(ctx, {"OLLAMA_HOST": unused_url()}, desktop=False)
    c = _by_name(checks)
    assert not c["server gone"].ok and "start the server" in c["server gone"].fix
    assert not c["cluster key"].ok and "`labrouter init`" in c["cluster key"].fix
    # every command a fix names exists (there is no `labrouter cluster ...`)
    from labrouter.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    for named in re.findall(r"`labrouter (\w+)", c["cluster key"].fix):
        assert named in commands, named
    assert c["local Ollama"].advisory  # a note: this machine may not serve models
    assert c["cluster key"].advisory  # no peers configured: a single machine
    lines, code = doctor.report(checks)
    assert code == 1
    assert lines[-1] == "1 problem(s): server gone"
    assert any(line.startswith("FAIL  server gone: ") and " -> " in line for line in lines)
    assert any(line.startswith("note  local Ollama") for line in lines)


def test_a_key_readable_by_others_is_reported() -> None:
    ctx = _ctx(())
    ctx.paths.keyring_file.parent.mkdir(parents=True, exist_ok=True)
    ctx.paths.keyring_file.write_text("{}")
    os.chmod(ctx.paths.keyring_file, 0o644)
    check = doctor.key_check(ctx)
    assert not check.ok and "chmod 600" in check.fix


def test_a_busy_udp_port_is_reported() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        ctx = _ctx((), port=s.getsockname()[1])
        check = doctor.udp_check(ctx)
    assert not check.ok and "cannot be bound" in check.detail


def test_no_display_is_a_note_not_a_failure() -> None:
    checks = doctor.desktop_checks(_ctx(()), {})
    assert len(checks) == 1 and checks[0].advisory and "headless" in checks[0].detail


def test_desktop_checks_give_every_unavailable_backend_its_reason(
        monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland",
           "DBUS_SESSION_BUS_ADDRESS": "unix:abstract=/tmp/dbus-test"}
    monkeypatch.setattr("shutil.which", lambda name: None)
    checks = doctor.desktop_checks(_ctx(()), env)
    c = _by_name(checks)
    assert c["display"].ok
    assert not c["hotkey"].ok and "labrouter ask --selection" in c["hotkey"].fix
    assert "Wayland" in c["hotkey backend pynput"].detail
    assert "wl-clipboard" in c["clipboard backend wl"].detail
    assert c["notify backend notify-send"].detail.startswith("notify-send is not installed")
    assert c["wayland"].advisory


def test_a_session_bus_that_is_gone_fails_the_notification_check(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # it used to say "OK notifications: notify-send", and every notification then failed
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}")
    env = {"WAYLAND_DISPLAY": "wayland-0",
           "DBUS_SESSION_BUS_ADDRESS": "unix:path=/nonexistent/bus"}
    c = _by_name(doctor.desktop_checks(_ctx(()), env))
    assert not c["notifications"].ok
    assert "/nonexistent/bus does not exist" in c["notify backend notify-send"].detail
    assert "/nonexistent/bus does not exist" in c["notify backend gdbus"].detail


def test_doctor_command_prints_lines_and_exits_1_on_a_problem(
        capsys: pytest.CaptureFixture[str], labrouter_home: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = labrouter_home / "config" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(f'[cluster]\nbind = "127.0.0.1"\nport = {_free_udp()}\n'
                   f'[relay]\nport = {_free_tcp()}\n[api]\nport = {_free_tcp()}\n'
                   f'[[servers]]\nurl = "{unused_url()}"\nname = "gone"\n')
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("OLLAMA_HOST", unused_url())
    rc = main(["doctor"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 1
    assert out[0].startswith("note  display: ")
    assert any(line.startswith("FAIL  server gone") for line in out)
    # no cluster key on a machine with no peers configured: it works alone, a note
    assert any(line.startswith("note  cluster key") for line in out)
    assert out[-1] == "1 problem(s): server gone"


def test_no_cluster_key_fails_only_when_peers_are_configured() -> None:
    ctx = _ctx(())
    alone = doctor.key_check(ctx)
    assert not alone.ok and alone.advisory and "labrouter init" in alone.fix
    cluster = dataclasses.replace(ctx.config.cluster, peers=("10.0.0.2",))
    peered = dataclasses.replace(ctx, config=dataclasses.replace(ctx.config, cluster=cluster))
    check = doctor.key_check(peered)
    assert not check.ok and not check.advisory


def test_notify_test_reports_the_backend(capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABROUTER_NOTIFY_BACKEND", "null")
    rc = main(["notify", "hello"])
    assert rc == 0 and capsys.readouterr().out.strip().endswith("shown with null")
    monkeypatch.delenv("LABROUTER_NOTIFY_BACKEND")
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    rc = main(["notify", "--test"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "skipped notify-send: no D-Bus session" in out or sys_platform() != "linux"
    assert "went to the log only" in out


def test_notify_test_says_why_a_backend_that_looked_fine_failed(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from labrouter.desktop import notify

    class Broken:
        name = "notify-send"

        def problem(self) -> None:
            return None

        def send(self, title: str, body: str) -> None:
            raise RuntimeError("Could not connect: No such file or directory")

    monkeypatch.delenv("LABROUTER_NOTIFY_BACKEND", raising=False)
    monkeypatch.setattr(notify, "default_chain", lambda: [Broken(), notify.LogNotifier()])
    assert main(["notify", "--test"]) == 1
    out = capsys.readouterr().out
    assert "failed notify-send: RuntimeError: Could not connect" in out
    assert "went to the log only" in out


def sys_platform() -> str:
    import sys

    return "linux" if sys.platform.startswith("linux") else sys.platform


def test_doctor_warns_when_ollama_listens_on_every_interface(labrouter_home: Path) -> None:
    ctx = load_context()
    exposed = doctor.exposure_checks(ctx, {"OLLAMA_HOST": "0.0.0.0:11434"})
    assert exposed and not exposed[0].ok and exposed[0].advisory
    assert "0.0.0.0" in exposed[0].detail and "127.0.0.1" in exposed[0].fix


def test_the_answer_window_check_says_where_answers_go(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    ctx = _ctx(())
    ok = doctor.answer_window_check(ctx, {"DISPLAY": ":0"})
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    no_tk = doctor.answer_window_check(ctx, {"DISPLAY": ":0"})
    assert ok.ok and "window" in ok.detail
    assert not no_tk.ok and no_tk.advisory and "notifications" in no_tk.detail
    assert "python3-tk" in no_tk.fix
    off = doctor.answer_window_check(dataclasses.replace(ctx, config=dataclasses.replace(
        ctx.config, desktop=dataclasses.replace(ctx.config.desktop, answer="notification"))),
        {})
    assert off.ok and "off" in off.detail
