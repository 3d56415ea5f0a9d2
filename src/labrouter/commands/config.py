"""CLI commands: `config show | validate | path` and `paths`."""

from __future__ import annotations

import argparse
import json
import sys

from ..app.settings import Context


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("config", help="show, validate or locate the configuration")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    s = csub.add_parser("show", help="print the effective configuration as TOML")
    s.set_defaults(handler=_show)
    v = csub.add_parser("validate", help="check the config file as the daemon does: exit 2 "
                        "when it is wrong (file, line and key); ports in use are a warning")
    v.set_defaults(handler=_validate)
    pa = csub.add_parser("path", help="print where the config file is")
    pa.set_defaults(handler=_path)
    paths = sub.add_parser("paths", help="print where labrouter keeps config, data and logs")
    paths.add_argument("--json", action="store_true")
    paths.set_defaults(handler=_paths)


def _show(args: argparse.Namespace, ctx: Context) -> int:
    from ..core.config import config_as_toml

    if not ctx.config_exists:
        print(f"# no file at {ctx.paths.config_file}: built-in defaults", file=sys.stderr)
    print(config_as_toml(ctx.config))
    return 0


def _validate(args: argparse.Namespace, ctx: Context) -> int:
    """The daemon's own check: load_context has parsed the file exactly as `labrouter run`
    does (a bad value, hotkey or LAN bind stopped us there with file, line and key); what
    is left is what only shows at run time: ports another program holds (a warning)."""
    from ..app.doctor import configured_ports, daemon_running, port_problem
    from ..core.config import key_line

    path = ctx.paths.config_file
    if ctx.config_exists:
        print(f"{path}: OK")
    else:
        print(f"{path}: no file; the built-in defaults are used (OK)")
    if daemon_running(ctx):
        return 0  # its ports are in use by itself
    text = ""
    if ctx.config_exists:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeError):
            pass
    for p in configured_ports(ctx):
        why = port_problem(p)
        if why is None:
            continue
        line = key_line(text, p.table, "port")
        where = f"{path}:{line}" if line else str(path)
        print(f"warning: {where}: {p.table}.port: {p.text()} ({p.service}) is in use or "
              f"cannot be opened: {why}; the daemon cannot open it until it is free",
              file=sys.stderr)
    return 0


def _path(args: argparse.Namespace, ctx: Context) -> int:
    print(ctx.paths.config_file)
    return 0


def _paths(args: argparse.Namespace, ctx: Context) -> int:
    d = ctx.paths.as_dict()
    if args.json:
        print(json.dumps(d, indent=2))
    else:
        width = max(len(k) for k in d)
        for k, v in d.items():
            print(f"{k:<{width}}  {v}")
    return 0
