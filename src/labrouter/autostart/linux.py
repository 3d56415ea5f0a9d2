"""Start at login on Linux: XDG autostart for the desktop, a systemd user unit headless.

Owns two entries, of which ``enable`` keeps exactly one:

- desktop (tray, hotkey): ``$XDG_CONFIG_HOME/autostart/labrouter.desktop``, started by the
  desktop session at login (works on non-systemd desktops too);
- headless (the always-on box): ``$XDG_CONFIG_HOME/systemd/user/labrouter.service`` with
  ``WantedBy=default.target``, enabled and started through ``systemctl --user``. Where no
  user instance can be reached (a container, a bare SSH shell without a session bus) the
  unit and its ``default.target.wants`` link are written by hand, exactly what
  ``systemctl --user enable`` would create, so it starts with the next user manager.

Must not import ``labrouter.desktop``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from . import ABSENT, DISABLED_BY_USER, ENABLED, STALE, EntryStatus, Runner, same_program
from .render import (
    DESKTOP_FILE_NAME,
    LINGER_EXPLANATION,
    UNIT_NAME,
    Installation,
    desktop_entry_disabled,
    differences,
    expected_entry,
    parse_desktop_file,
    parse_systemd_unit,
    render_desktop_file,
    render_systemd_unit,
)


def _write_if_changed(path: Path, text: str) -> bool:
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return True


class LinuxAutostart:
    platform = "linux"

    def __init__(self, home: Path, env: Mapping[str, str], runner: Runner) -> None:
        self.home = home
        self.env = env
        self.runner = runner

    # -- where ------------------------------------------------------------------------

    @property
    def config_home(self) -> Path:
        xdg = self.env.get("XDG_CONFIG_HOME", "").strip()
        # the spec: a relative XDG_CONFIG_HOME is invalid and must be ignored
        return Path(xdg) if xdg and os.path.isabs(xdg) else self.home / ".config"

    @property
    def desktop_path(self) -> Path:
        return self.config_home / "autostart" / DESKTOP_FILE_NAME

    @property
    def unit_path(self) -> Path:
        return self.config_home / "systemd" / "user" / UNIT_NAME

    @property
    def wants_link(self) -> Path:
        return self.config_home / "systemd" / "user" / "default.target.wants" / UNIT_NAME

    # -- systemd ------------------------------------------------------------------------

    def _systemctl(self, *args: str) -> tuple[int, str]:
        cp = self.runner(["systemctl", "--user", *args])
        return cp.returncode, (cp.stderr or cp.stdout or "").strip()

    def systemd_reason(self) -> str:
        """Why the user's systemd cannot be reached ("" when it can)."""
        rc, err = self._systemctl("show-environment")
        if rc == 0:
            return ""
        if rc == 127:
            return "systemctl is not installed"
        return err.splitlines()[0] if err else f"systemctl --user failed (exit {rc})"

    def linger_enabled(self) -> bool:
        user = self.env.get("USER") or self.env.get("LOGNAME") or ""
        return bool(user) and Path("/var/lib/systemd/linger", user).exists()

    # -- the interface -------------------------------------------------------------------

    def enable(self, inst: Installation) -> list[str]:
        return self._enable_unit(inst) if inst.headless else self._enable_desktop(inst)

    def _enable_desktop(self, inst: Installation) -> list[str]:
        out: list[str] = []
        if self.unit_path.exists() or self.wants_link.is_symlink():
            out += self._remove_unit()  # one entry only: two would start two daemons
        if _write_if_changed(self.desktop_path, render_desktop_file(inst)):
            out.append(f"wrote {self.desktop_path}")
        else:
            out.append(f"{self.desktop_path} is already up to date")
        out.append("labrouter starts with your desktop session at your next login "
                   "(start it now with `labrouter run`)")
        return out

    def _enable_unit(self, inst: Installation) -> list[str]:
        out: list[str] = []
        if self.desktop_path.exists():
            self.desktop_path.unlink()
            out.append(f"removed {self.desktop_path} (replaced by the systemd unit)")
        changed = _write_if_changed(self.unit_path, render_systemd_unit(inst))
        out.append(f"wrote {self.unit_path}" if changed
                   else f"{self.unit_path} is already up to date")
        reason = self.systemd_reason()
        if not reason:
            self._systemctl("daemon-reload")
            rc, err = self._systemctl("enable", UNIT_NAME)
            if rc != 0:
                out.append(f"systemctl --user enable failed: {err}")
            # restart, not start: a changed unit must replace the running daemon
            verb = "restart" if changed else "start"
            rc, err = self._systemctl(verb, UNIT_NAME)
            out.append(f"started by systemd ({UNIT_NAME})" if rc == 0
                       else f"systemctl --user {verb} failed: {err}")
        else:
            self.wants_link.parent.mkdir(parents=True, exist_ok=True)
            if not self.wants_link.is_symlink():
                self.wants_link.symlink_to(Path("..") / UNIT_NAME)
                out.append(f"linked {self.wants_link} (what `systemctl --user enable` does)")
            out.append(f"the systemd user instance cannot be reached here ({reason}): the "
                       "unit starts with your user manager at the next login or boot; once "
                       f"it runs: systemctl --user daemon-reload && "
                       f"systemctl --user start {UNIT_NAME}")
        if not self.linger_enabled():
            out.append(LINGER_EXPLANATION)
        return out

    def _remove_unit(self) -> list[str]:
        out: list[str] = []
        if not self.systemd_reason():
            rc, _ = self._systemctl("disable", "--now", UNIT_NAME)
            if rc == 0:
                out.append(f"stopped and disabled {UNIT_NAME}")
        if self.wants_link.is_symlink():
            self.wants_link.unlink()
            out.append(f"removed {self.wants_link}")
            try:
                self.wants_link.parent.rmdir()  # only when empty: other units may live there
            except OSError:
                pass
        if self.unit_path.exists():
            self.unit_path.unlink()
            out.append(f"removed {self.unit_path}")
            if not self.systemd_reason():
                self._systemctl("daemon-reload")
        return out

    def disable(self) -> list[str]:
        out = self._remove_unit()
        if self.desktop_path.exists():
            self.desktop_path.unlink()
            out.append(f"removed {self.desktop_path}")
        # directories enable created, when nothing else lives in them
        for d in (self.desktop_path.parent, self.unit_path.parent, self.unit_path.parent.parent):
            try:
                d.rmdir()
            except OSError:
                pass
        if not out:
            out.append("start at login was not enabled: nothing to remove")
        return out

    def status(self, inst: Installation) -> list[EntryStatus]:
        found: list[EntryStatus] = []
        if self.desktop_path.exists():
            entry = parse_desktop_file(self.desktop_path.read_text(encoding="utf-8"))
            why = differences(entry, expected_entry(replace(inst, headless=entry.headless)),
                              same_program)
            state = STALE if why else ENABLED
            if desktop_entry_disabled(entry):
                state, why = DISABLED_BY_USER, ["switched off in the session settings", *why]
            found.append(EntryStatus("XDG autostart", str(self.desktop_path), state, entry,
                                     tuple(why)))
        if self.unit_path.exists():
            entry = parse_systemd_unit(self.unit_path.read_text(encoding="utf-8"))
            why = differences(entry, expected_entry(replace(inst, headless=entry.headless)),
                              same_program)
            notes: list[str] = []
            reason = self.systemd_reason()
            if reason:
                running = ""
                notes.append(f"systemd user instance not reachable: {reason}")
            else:
                _, active = self._systemctl("is-active", UNIT_NAME)
                running = f"systemd: {active or 'unknown'}"
            state = STALE if why else ENABLED
            if not self.wants_link.is_symlink() and not reason:
                rc, _ = self._systemctl("is-enabled", UNIT_NAME)
                if rc != 0:
                    state, why = DISABLED_BY_USER, ["the unit is not enabled in systemd", *why]
            elif not self.wants_link.is_symlink():
                state, why = DISABLED_BY_USER, ["the unit is not linked into default.target",
                                                *why]
            if not self.linger_enabled():
                notes.append("lingering is off: the unit stops when your last session ends "
                             "(loginctl enable-linger \"$USER\")")
            found.append(EntryStatus("systemd user unit", str(self.unit_path), state, entry,
                                     tuple(why), running, tuple(notes)))
        if not found:
            found.append(EntryStatus("XDG autostart / systemd user unit",
                                     f"{self.desktop_path} or {self.unit_path}", ABSENT))
        return found
