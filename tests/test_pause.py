"""Pause file safety and process matching with real processes (psutil)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labrouter.app import pause as pause_mod
from labrouter.app.paths import make_private, resolve_paths, write_atomic
from labrouter.app.pause import DAMAGED_REASON, PauseState, load_pause, running_process, save_pause

LONG = "a-very-long-process-name"  # Linux's comm keeps 15 characters: "a-very-long-pro"


@pytest.fixture
def long_named_process(tmp_path: Path):  # type: ignore[no-untyped-def]
    sleep = shutil.which("sleep")
    if sleep is None or sys.platform == "win32":
        pytest.skip("needs a sleep binary")
    exe = tmp_path / LONG
    shutil.copy(sleep, exe)
    exe.chmod(0o755)
    proc = subprocess.Popen([str(exe), "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_a_long_process_name_matches(long_named_process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    found = ""
    while not found and time.monotonic() < deadline:  # the exec may not have happened yet
        found = running_process(["nothing-else", LONG])
    assert found == LONG
    assert running_process([LONG.upper() + ".exe"]).lower() == LONG
    # the truncated name is not what the user wrote, and a prefix is not a match
    assert running_process(["a-very-long"]) == ""


def test_no_names_or_no_such_process() -> None:
    assert running_process([]) == running_process(["  "]) == ""
    assert running_process(["no-such-process-xyz-123"]) == ""


@pytest.mark.parametrize("content", [
    b'{"paused": true, "reason": "rent', b"", b"[1, 2]", b"\xff\xfe garbage",
    b'{"paused": false, "until": "soon"}', b'{"paused": true, "until": 1e400}',
])
def test_a_damaged_pause_file_keeps_the_machine_paused(tmp_path: Path, content: bytes) -> None:
    f = tmp_path / "pause.json"
    f.write_bytes(content)
    st = load_pause(f, 1_700_000_000.0)
    assert st.paused and st.damaged and st.reason == DAMAGED_REASON and st.until is None
    save_pause(f, PauseState())  # what `labrouter resume` does
    assert load_pause(f, 1_700_000_000.0) == PauseState()


def test_no_pause_file_is_not_paused(tmp_path: Path) -> None:
    assert load_pause(tmp_path / "pause.json", 0.0) == PauseState()


def test_pause_writes_are_forced_to_disk_before_the_rename(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("replace"),
                                                     real_replace(a, b))[1])
    f = tmp_path / "pause.json"
    save_pause(f, PauseState(True, "rented", None))
    assert events == ["fsync", "replace"]
    assert load_pause(f, 0.0).reason == "rented"
    if os.name != "nt":
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert pause_mod.PauseState.__dataclass_fields__["damaged"].default is False


@pytest.mark.skipif(os.name == "nt", reason="POSIX modes")
def test_make_private_closes_dirs_and_files(labrouter_home: Path) -> None:
    paths = resolve_paths()
    for d in (paths.config_dir, paths.data_dir, paths.log_dir):
        d.mkdir(parents=True, mode=0o755)
        (d / "file").write_text("x")
        (d / "file").chmod(0o644)
    write_atomic(paths.data_dir / "speeds.json", "{}")
    make_private(paths)
    for d in (paths.config_dir, paths.data_dir, paths.log_dir, paths.run_dir):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    for f in (paths.config_dir / "file", paths.data_dir / "file", paths.log_dir / "file",
              paths.data_dir / "speeds.json"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_doctor_and_status_say_a_pause_file_is_damaged(labrouter_home: Path) -> None:
    from labrouter.app.doctor import pause_checks
    from labrouter.app.settings import load_context

    ctx = load_context()
    assert pause_checks(ctx) == []
    ctx.paths.pause_file.parent.mkdir(parents=True, exist_ok=True)
    ctx.paths.pause_file.write_text('{"paused": tr')
    [check] = pause_checks(ctx)
    assert not check.ok and "damaged" in check.detail and "resume" in check.fix


def test_a_daemon_started_with_a_damaged_pause_file_stays_paused_and_says_so(
        labrouter_home: Path) -> None:
    from tests.test_daemon import FakeBackend, make_daemon

    pause_file = labrouter_home / "data" / "pause.json"
    pause_file.parent.mkdir(parents=True, exist_ok=True)
    pause_file.write_text('{"paused": true, "reason": "rented until fri')  # cut short
    d = make_daemon(labrouter_home, FakeBackend("x", [], []))
    st = d.status()
    assert st["paused"] and st["pause_damaged"] and "damaged" in st["pause_reason"]
    assert d._self_peer().paused and "damaged" in d._self_peer().pause_reason  # announced
    if os.name != "nt":
        assert stat.S_IMODE(pause_file.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(pause_file.stat().st_mode) == 0o600
