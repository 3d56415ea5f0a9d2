"""CLI commands: `autostart enable | disable | status | show`.

Owns the command line of start-at-login; the work is in ``labrouter.autostart``. Status
exit codes: 0 enabled and pointing at this installation, 1 present but stale or switched
off by the user (``enable`` repairs both), 3 not enabled.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import TYPE_CHECKING

from ..app.settings import Context

if TYPE_CHECKING:  # the autostart package is imported by the handlers only
    from ..autostart import Installation

PLATFORMS = {"macos": "darwin", "windows": "win32", "linux": "linux"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("autostart", help="start labrouter at login (enable, disable, status)")
    asub = p.add_subparsers(dest="autostart_command", metavar="ACTION", required=True)
    headless_help = ("the headless daemon (no tray, no hotkey); the default on Linux "
                     "without a display; on Linux it uses a systemd user unit")
    e = asub.add_parser("enable", help="start labrouter at login (idempotent; repairs)")
    e.add_argument("--headless", action="store_true", help=headless_help)
    e.set_defaults(handler=_enable)
    d = asub.add_parser("disable", help="remove everything `enable` wrote")
    d.set_defaults(handler=_disable)
    s = asub.add_parser("status", help="is it enabled, and for this installation?")
    s.add_argument("--headless", action="store_true",
                   help="accepted for symmetry: status reports every entry it finds")
    s.set_defaults(handler=_status)
    sh = asub.add_parser("show", help="print what `enable` would write (for any platform)")
    sh.add_argument("--platform", choices=sorted(PLATFORMS), default=None,
                    help="render for this platform (default: this one)")
    sh.add_argument("--headless", action="store_true", help=headless_help)
    sh.set_defaults(handler=_show)


def _headless(args: argparse.Namespace, platform: str) -> bool:
    from ..autostart import has_display

    if args.headless:
        return True
    return platform not in ("darwin", "win32") and not has_display(os.environ)


def _installation(args: argparse.Namespace, ctx: Context) -> Installation:
    from ..autostart import detect_installation

    return detect_installation(ctx.paths.log_dir, _headless(args, sys.platform))


def _file_error(exc: OSError, action: str) -> Exception:
    """An OSError from writing or removing an entry, as one message with what to check
    (XDG_CONFIG_HOME pointing at a file, a read-only directory, no home)."""
    from ..core.errors import LabrouterError

    where = f" {exc.filename}" if exc.filename else ""
    return LabrouterError(f"could not {action} start at login:{where}: "
                          f"{exc.strerror or exc}",
                          hint="Check that HOME and XDG_CONFIG_HOME name directories you "
                          "can write to.")


def _enable(args: argparse.Namespace, ctx: Context) -> int:
    from ..autostart import backend_for

    inst = _installation(args, ctx)
    try:
        lines = backend_for().enable(inst)
    except OSError as exc:
        raise _file_error(exc, "enable") from exc
    for line in lines:
        print(line)
    return 0


def _disable(args: argparse.Namespace, ctx: Context) -> int:
    from ..autostart import backend_for

    try:
        lines = backend_for().disable()
    except OSError as exc:
        raise _file_error(exc, "disable") from exc
    for line in lines:
        print(line)
    return 0


def _status(args: argparse.Namespace, ctx: Context) -> int:
    from ..autostart import ABSENT, ENABLED, backend_for

    inst = _installation(args, ctx)
    try:
        entries = backend_for().status(inst)
    except OSError as exc:
        raise _file_error(exc, "read") from exc
    worst = 0
    for st in entries:
        if st.state == ABSENT:
            print(f"autostart: not enabled (no {st.kind} at {st.location})")
            print("  enable it with `labrouter autostart enable`")
            worst = max(worst, 3)
            continue
        label = {ENABLED: "enabled"}.get(st.state, st.state)
        print(f"autostart: {label} ({st.kind}: {st.location})")
        if st.entry is not None:
            print(f"  runs: {' '.join(st.entry.command)}")
            if st.entry.home:
                print(f"  LABROUTER_HOME: {st.entry.home}")
        if st.running:
            print(f"  {st.running}")
        for why in st.why:
            print(f"  {why}")
        if st.state != ENABLED and st.entry is not None and st.entry.program \
                and not os.path.exists(st.entry.program):
            print(f"  {st.entry.program} no longer exists (moved or removed installation)")
        for note in st.notes:
            print(f"  note: {note}")
        if st.state != ENABLED:
            print("  repair it with `labrouter autostart enable`")
            worst = max(worst, 1)
    return 0 if worst == 0 else (1 if worst == 1 else 3)


def _placeholder(platform: str, headless: bool, ctx: Context) -> Installation:
    """Where installers/install.* put labrouter on another OS (for `show --platform`)."""
    from ..autostart import Installation

    user = getpass.getuser() or "you"
    if platform == "darwin":
        base = f"/Users/{user}/Library/Application Support/labrouter"
        return Installation(python=f"{base}/venv/bin/python",
                            log_dir=f"/Users/{user}/Library/Logs/labrouter", headless=headless,
                            path_env="/opt/homebrew/bin:/usr/local/bin:/usr/bin:/bin")
    if platform == "win32":
        base = f"C:\\Users\\{user}\\AppData\\Local\\labrouter\\venv\\Scripts"
        return Installation(python=f"{base}\\python.exe", gui_python=f"{base}\\pythonw.exe",
                            log_dir=f"C:\\Users\\{user}\\AppData\\Local\\labrouter\\Logs",
                            headless=headless)
    return Installation(python=f"/home/{user}/.local/share/labrouter/venv/bin/python",
                        log_dir=f"/home/{user}/.local/state/labrouter/log", headless=headless)


def _show(args: argparse.Namespace, ctx: Context) -> int:
    from dataclasses import replace

    from ..autostart import render

    target = PLATFORMS[args.platform] if args.platform else sys.platform
    if target == sys.platform:
        inst = replace(_installation(args, ctx), headless=_headless(args, target))
        print("# for this installation")
    else:
        inst = _placeholder(target, bool(args.headless), ctx)
        print("# as installed by the installer at its default location")
    if target == "darwin":
        print(f"# ~/Library/LaunchAgents/{render.LABEL}.plist")
        print(render.render_plist(inst).decode("utf-8"), end="")
    elif target == "win32":
        print(f"# HKCU\\{render.RUN_KEY}")
        print(f"#   value {render.RUN_VALUE_NAME} (REG_SZ):")
        print(render.render_run_command(inst))
        print(f"# and, if Task Manager disabled it, HKCU\\{render.APPROVED_KEY}\\"
              f"{render.RUN_VALUE_NAME} is set back to enabled (REG_BINARY "
              f"{render.APPROVED_ENABLED.hex()})")
    elif inst.headless:
        print(f"# ~/.config/systemd/user/{render.UNIT_NAME}")
        print(render.render_systemd_unit(inst), end="")
        print()
        for line in render.LINGER_EXPLANATION.splitlines():
            print(f"# {line}".rstrip())
    else:
        print(f"# ~/.config/autostart/{render.DESKTOP_FILE_NAME}")
        print(render.render_desktop_file(inst), end="")
    return 0
