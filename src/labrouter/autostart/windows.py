"""Start at login on Windows: the per-user Run key, honouring StartupApproved.

Owns the value ``labrouter`` under ``HKCU\\Software\\Microsoft\\Windows\\CurrentVersion\\Run``
(the windowless ``pythonw.exe -m labrouter run``) and its twin under
``...\\Explorer\\StartupApproved\\Run``, where Task Manager and Settings record that the
user switched an entry off. An entry switched off there is reported as disabled by the
user, and ``enable`` approves it again (the user asked for it explicitly).

The ``winreg`` module is injected, so this runs on Linux against an in-memory fake.
Must not import ``labrouter.desktop``.
"""

from __future__ import annotations

from typing import Any

from . import ABSENT, DISABLED_BY_USER, ENABLED, STALE, EntryStatus, same_program
from .render import (
    APPROVED_ENABLED,
    APPROVED_KEY,
    RUN_KEY,
    RUN_VALUE_NAME,
    Installation,
    approved_is_enabled,
    differences,
    expected_entry,
    parse_run_command,
    render_run_command,
)


class RunKeyAutostart:
    platform = "windows"

    def __init__(self, winreg: Any | None = None) -> None:
        if winreg is None:
            import winreg as real_winreg  # only exists on Windows

            winreg = real_winreg
        self.reg = winreg

    # -- small registry wrappers: a missing key or value reads as None ---------------

    def _get(self, key: str, name: str) -> Any | None:
        reg = self.reg
        try:
            with reg.OpenKey(reg.HKEY_CURRENT_USER, key, 0, reg.KEY_READ) as h:
                value, _type = reg.QueryValueEx(h, name)
                return value
        except FileNotFoundError:
            return None

    def _set(self, key: str, name: str, kind: int, value: Any) -> None:
        reg = self.reg
        with reg.CreateKeyEx(reg.HKEY_CURRENT_USER, key, 0, reg.KEY_SET_VALUE) as h:
            reg.SetValueEx(h, name, 0, kind, value)

    def _delete(self, key: str, name: str) -> bool:
        reg = self.reg
        try:
            with reg.OpenKey(reg.HKEY_CURRENT_USER, key, 0, reg.KEY_SET_VALUE) as h:
                reg.DeleteValue(h, name)
                return True
        except FileNotFoundError:
            return False

    # -- the interface -------------------------------------------------------------------

    def enable(self, inst: Installation) -> list[str]:
        out: list[str] = []
        command = render_run_command(inst)
        where = f"HKCU\\{RUN_KEY}\\{RUN_VALUE_NAME}"
        if self._get(RUN_KEY, RUN_VALUE_NAME) == command:
            out.append(f"{where} is already up to date")
        else:
            self._set(RUN_KEY, RUN_VALUE_NAME, self.reg.REG_SZ, command)
            out.append(f"set {where} = {command}")
        approved = self._get(APPROVED_KEY, RUN_VALUE_NAME)
        if not approved_is_enabled(approved):
            self._set(APPROVED_KEY, RUN_VALUE_NAME, self.reg.REG_BINARY, APPROVED_ENABLED)
            out.append("it had been disabled in Task Manager (Startup apps): enabled it again")
        out.append("labrouter starts at your next login (installers/install.ps1 also starts "
                   "it now)")
        return out

    def disable(self) -> list[str]:
        out: list[str] = []
        if self._delete(RUN_KEY, RUN_VALUE_NAME):
            out.append(f"removed HKCU\\{RUN_KEY}\\{RUN_VALUE_NAME}")
        if self._delete(APPROVED_KEY, RUN_VALUE_NAME):
            out.append(f"removed HKCU\\{APPROVED_KEY}\\{RUN_VALUE_NAME}")
        if not out:
            out.append("start at login was not enabled: nothing to remove")
        return out

    def status(self, inst: Installation) -> list[EntryStatus]:
        where = f"HKCU\\{RUN_KEY}\\{RUN_VALUE_NAME}"
        value = self._get(RUN_KEY, RUN_VALUE_NAME)
        if value is None:
            return [EntryStatus("Run key", where, ABSENT)]
        entry = parse_run_command(str(value))
        from dataclasses import replace

        expected = expected_entry(replace(inst, headless=entry.headless), gui=True)
        why = differences(entry, expected, same_program)
        approved = self._get(APPROVED_KEY, RUN_VALUE_NAME)
        if not approved_is_enabled(approved):
            return [EntryStatus("Run key", where, DISABLED_BY_USER, entry,
                                ("switched off in Task Manager (Startup apps)", *why))]
        return [EntryStatus("Run key", where, STALE if why else ENABLED, entry, tuple(why))]
