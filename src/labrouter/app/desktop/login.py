"""Start at login for the tray's "Start at login" item, through labrouter.autostart when it
is installed; absent otherwise. Blocking (may run systemctl/launchctl): worker threads only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from ..settings import Context

log = logging.getLogger(__name__)


class LoginItem:
    """Start at login through labrouter.autostart, when it is installed; else absent."""

    def __init__(self, ctx: Context, env: Mapping[str, str] | None = None) -> None:
        self.ctx = ctx
        self.env = os.environ if env is None else env
        self.reason = ""
        try:
            import labrouter.autostart as autostart

            self._mod: Any = autostart
            self._backend: Any = autostart.backend_for(env=self.env)
        except (ImportError, AttributeError) as exc:
            self._mod = None
            self._backend = None
            self.reason = f"start at login is not available: {exc}"

    @property
    def available(self) -> bool:
        return self._backend is not None

    def _installation(self) -> Any:
        return self._mod.detect_installation(self.ctx.paths.log_dir, headless=False,
                                             env=self.env)

    def enabled(self) -> bool | None:
        if self._backend is None:
            return None
        try:
            entries = self._backend.status(self._installation())
        except Exception:
            log.warning("start at login: status failed", exc_info=True)
            return None
        enabled = getattr(self._mod, "ENABLED", "enabled")
        return any(getattr(e, "state", "") == enabled for e in entries)

    def set(self, on: bool) -> list[str]:
        if self._backend is None:
            return [self.reason]
        if on:
            return list(self._backend.enable(self._installation()))
        return list(self._backend.disable())
