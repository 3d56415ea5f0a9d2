"""installers/install.sh and uninstall.sh, end to end, in a throwaway HOME (headless).

Installs from this checkout into a fresh venv the way a stock machine would: no C compiler
(``CC=/bin/false``, a PATH without gcc/cc/clang), no PyGObject, and none of pip's locally
built wheels (pip's download cache is shared, its wheel cache is not, so a dependency that
only installs by compiling fails here as it would on a fresh machine). Checks the launcher,
the cluster key, start at login and that `labrouter status` answers; re-runs the installer
(an upgrade in place); uninstalls, then purges, and checks that nothing is left in HOME and
no daemon is left running.

The daemon started by the installer is configured to stay on 127.0.0.1 with broadcast off
and free ports, so the test sends nothing to the network. Select it with ``-m installer``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL = ROOT / "installers" / "install.sh"
UNINSTALL = ROOT / "installers" / "uninstall.sh"

pytestmark = [pytest.mark.installer,
              pytest.mark.skipif(sys.platform == "win32", reason="install.sh is for POSIX")]


def _commands() -> set[str]:
    """The subcommands this checkout's CLI has (init, run, status land separately)."""
    cp = subprocess.run([sys.executable, "-m", "labrouter", "--help"], capture_output=True,
                        text=True, check=True, timeout=60)
    names: set[str] = set()
    for line in cp.stdout.splitlines():
        parts = line.split()
        if line.startswith("    ") and parts and not parts[0].startswith("-"):
            names.add(parts[0])
    return names


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _pip_cache() -> str:
    cp = subprocess.run([sys.executable, "-m", "pip", "cache", "dir"], capture_output=True,
                        text=True, check=False, timeout=60)
    return cp.stdout.strip() if cp.returncode == 0 else ""


COMPILERS = re.compile(r"^(cc|c\+\+|c89|c99|gcc|g\+\+|cpp|clang|clang\+\+|tcc|icc)(-[0-9.]+)?$"
                       r"|-(gcc|g\+\+|cc|c\+\+|cpp)(-[0-9.]+)?$")


def _path_without_compilers(farm: Path, path: str) -> str:
    """A PATH with every program of ``path`` except C/C++ compilers (symlinks in ``farm``)."""
    farm.mkdir()
    for d in path.split(os.pathsep):
        if not d or not os.path.isdir(d):
            continue
        for entry in os.scandir(d):
            if COMPILERS.search(entry.name) or (farm / entry.name).exists():
                continue
            if os.access(entry.path, os.X_OK) and not entry.is_dir():
                (farm / entry.name).symlink_to(entry.path)
    return str(farm)


def _pip_cache_without_built_wheels(cache: Path) -> str:
    """A pip cache sharing the real one's downloads but not the wheels pip built locally."""
    cache.mkdir()
    real = _pip_cache()
    if real:
        for name in ("http", "http-v2"):
            if (Path(real) / name).is_dir():
                (cache / name).symlink_to(Path(real) / name)
    return str(cache)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is dead for our purposes; /proc tells on Linux
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def test_install_upgrade_uninstall(tmp_path: Path) -> None:
    commands = _commands()
    home = tmp_path / "home"
    # what a real home has: the installer must not need them, nor remove them
    for d in (".config", ".local/share", ".local/bin", ".local/state"):
        (home / d).mkdir(parents=True)
    before = _files(home)

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("XDG_", "LABROUTER_")) and k not in ("DISPLAY",
                                                                   "WAYLAND_DISPLAY")}
    real_home = Path(os.environ.get("HOME", "~")).expanduser()
    # a stock machine: no C compiler, no PyGObject, no wheel that pip built here before
    no_cc = _path_without_compilers(tmp_path / "bin", env.get("PATH", os.defpath))
    env.update(HOME=str(home), PATH=f"{home / '.local/bin'}:{no_cc}", CC="/bin/false",
               CXX="/bin/false", PIP_CACHE_DIR=_pip_cache_without_built_wheels(
                   tmp_path / "pip-cache"),
               # the interpreter itself, not a venv's or a version manager's shim
               LABROUTER_PYTHON=os.path.realpath(getattr(sys, "_base_executable",
                                                         sys.executable)))
    for name in ("cc", "gcc", "clang"):
        assert shutil.which(name, path=env["PATH"]) is None, f"{name} is still on PATH"
    # toolchains that pip may probe keep their state in the real home, not the throwaway
    for var, d in (("RUSTUP_HOME", ".rustup"), ("CARGO_HOME", ".cargo")):
        if var not in env and (real_home / d).is_dir():
            env[var] = str(real_home / d)

    # keep the daemon on loopback, silent, on free ports
    config_dir = home / ".config" / "labrouter"
    config_dir.mkdir()
    (config_dir / "config.toml").write_text(
        "[cluster]\n"
        f'bind = "127.0.0.1"\nbroadcast = false\nport = {_free_port(socket.SOCK_DGRAM)}\n'
        f"[relay]\nenabled = false\nport = {_free_port(socket.SOCK_STREAM)}\n"
        f"[api]\nenabled = false\nport = {_free_port(socket.SOCK_STREAM)}\n")

    def sh(*argv: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=timeout, check=False)

    launcher = home / ".local/bin/labrouter"
    venv = home / ".local/share/labrouter/venv"
    pidfile = home / ".local/share/labrouter/run/installer-daemon.pid"
    pid = 0
    try:
        t0 = time.monotonic()
        cp = sh(INSTALL, "--headless")
        first_install = time.monotonic() - t0
        assert cp.returncode == 0, cp.stdout + cp.stderr
        install_out = cp.stdout
        print(f"\ninstall: {first_install:.1f} s")
        assert (venv / "bin" / "labrouter").exists()
        probe = ("import importlib.util as u, sys; "
                 "print(*(m for m in ('pynput', 'Xlib', 'evdev', 'gi') if u.find_spec(m)))")
        found = sh(venv / "bin" / "python", "-c", probe).stdout.split()
        # pynput and its X11 backend without evdev (a compiled module) or PyGObject
        assert found == (["pynput", "Xlib"] if sys.platform == "linux" else ["pynput"]), found
        assert launcher.exists() and os.access(launcher, os.X_OK)
        assert sh(launcher, "config", "validate").returncode == 0

        cp = sh(launcher, "autostart", "status")
        assert cp.returncode == 0, cp.stdout + cp.stderr
        assert str(venv / "bin" / "python") in cp.stdout

        if "init" in commands:
            assert (config_dir / "cluster.key").exists()
        if {"run", "status"} <= commands:
            if pidfile.exists():
                pid = int(pidfile.read_text())
            cp = sh(launcher, "status", timeout=30)
            assert cp.returncode == 0, cp.stdout + cp.stderr
            assert cp.stdout.strip()
            # the last line says which services run (relay and front door are off here)
            last = install_out.strip().splitlines()[-1]
            assert "; services: control up" in last, install_out
            assert "relay off ([relay] enabled = false)" in last
            assert "RETRYING" not in last and "FAILED" not in last

        # the upgrade also joins, with the code `init` printed (a machine may re-join)
        code = re.search(r"\bLR1-[A-Z0-9-]+", install_out) if "join" in commands else None
        t0 = time.monotonic()
        cp = sh(INSTALL, "--headless", *(("--join", code.group(0)) if code else ()))
        print(f"upgrade in place: {time.monotonic() - t0:.1f} s")
        assert cp.returncode == 0, cp.stdout + cp.stderr
        assert "upgrading the existing environment" in cp.stdout
        if code:
            assert "joining the cluster" in cp.stdout
        if pidfile.exists():
            pid = int(pidfile.read_text())

        cp = sh(UNINSTALL)
        assert cp.returncode == 0, cp.stdout + cp.stderr
        assert not venv.exists() and not launcher.exists()
        assert (config_dir / "config.toml").exists(), "the config is kept without --purge"
        if "init" in commands:
            assert (config_dir / "cluster.key").exists(), "the key is kept without --purge"
        cp = sh(UNINSTALL, "--purge")
        assert cp.returncode == 0, cp.stdout + cp.stderr
        assert _files(home) == before
        if pid:
            deadline = time.monotonic() + 10
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not _alive(pid), "the daemon is still running after uninstall"
    finally:
        if pid and _alive(pid):
            os.kill(pid, signal.SIGKILL)
        if venv.exists():
            shutil.rmtree(venv, ignore_errors=True)


def test_uninstall_never_stops_a_process_that_reused_the_daemon_pid(tmp_path: Path) -> None:
    # the pid file survives a reboot; the number it holds may then be someone else's
    home = tmp_path / "home"
    run_dir = home / ".local/share/labrouter/run"
    run_dir.mkdir(parents=True)
    other = subprocess.Popen(["sleep", "60"])
    try:
        (run_dir / "installer-daemon.pid").write_text(f"{other.pid}\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "LABROUTER_"))}
        env["HOME"] = str(home)
        cp = subprocess.run(["sh", str(UNINSTALL)], capture_output=True, text=True, env=env,
                            timeout=60, check=False)
        assert cp.returncode == 0, cp.stdout + cp.stderr
        assert other.poll() is None, "uninstall.sh killed a process that is not labrouter"
        assert "not labrouter any more" in cp.stdout
        assert not (run_dir / "installer-daemon.pid").exists()
    finally:
        other.kill()
        other.wait(5)
