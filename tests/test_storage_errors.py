"""No tracebacks from ordinary mistakes with folders (issue 12, item 8).

LABROUTER_HOME pointing at a file, a folder where a file belongs, folders a ``sudo`` run
left owned by root, a full disk, a read-only disk: `run`, `init` and `pause` print one
line naming the path and one with the fix, and exit 2 (a path that is wrong) or 1. CI
runs as root, which may write anywhere, so permission and disk errors are raised at the
OS boundary by tests/fakes/oserrors.py; files in the way are real.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labrouter.app.paths import storage_error

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [["init"], ["pause", "--reason", "x"], ["run", "--headless"]]


def _run(home: Path, *argv: str, fail: tuple[str, Path] | None = None
         ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABROUTER_")}
    env.update(LABROUTER_HOME=str(home), LABROUTER_LOOPBACK_ONLY="1",
               PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    cmd = [sys.executable, "-m", "labrouter", *argv] if fail is None else [
        sys.executable, "-m", "tests.fakes.oserrors", fail[0], str(fail[1]), "--",
        "labrouter", *argv]
    # a daemon that starts after all would be a failure: the timeout ends it
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60,
                          check=False, cwd=ROOT)


def _one_error(cp: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    assert cp.returncode == code, cp.stdout + cp.stderr
    assert "Traceback" not in cp.stderr, cp.stderr
    lines = [ln for ln in cp.stderr.splitlines() if ln.startswith("labrouter: ")]
    assert lines, cp.stderr
    for w in words:
        assert w in cp.stderr, (w, cp.stderr)
    return lines[-1]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: a[0])
def test_labrouter_home_that_is_a_file(tmp_path: Path, argv: list[str]) -> None:
    home = tmp_path / "home"
    home.write_text("not a folder")
    cp = _run(home, *argv)
    _one_error(cp, 2, f"LABROUTER_HOME={home} is a file, not a folder", "Point LABROUTER_HOME")


@pytest.mark.parametrize("argv", COMMANDS[1:], ids=lambda a: a[0])
def test_a_file_where_the_data_folder_belongs(tmp_path: Path, argv: list[str]) -> None:
    (tmp_path / "data").write_text("")
    cp = _run(tmp_path, *argv)
    _one_error(cp, 2, f"{tmp_path / 'data'}: it is a file, not a folder",
               f"Move or remove {tmp_path / 'data'}")


def test_a_file_where_the_config_folder_belongs(tmp_path: Path) -> None:
    (tmp_path / "config").write_text("")
    cp = _run(tmp_path, "init")
    assert cp.returncode == 2 and "Traceback" not in cp.stderr
    assert f"{tmp_path / 'config'}" in cp.stderr and "Not a directory" in cp.stderr


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: a[0])
def test_folders_left_owned_by_root(tmp_path: Path, argv: list[str]) -> None:
    for d in ("config", "data/run", "log"):
        (tmp_path / d).mkdir(parents=True)
    cp = _run(tmp_path, *argv, fail=("EACCES", tmp_path))
    line = _one_error(cp, 1, "permission denied", 'sudo chown -R "$USER"')
    assert str(tmp_path) in line


def test_no_folder_yet_and_the_parent_not_writable(tmp_path: Path) -> None:
    cp = _run(tmp_path / "new", "pause", fail=("EACCES", tmp_path))
    _one_error(cp, 1, f"cannot write {tmp_path / 'new'}", "permission denied")


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: a[0])
def test_a_full_disk(tmp_path: Path, argv: list[str]) -> None:
    (tmp_path / "data").mkdir()
    cp = _run(tmp_path, *argv, fail=("ENOSPC", tmp_path))
    _one_error(cp, 1, "the disk is full", "Free some space")


def test_a_read_only_disk(tmp_path: Path) -> None:
    cp = _run(tmp_path, "pause", fail=("EROFS", tmp_path))
    _one_error(cp, 1, "read-only", "LABROUTER_HOME")


def test_other_os_errors_are_not_storage_errors() -> None:
    assert storage_error(ConnectionRefusedError(errno.ECONNREFUSED, "refused")) is None
    assert storage_error(OSError(errno.EACCES, "Permission denied")) is None  # no path
    err = storage_error(OSError(errno.EACCES, "Permission denied", "/x/pause.json.12-34.tmp"))
    assert err is not None and "/x/pause.json:" in err.message  # the real name, not the tmp
