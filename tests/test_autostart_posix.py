"""Linux and macOS back-ends: files on disk in a throwaway HOME, service managers faked,
and the `labrouter autostart` CLI round trip (enable -> status -> disable) for real."""

from __future__ import annotations

import os
import plistlib
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from labrouter.autostart import ABSENT, DISABLED_BY_USER, ENABLED, STALE
from labrouter.autostart.linux import LinuxAutostart
from labrouter.autostart.macos import LaunchAgentAutostart
from labrouter.autostart.render import LABEL, Installation


class FakeRunner:
    """Records commands; answers with the return code given per program + first arg."""

    def __init__(self, codes: dict[tuple[str, ...], int] | None = None,
                 default: int = 0) -> None:
        self.calls: list[list[str]] = []
        self.codes = codes or {}
        self.default = default

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        argv = list(argv)
        self.calls.append(argv)
        for prefix, rc in self.codes.items():
            if tuple(argv[: len(prefix)]) == prefix:
                return subprocess.CompletedProcess(argv, rc, "", "fake error" if rc else "")
        return subprocess.CompletedProcess(argv, self.default, "active", "")


def inst(tmp_path: Path, **kw: object) -> Installation:
    base: dict[str, object] = {"python": sys.executable, "log_dir": str(tmp_path / "log")}
    base.update(kw)
    return Installation(**base)  # type: ignore[arg-type]


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# --- Linux ----------------------------------------------------------------------------

def test_linux_desktop_round_trip(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    auto = LinuxAutostart(home=home, env={}, runner=FakeRunner(default=1))
    i = inst(tmp_path)
    assert auto.status(i)[0].state == ABSENT
    auto.enable(i)
    assert (home / ".config/autostart/labrouter.desktop").exists()
    assert auto.status(i)[0].state == ENABLED
    auto.enable(i)  # idempotent
    assert tree(home) == [".config", ".config/autostart", ".config/autostart/labrouter.desktop"]
    auto.disable()
    assert tree(home) == [".config"]


def test_linux_headless_without_systemd_links_the_unit_by_hand(tmp_path: Path) -> None:
    home = tmp_path / "home"
    runner = FakeRunner({("systemctl", "--user", "show-environment"): 1})
    auto = LinuxAutostart(home=home, env={"XDG_CONFIG_HOME": str(tmp_path / "cfg")},
                          runner=runner)
    i = inst(tmp_path, headless=True)
    out = auto.enable(i)
    assert any("cannot be reached" in line for line in out)
    link = tmp_path / "cfg/systemd/user/default.target.wants/labrouter.service"
    assert link.is_symlink() and link.resolve() == auto.unit_path.resolve()
    st = auto.status(i)
    assert [s.state for s in st] == [ENABLED]
    assert any("not reachable" in n for n in st[0].notes)
    auto.disable()
    assert not link.exists() and not link.is_symlink() and not auto.unit_path.exists()
    assert not (home / ".config").exists()


def test_linux_headless_with_systemd(tmp_path: Path) -> None:
    runner = FakeRunner()
    auto = LinuxAutostart(home=tmp_path, env={}, runner=runner)
    i = inst(tmp_path, headless=True)
    out = auto.enable(i)
    assert ["systemctl", "--user", "enable", "labrouter.service"] in runner.calls
    assert ["systemctl", "--user", "restart", "labrouter.service"] in runner.calls
    assert any("started by systemd" in line for line in out)
    runner.calls.clear()
    auto.enable(i)  # unchanged unit: start (a no-op when running), not restart
    assert ["systemctl", "--user", "start", "labrouter.service"] in runner.calls
    runner.calls.clear()
    auto.disable()
    assert ["systemctl", "--user", "disable", "--now", "labrouter.service"] in runner.calls


def test_linux_switching_mode_keeps_one_entry(tmp_path: Path) -> None:
    auto = LinuxAutostart(home=tmp_path, env={}, runner=FakeRunner(default=1))
    auto.enable(inst(tmp_path, headless=True))
    auto.enable(inst(tmp_path, headless=False))
    assert not auto.unit_path.exists() and auto.desktop_path.exists()
    auto.enable(inst(tmp_path, headless=True))
    assert auto.unit_path.exists() and not auto.desktop_path.exists()


def test_linux_moved_install_and_user_switch_off(tmp_path: Path) -> None:
    auto = LinuxAutostart(home=tmp_path, env={}, runner=FakeRunner(default=1))
    auto.enable(inst(tmp_path, python="/gone/venv/bin/python"))
    st = auto.status(inst(tmp_path))[0]
    assert st.state == STALE and "/gone/venv/bin/python" in st.why[0]
    auto.enable(inst(tmp_path))
    assert auto.status(inst(tmp_path))[0].state == ENABLED
    text = auto.desktop_path.read_text().replace("X-GNOME-Autostart-enabled=true",
                                                 "X-GNOME-Autostart-enabled=false")
    auto.desktop_path.write_text(text)
    assert auto.status(inst(tmp_path))[0].state == DISABLED_BY_USER
    auto.enable(inst(tmp_path))
    assert auto.status(inst(tmp_path))[0].state == ENABLED


# --- macOS ----------------------------------------------------------------------------

def test_macos_round_trip_with_launchctl(tmp_path: Path) -> None:
    runner = FakeRunner({("launchctl", "bootout"): 3})
    auto = LaunchAgentAutostart(home=tmp_path, runner=runner, uid=501)
    i = inst(tmp_path, home="/srv/lab")
    out = auto.enable(i)
    plist = tmp_path / f"Library/LaunchAgents/{LABEL}.plist"
    doc = plistlib.loads(plist.read_bytes())
    assert doc["EnvironmentVariables"]["LABROUTER_HOME"] == "/srv/lab"
    assert ["launchctl", "bootstrap", "gui/501", str(plist)] in runner.calls
    assert runner.calls.index(["launchctl", "bootout", f"gui/501/{LABEL}"]) < \
        runner.calls.index(["launchctl", "bootstrap", "gui/501", str(plist)])
    assert any("started by launchd" in line for line in out)
    assert (tmp_path / "log").is_dir()  # launchd does not create the log dir
    st = auto.status(i)[0]
    assert st.state == ENABLED and st.running == "loaded in launchd"
    assert auto.status(inst(tmp_path))[0].state == STALE  # other LABROUTER_HOME
    auto.disable()
    assert not plist.exists()


def test_macos_without_launchctl_still_writes(tmp_path: Path) -> None:
    auto = LaunchAgentAutostart(home=tmp_path, runner=FakeRunner(default=127), uid=501)
    out = auto.enable(inst(tmp_path))
    assert any("next login" in line for line in out)
    assert auto.status(inst(tmp_path))[0].state == ENABLED
    assert auto.status(inst(tmp_path))[0].running == ""


# --- the CLI, for real, on this machine -------------------------------------------------

def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "labrouter", *args], capture_output=True,
                          text=True, env=env, timeout=60, check=False)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux round trip")
@pytest.mark.parametrize("headless", [True, False])
def test_cli_enable_status_disable(tmp_path: Path, headless: bool) -> None:
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)  # a real home has one; enable must not need it
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"),
               LABROUTER_HOME=str(tmp_path / "lab"))
    if not headless:
        env["DISPLAY"] = ":99"  # only consulted to choose the entry: nothing connects
    before = tree(home)
    cp = _cli(["autostart", "status"], env)
    assert cp.returncode == 3, cp.stdout + cp.stderr
    cp = _cli(["autostart", "enable"], env)
    assert cp.returncode == 0, cp.stderr
    cp = _cli(["autostart", "enable"], env)  # idempotent
    assert cp.returncode == 0 and "already up to date" in cp.stdout
    cp = _cli(["autostart", "status"], env)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert f"LABROUTER_HOME: {tmp_path / 'lab'}" in cp.stdout
    assert ("systemd user unit" if headless else "XDG autostart") in cp.stdout
    # another installation asks: the entry is reported stale, exit 1
    other = dict(env, LABROUTER_HOME=str(tmp_path / "elsewhere"))
    cp = _cli(["autostart", "status"], other)
    assert cp.returncode == 1 and "stale" in cp.stdout
    cp = _cli(["autostart", "disable"], env)
    assert cp.returncode == 0, cp.stderr
    assert _cli(["autostart", "status"], env).returncode == 3
    # the unit may have been started by a real systemd: only our entries may remain gone
    assert tree(home) == before


def test_cli_show_every_platform(tmp_path: Path) -> None:
    env = dict(os.environ, LABROUTER_HOME=str(tmp_path / "lab"), DISPLAY=":99")
    for platform, needle in (("macos", "<key>ProgramArguments</key>"),
                             ("windows", "pythonw.exe\" -m labrouter run"
                              if " " in os.environ.get("USER", "") else "pythonw.exe -m"),
                             ("linux", "[Desktop Entry]")):
        cp = _cli(["autostart", "show", "--platform", platform], env)
        assert cp.returncode == 0, cp.stderr
        assert needle in cp.stdout
    cp = _cli(["autostart", "show", "--platform", "linux", "--headless"], env)
    assert "WantedBy=default.target" in cp.stdout and "enable-linger" in cp.stdout


def test_macos_bootstrap_retried_after_bootout(tmp_path: Path) -> None:
    answers = iter([5, 5, 0])

    def runner(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        rc = next(answers) if argv[1] == "bootstrap" else 0
        return subprocess.CompletedProcess(list(argv), rc, "", "Input/output error" if rc else "")

    slept: list[float] = []
    auto = LaunchAgentAutostart(home=tmp_path, runner=runner, uid=501, sleep=slept.append)
    out = auto.enable(inst(tmp_path))
    assert any("started by launchd" in line for line in out) and len(slept) == 2


def test_same_program_is_one_folder_one_file(tmp_path: Path) -> None:
    from labrouter.autostart import same_program

    base = tmp_path / "base" / "python3.11"
    base.parent.mkdir()
    base.write_text("")
    venv, other = tmp_path / "venv" / "bin", tmp_path / "other" / "bin"
    for d in (venv, other):
        d.mkdir(parents=True)
        (d / "python").symlink_to(base)
        (d / "python3").symlink_to(base)
    assert same_program(str(venv / "python"), str(venv / "python3"))
    assert not same_program(str(venv / "python"), str(other / "python"))
    assert not same_program(str(venv / "python"), str(venv / "gone"))
    # an entry written by `python3 -m labrouter` is current for `python -m labrouter`
    auto = LinuxAutostart(home=tmp_path, env={}, runner=FakeRunner(default=1))
    auto.enable(inst(tmp_path, python=str(venv / "python3")))
    assert auto.status(inst(tmp_path, python=str(venv / "python")))[0].state == ENABLED
    assert auto.status(inst(tmp_path, python=str(other / "python")))[0].state == STALE


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="XDG paths")
def test_cli_says_what_is_wrong_when_the_config_dir_is_a_file(tmp_path: Path) -> None:
    # XDG_CONFIG_HOME naming a file used to end `enable` with a NotADirectoryError traceback
    afile = tmp_path / "not-a-dir"
    afile.write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(afile),
               LABROUTER_HOME=str(tmp_path / "lab"))
    cp = _cli(["autostart", "enable"], env)
    assert cp.returncode != 0
    assert "Traceback" not in cp.stderr, cp.stderr
    assert "could not enable start at login" in cp.stderr
    assert "XDG_CONFIG_HOME" in cp.stderr
