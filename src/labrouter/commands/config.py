"""CLI commands: `config show | validate | path` and `paths`."""

from __future__ import annotations

import argparse
import json
import sys

from ..app.settings import Context


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="show, validate or locate the configuration")
    csub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    s = csub.add_parser("show", help="print the effective configuration as TOML")
    s.set_defaults(handler=_show)
    v = csub.add_parser("validate", help="check the config file; exit 2 when it is wrong")
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
    # load_context already validated: reaching here means the file is good
    if ctx.config_exists:
        print(f"{ctx.paths.config_file}: OK")
    else:
        print(f"{ctx.paths.config_file}: no file; the built-in defaults are used (OK)")
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
