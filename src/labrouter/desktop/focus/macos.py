"""The focused application on macOS: the frontmost application.

Owns `frontmost_app()`. With pyobjc (AppKit) it asks NSWorkspace, which costs microseconds;
without it, `osascript` asks System Events (about 100 ms, and the first time macOS asks the
user to allow automation: a refusal gives None, never an error).
"""

from __future__ import annotations

import subprocess

from . import FocusedApp

OSASCRIPT_TIMEOUT = 1.0
_SCRIPT = (
    'tell application "System Events" to get {name, bundle identifier} of '
    "first application process whose frontmost is true"
)


def frontmost_app() -> FocusedApp | None:
    try:
        from AppKit import NSWorkspace  # type: ignore[import-not-found]
    except ImportError:
        return _osascript()
    app = NSWorkspace.sharedWorkspace().frontmostApplication()
    if app is None:
        return None
    name = str(app.localizedName() or "")
    bundle = str(app.bundleIdentifier() or "")
    return FocusedApp(name=name or bundle, instance=bundle, platform="macos")


def _osascript() -> FocusedApp | None:
    try:
        out = subprocess.run(
            ["osascript", "-e", _SCRIPT],
            capture_output=True, text=True, timeout=OSASCRIPT_TIMEOUT, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0 or not out.stdout.strip():
        return None
    return parse_osascript(out.stdout)


def parse_osascript(text: str) -> FocusedApp | None:
    """"Code, com.microsoft.VSCode" -> FocusedApp("Code", "com.microsoft.VSCode")."""
    name, _, bundle = text.strip().partition(", ")
    if not name:
        return None
    return FocusedApp(name=name, instance=bundle, platform="macos")
