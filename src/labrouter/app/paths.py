"""Where labrouter keeps things on disk.

Owns the one table of locations: config dir (config.toml, the cluster keyring, the node
id), data dir (usage logs, learned speeds, pause state), log dir (the daemon log) and run
dir (lock and control-channel file). ``LABROUTER_HOME=DIR`` puts all of them under one
folder, for portable installs, tests and several daemons on one machine.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

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
    ensure_dir(path.parent)
    tmp = _tmp_for(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # a failed write leaves no stray file behind


def _tmp_for(path: Path) -> Path:
    # one per process and thread: two `labrouter ask` saving the speed table at once must
    # not write into, or rename away, each other's temporary file
    return path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
