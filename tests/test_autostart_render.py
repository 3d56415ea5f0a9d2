"""The rendered start-at-login entries, checked by the tools that consume them."""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from labrouter.autostart import detect_installation
from labrouter.autostart.render import (
    APPROVED_ENABLED,
    LABEL,
    Installation,
    approved_is_enabled,
    desktop_exec_quote,
    differences,
    expected_entry,
    parse_desktop_file,
    parse_plist,
    parse_run_command,
    parse_systemd_unit,
    render_desktop_file,
    render_plist,
    render_run_command,
    render_systemd_unit,
    split_windows_command,
)

ODD_HOME = "/tmp/lab home/it's \"odd\" $x %h\\"


def inst(**kw: object) -> Installation:
    base: dict[str, object] = {"python": sys.executable, "log_dir": "/tmp/labrouter-log",
                               "path_env": "/opt/bin:/usr/bin:/bin"}
    base.update(kw)
    return Installation(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("headless", [False, True])
@pytest.mark.parametrize("home", [None, "/srv/lab"])
def test_plist_keys(headless: bool, home: str | None) -> None:
    doc = plistlib.loads(render_plist(inst(headless=headless, home=home)))
    assert doc["Label"] == LABEL
    args = doc["ProgramArguments"]
    assert args[:4] == [sys.executable, "-m", "labrouter", "run"]
    assert Path(args[0]).is_absolute()
    assert ("--headless" in args) is headless
    assert doc["RunAtLoad"] is True
    assert doc["KeepAlive"] == {"SuccessfulExit": False}
    assert doc["ProcessType"] == "Interactive"
    env = doc["EnvironmentVariables"]
    assert env["PATH"] == "/opt/bin:/usr/bin:/bin"
    assert env["LC_CTYPE"] == "UTF-8"
    assert env.get("LABROUTER_HOME") == home
    assert doc["StandardOutPath"].startswith("/tmp/labrouter-log/")
    assert doc["StandardErrorPath"].startswith("/tmp/labrouter-log/")


@pytest.mark.parametrize("home", [None, "/srv/lab", ODD_HOME])
def test_every_entry_reads_back(home: str | None) -> None:
    for headless in (False, True):
        i = inst(headless=headless, home=home)
        expected = expected_entry(i)
        assert parse_plist(render_plist(i)) == expected
        assert parse_desktop_file(render_desktop_file(i)).command == expected.command
        assert parse_desktop_file(render_desktop_file(i)).home == home
        assert parse_systemd_unit(render_systemd_unit(i)) == expected


def test_differences_name_the_moved_interpreter() -> None:
    old = expected_entry(inst(python="/old/venv/bin/python"))
    why = differences(old, expected_entry(inst()))
    assert why and "/old/venv/bin/python" in why[0]
    assert differences(expected_entry(inst()), expected_entry(inst())) == []
    assert differences(expected_entry(inst(home="/a")), expected_entry(inst())) != []


@pytest.mark.parametrize("arg", ["plain", "with space", 'q"uote', "back\\slash", "$var",
                                 "50%", "`tick`", ""])
def test_desktop_exec_quoting_round_trips(arg: str) -> None:
    i = inst(home=arg or None)
    entry = parse_desktop_file(render_desktop_file(i))
    assert entry.home == (arg or None)
    assert "%" not in desktop_exec_quote("50%").replace("%%", "")


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["desktop-file-validate", str(path)], capture_output=True,
                          text=True, check=False)


@pytest.mark.skipif(not shutil.which("desktop-file-validate"),
                    reason="desktop-file-validate not installed (apt desktop-file-utils)")
@pytest.mark.parametrize("home", [None, ODD_HOME])
def test_desktop_file_validates(tmp_path: Path, home: str | None) -> None:
    path = tmp_path / "labrouter.desktop"
    path.write_text(render_desktop_file(inst(home=home, python="/opt/lab router/bin/python")))
    cp = _validate(path)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    # warnings are printed with rc 0: the file must be clean, not merely accepted
    assert "error" not in (cp.stdout + cp.stderr).lower(), cp.stdout + cp.stderr


def _verify(unit: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if not env.get("XDG_RUNTIME_DIR"):
        # a container has no /run/user/<uid>; the user manager only needs some private dir
        run = tmp_path / "xdg-runtime"
        run.mkdir(mode=0o700, exist_ok=True)
        env["XDG_RUNTIME_DIR"] = str(run)
    return subprocess.run(["systemd-analyze", "--user", "verify", str(unit)],
                          capture_output=True, text=True, check=False, env=env)


def _systemd_verify_works(tmp_path: Path) -> str:
    """'' when `systemd-analyze --user verify` works here, else why it does not."""
    if not shutil.which("systemd-analyze"):
        return "systemd-analyze not installed"
    probe = tmp_path / "probe-known-good.service"
    probe.write_text("[Service]\nType=oneshot\nExecStart=/bin/true\n\n"
                     "[Install]\nWantedBy=default.target\n")
    cp = _verify(probe, tmp_path)
    if cp.returncode != 0:
        return ("systemd-analyze cannot verify even a known-good unit here (a container "
                f"without a user manager?): {(cp.stderr or cp.stdout).strip()[:300]}")
    return ""


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    reason = _systemd_verify_works(tmp_path)
    if reason:
        pytest.skip(reason)
    for home in (None, "/srv/lab home"):
        unit = tmp_path / "labrouter.service"
        unit.write_text(render_systemd_unit(inst(headless=True, home=home)))
        cp = _verify(unit, tmp_path)
        assert cp.returncode == 0, cp.stderr + cp.stdout
        assert "labrouter.service" not in cp.stderr, cp.stderr
    # and the check has teeth: a unit with a relative ExecStart is rejected
    bad = tmp_path / "bad.service"
    bad.write_text("[Service]\nExecStart=python -m labrouter run\nRestart=sometimes\n")
    assert "bad.service" in _verify(bad, tmp_path).stderr


def test_systemd_unit_content() -> None:
    text = render_systemd_unit(inst(headless=True, home="/srv/lab"))
    assert "WantedBy=default.target" in text
    assert "Restart=on-failure" in text
    assert f"ExecStart={sys.executable} -m labrouter run --headless" in text
    assert "Environment=LABROUTER_HOME=/srv/lab" in text


@pytest.mark.parametrize("home", [None, "C:\\Lab Home\\x", "C:\\it's\\"])
def test_run_command_uses_pythonw_and_round_trips(home: str | None) -> None:
    i = Installation(python="C:\\Program Files\\Py\\python.exe",
                     gui_python="C:\\Program Files\\Py\\pythonw.exe", log_dir="C:\\logs",
                     home=home)
    line = render_run_command(i)
    assert line.startswith('"C:\\Program Files\\Py\\pythonw.exe"')
    entry = parse_run_command(line)
    assert entry == expected_entry(i, gui=True)


@pytest.mark.parametrize("argv", [["a b", "c"], ['x"y', "z\\"], ["C:\\p\\", "-m"], [""]])
def test_windows_split_inverts_list2cmdline(argv: list[str]) -> None:
    assert split_windows_command(subprocess.list2cmdline(argv)) == argv


def test_approved_flag() -> None:
    assert approved_is_enabled(None)
    assert approved_is_enabled(APPROVED_ENABLED)
    assert not approved_is_enabled(bytes([3] + [0] * 11))


def test_frozen_app_takes_the_subcommand_directly() -> None:
    i = inst(python="/Applications/labrouter.app/Contents/MacOS/labrouter", frozen=True)
    assert i.command() == ("/Applications/labrouter.app/Contents/MacOS/labrouter", "run")


def test_detect_installation(tmp_path: Path) -> None:
    scripts = tmp_path / "Scripts"
    scripts.mkdir()
    (scripts / "pythonw.exe").write_text("")
    i = detect_installation("/logs", headless=False, env={"LABROUTER_HOME": "~/lab"},
                            executable=str(scripts / "python.exe"), frozen=False,
                            platform="win32")
    assert i.gui_python == str(scripts / "pythonw.exe")
    assert i.home == str(Path("~/lab").expanduser())
    linux = detect_installation("/logs", headless=True, env={}, executable="bin/python",
                                frozen=False, platform="linux")
    assert Path(linux.python).is_absolute() and linux.home is None and linux.headless
