"""Loading the configuration file for the running program.

Owns reading ``config.toml`` from disk with the environment and host name that
``core/config.py`` must not read itself. A missing file is not an error: zero config works.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from ..core.config import Config, parse_config
from ..core.errors import ConfigError
from .paths import Paths, resolve_paths


@dataclass(frozen=True)
class Context:
    """What every command needs: where things are and the effective configuration."""

    paths: Paths
    config: Config
    config_exists: bool


def load_config(path: Path, env: dict[str, str] | None = None) -> tuple[Config, bool]:
    env = dict(os.environ) if env is None else env
    host = socket.gethostname().split(".")[0] or "this-machine"
    if not path.exists():
        return parse_config("", source="", env=env, hostname=host), False
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})",
                          hint="Save the file as UTF-8.") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}",
                          hint="Check the path and its permissions.") from None
    return parse_config(text, source=str(path), env=env, hostname=host), True


def load_context(config_override: str | None = None) -> Context:
    paths = resolve_paths(config_override)
    if config_override and not paths.config_file.exists():
        raise ConfigError(f"{paths.config_file}: no such file (given with --config)",
                          hint="Check the path, or leave out --config to use the default.")
    cfg, exists = load_config(paths.config_file)
    return Context(paths=paths, config=cfg, config_exists=exists)
