"""The focused application on Windows: the foreground window's process.

Owns `foreground_app()`: GetForegroundWindow, GetWindowThreadProcessId, then the process
image name through QueryFullProcessImageNameW (with PROCESS_QUERY_LIMITED_INFORMATION,
which works for other users' and elevated processes too). ctypes only: no psutil needed
for one name.
"""

from __future__ import annotations

import ctypes
from ctypes import wintypes

from . import FocusedApp

PROCESS_QUERY_LIMITED_INFORMATION = 0x1000


def foreground_app() -> FocusedApp | None:
    user32 = ctypes.WinDLL("user32", use_last_error=True)  # type: ignore[attr-defined]
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    hwnd = user32.GetForegroundWindow()
    if not hwnd:
        return None
    pid = wintypes.DWORD()
    user32.GetWindowThreadProcessId(hwnd, ctypes.byref(pid))
    if not pid.value:
        return None
    handle = kernel32.OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, False, pid.value)
    if not handle:
        return None
    try:
        size = wintypes.DWORD(1024)
        buf = ctypes.create_unicode_buffer(size.value)
        if not kernel32.QueryFullProcessImageNameW(handle, 0, buf, ctypes.byref(size)):
            return None
        path = buf.value
    finally:
        kernel32.CloseHandle(handle)
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    return FocusedApp(name=name, instance=path, platform="windows")
