"""The Windows Run-key back-end against an in-memory winreg (runs on any OS)."""

from __future__ import annotations

import types
from typing import Any

import pytest

from labrouter.autostart import ABSENT, DISABLED_BY_USER, ENABLED, STALE
from labrouter.autostart.render import (
    APPROVED_ENABLED,
    APPROVED_KEY,
    RUN_KEY,
    RUN_VALUE_NAME,
    Installation,
)
from labrouter.autostart.windows import RunKeyAutostart


class _Handle:
    def __init__(self, store: dict[str, dict[str, tuple[Any, int]]], path: str) -> None:
        self.values = store[path.lower()]

    def __enter__(self) -> _Handle:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def make_fake_winreg() -> Any:
    """The few winreg calls the back-end uses, with winreg's errors (FileNotFoundError)."""
    store: dict[str, dict[str, tuple[Any, int]]] = {}
    reg = types.SimpleNamespace(
        HKEY_CURRENT_USER=0x80000001, KEY_READ=0x20019, KEY_SET_VALUE=0x0002,
        REG_SZ=1, REG_BINARY=3, store=store,
    )

    def _key(root: int, sub: str) -> str:
        assert root == reg.HKEY_CURRENT_USER, "only HKCU may be touched"
        return sub.lower()  # registry paths are case-insensitive

    def OpenKey(root: int, sub: str, reserved: int = 0, access: int = 0) -> _Handle:  # noqa: N802
        key = _key(root, sub)
        if key not in store:
            raise FileNotFoundError(2, "The system cannot find the file specified")
        return _Handle(store, key)

    def CreateKeyEx(root: int, sub: str, reserved: int = 0, access: int = 0) -> _Handle:  # noqa: N802
        store.setdefault(_key(root, sub), {})
        return _Handle(store, _key(root, sub))

    def QueryValueEx(h: _Handle, name: str) -> tuple[Any, int]:  # noqa: N802
        if name not in h.values:
            raise FileNotFoundError(2, "The system cannot find the file specified")
        return h.values[name]

    def SetValueEx(h: _Handle, name: str, reserved: int, kind: int, value: Any) -> None:  # noqa: N802
        assert kind in (reg.REG_SZ, reg.REG_BINARY)
        assert isinstance(value, str if kind == reg.REG_SZ else bytes)
        h.values[name] = (value, kind)

    def DeleteValue(h: _Handle, name: str) -> None:  # noqa: N802
        if name not in h.values:
            raise FileNotFoundError(2, "The system cannot find the file specified")
        del h.values[name]

    reg.OpenKey, reg.CreateKeyEx, reg.QueryValueEx = OpenKey, CreateKeyEx, QueryValueEx
    reg.SetValueEx, reg.DeleteValue = SetValueEx, DeleteValue
    return reg


VENV = "C:\\Users\\Ann Lab\\AppData\\Local\\labrouter\\venv\\Scripts"


def inst(venv: str = VENV, home: str | None = None) -> Installation:
    return Installation(python=f"{venv}\\python.exe", gui_python=f"{venv}\\pythonw.exe",
                        log_dir="C:\\logs", home=home)


def values(reg: Any, key: str) -> dict[str, tuple[Any, int]]:
    return reg.store.get(key.lower(), {})


def test_round_trip() -> None:
    reg = make_fake_winreg()
    auto = RunKeyAutostart(winreg=reg)
    assert auto.status(inst())[0].state == ABSENT
    auto.enable(inst())
    value, kind = values(reg, RUN_KEY)[RUN_VALUE_NAME]
    assert kind == reg.REG_SZ
    assert value == f'"{VENV}\\pythonw.exe" -m labrouter run'
    st = auto.status(inst())[0]
    assert st.state == ENABLED and st.entry is not None
    assert st.entry.program.endswith("pythonw.exe")
    assert "already up to date" in auto.enable(inst())[0]  # idempotent
    auto.disable()
    assert values(reg, RUN_KEY) == {} and values(reg, APPROVED_KEY) == {}
    assert auto.status(inst())[0].state == ABSENT
    assert "nothing to remove" in auto.disable()[0]


def test_disabled_in_task_manager_is_reported_and_enable_reapproves() -> None:
    reg = make_fake_winreg()
    auto = RunKeyAutostart(winreg=reg)
    auto.enable(inst())
    # what Task Manager writes when the user disables the entry: odd flag + FILETIME
    reg.store.setdefault(APPROVED_KEY.lower(), {})[RUN_VALUE_NAME] = (
        bytes([3, 0, 0, 0]) + (133_000_000_000_000_000).to_bytes(8, "little"), reg.REG_BINARY)
    st = auto.status(inst())[0]
    assert st.state == DISABLED_BY_USER
    assert any("Task Manager" in w for w in st.why)
    out = auto.enable(inst())
    assert any("enabled it again" in line for line in out)
    assert values(reg, APPROVED_KEY)[RUN_VALUE_NAME][0] == APPROVED_ENABLED
    assert auto.status(inst())[0].state == ENABLED
    auto.disable()
    assert RUN_VALUE_NAME not in values(reg, APPROVED_KEY)


def test_moved_install_is_stale_and_enable_repairs() -> None:
    reg = make_fake_winreg()
    auto = RunKeyAutostart(winreg=reg)
    auto.enable(inst(venv="D:\\old\\venv\\Scripts"))
    st = auto.status(inst())[0]
    assert st.state == STALE
    assert "D:\\old\\venv\\Scripts\\pythonw.exe" in st.why[0]
    auto.enable(inst())
    assert auto.status(inst())[0].state == ENABLED


@pytest.mark.parametrize("home", ["C:\\Lab Home", "C:\\it's\\here\\"])
def test_labrouter_home_is_carried(home: str) -> None:
    reg = make_fake_winreg()
    auto = RunKeyAutostart(winreg=reg)
    auto.enable(inst(home=home))
    st = auto.status(inst(home=home))[0]
    assert st.state == ENABLED and st.entry is not None and st.entry.home == home
    assert auto.status(inst(home=None))[0].state == STALE
