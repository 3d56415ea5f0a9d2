"""Where labrouter keeps things on disk.

Owns the one table of locations: config dir (config.toml, the cluster keyring, the node
id), data dir (usage logs, learned speeds, pause state), log dir (the daemon log) and run
dir (lock and control-channel file). ``LABROUTER_HOME=DIR`` puts all of them under one
folder, for portable installs, tests and several daemons on one machine.

Also owns what an OS error about one of these paths means to the user
(``storage_error``): a file where a folder belongs, a folder that a ``sudo`` run left
owned by root, a full or read-only disk, each in one line with the path and the fix.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import StorageError

APP = "labrouter"


@dataclass(frozen=True)
class Paths:
    config_dir: Path
    data_dir: Path
    log_dir: Path
    run_dir: Path
    config_file: Path

    @property
    def keyring_file(self) -> Path:
        return self.config_dir / "cluster.key"

    @property
    def node_id_file(self) -> Path:
        return self.data_dir / "node-id"

    @property
    def control_file(self) -> Path:
        return self.run_dir / "control.json"

    @property
    def lock_file(self) -> Path:
        return self.run_dir / "daemon.lock"

    @property
    def daemon_log(self) -> Path:
        return self.log_dir / "labrouter.log"

    @property
    def speeds_file(self) -> Path:
        return self.data_dir / "speeds.json"

    @property
    def pause_file(self) -> Path:
        return self.data_dir / "pause.json"

    @property
    def tls_dir(self) -> Path:
        return self.config_dir / "tls"

    def as_dict(self) -> dict[str, str]:
        return {
            "config": str(self.config_file),
            "config_dir": str(self.config_dir),
            "data": str(self.data_dir),
            "log": str(self.log_dir),
            "run": str(self.run_dir),
            "keyring": str(self.keyring_file),
        }


def resolve_paths(config_override: str | None = None,
                  env: Mapping[str, str] | None = None) -> Paths:
    """Locations from LABROUTER_HOME, else platformdirs; --config overrides the file only."""
    env = os.environ if env is None else env
    home = env.get("LABROUTER_HOME", "").strip()
    if home:
        root = Path(home).expanduser().absolute()
        config_dir, data_dir, log_dir, run_dir = (root / "config", root / "data", root / "log",
                                                  root / "run")
    else:
        import platformdirs

        dirs = platformdirs.PlatformDirs(APP, appauthor=False)
        config_dir = Path(dirs.user_config_dir)
        data_dir = Path(dirs.user_data_dir)
        log_dir = Path(dirs.user_log_dir)
        # the lock and control file live beside the data: a per-user runtime dir is not
        # there on every OS (no XDG_RUNTIME_DIR under cron, containers, Windows)
        run_dir = data_dir / "run"
    config_file = (Path(config_override).expanduser().absolute() if config_override
                   else config_dir / "config.toml")
    return Paths(config_dir, data_dir, log_dir, run_dir, config_file)


def check_home(env: Mapping[str, str] | None = None) -> None:
    """Refuse a ``LABROUTER_HOME`` that is a file (every path under it would fail)."""
    env = os.environ if env is None else env
    home = env.get("LABROUTER_HOME", "").strip()
    if home and os.path.exists(home) and not os.path.isdir(home):
        raise StorageError(f"LABROUTER_HOME={home} is a file, not a folder",
                           hint="Point LABROUTER_HOME at a folder (it is created if missing), "
                                "or unset it to use the usual places.", exit_code=2)


# OS errors that mean "this path cannot be used" (not a bug, not the network)
_STORAGE_ERRNOS = {errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR, errno.EEXIST,
                   errno.ENOSPC, errno.EROFS, errno.ENAMETOOLONG, errno.ELOOP,
                   getattr(errno, "EDQUOT", errno.ENOSPC)}


_TMP_SUFFIX = re.compile(r"\.\d+-\d+\.tmp$")


def storage_error(exc: OSError) -> StorageError | None:
    """One line with the path and the fix for an OS error about a path; None otherwise."""
    if exc.errno not in _STORAGE_ERRNOS or not exc.filename:
        return None
    path = Path(os.fsdecode(exc.filename))
    if _TMP_SUFFIX.search(path.name):  # write_atomic's temporary name: show the real one
        path = path.with_name(_TMP_SUFFIX.sub("", path.name))
    why = exc.strerror or str(exc)
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        blocker = _file_in_the_way(path)
        if blocker is not None:
            return StorageError(
                f"cannot use {path}: " + ("it is" if blocker == path else f"{blocker} is")
                + " a file, not a folder",
                hint=f"Move or remove {blocker}, or set LABROUTER_HOME to another folder.",
                exit_code=2)
    if exc.errno == errno.EISDIR:
        return StorageError(f"cannot use {path}: it is a folder, a file belongs there",
                            hint=f"Move or remove the folder {path}.", exit_code=2)
    if exc.errno in (errno.EACCES, errno.EPERM):
        where = _nearest_existing(path)
        owner = _owner(where)
        return StorageError(
            f"cannot write {path}: permission denied"
            + (f" ({where} belongs to {owner})" if owner else ""),
            hint=(f'Give it back to yourself: sudo chown -R "$USER" {where} (a `sudo '
                  "labrouter ...` run leaves files owned by root), or set LABROUTER_HOME "
                  "to a folder you own." if os.name != "nt" else
                  f"Check the permissions of {where}, or set LABROUTER_HOME to a folder "
                  "you own."))
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return StorageError(f"cannot write {path}: the disk is full ({why})",
                            hint="Free some space on that disk, then try again.")
    if exc.errno == errno.EROFS:
        return StorageError(f"cannot write {path}: the file system is read-only",
                            hint="Set LABROUTER_HOME to a folder on a writable disk.")
    return StorageError(f"cannot use {path}: {why}",
                        hint="Check the path, or set LABROUTER_HOME to another folder.")


def _file_in_the_way(path: Path) -> Path | None:
    """The first part of ``path`` (from the root down) that exists and is not a folder."""
    for part in reversed([path, *path.parents]):
        try:
            if part.exists() and not part.is_dir():
                return part
        except OSError:
            return None
    return None


def _nearest_existing(path: Path) -> Path:
    for part in [path, *path.parents]:
        try:
            if part.exists():
                # a file that exists is fine; its folder is what must be writable when
                # the file is to be created next to it
                return part
        except OSError:
            continue
    return path


def _owner(path: Path) -> str:
    if sys.platform == "win32":
        return ""
    try:
        import pwd

        return pwd.getpwuid(path.stat().st_uid).pw_name
    except (OSError, KeyError, ImportError):
        return ""


def ensure_dir(path: Path, private: bool = False) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    if private and os.name != "nt":
        path.chmod(stat.S_IRWXU)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write a secret: created 0600 before any byte is written, replaced atomically."""
    ensure_dir(path.parent)
    tmp = _tmp_for(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        if os.name != "nt":
            # the mode of O_CREAT applies only to a new file: a leftover .tmp keeps its own
            os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if os.name != "nt":
        path.chmod(0o600)


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: owner-only (0600), forced to disk before the rename,
    so a crash leaves the old file or the new one, never an empty one."""
    ensure_dir(path.parent)
    tmp = _tmp_for(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, text.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a failed write leaves no stray file behind


def make_private(paths: Paths) -> None:
    """Owner-only: the config, data, log and run dirs 0700 and the files in them 0600.

    Files made later are private by the directory they are in (and ``write_atomic`` and the
    usage log create theirs 0600). The process umask is left alone: it would also apply to
    what labrouter writes for other programs (autostart entries).

    The log holds prompts' previews, the data the usage and node id, the config dir the
    cluster key and the relay certificate: none is for other users of the machine. A no-op
    on Windows, where the per-user folders are private already.
    """
    if os.name == "nt":
        return
    for d in (paths.config_dir, paths.data_dir, paths.log_dir, paths.run_dir, paths.tls_dir):
        ensure_dir(d, private=True)
        for f in d.iterdir():
            try:
                st = f.lstat()
                if stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid() and \
                        st.st_mode & 0o077:
                    f.chmod(0o600)
            except OSError:
                continue  # gone meanwhile, or not ours to change


def _tmp_for(path: Path) -> Path:
    # one per process and thread: two `labrouter ask` saving the speed table at once must
    # not write into, or rename away, each other's temporary file
    return path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
