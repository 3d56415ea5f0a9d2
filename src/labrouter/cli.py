"""The `labrouter` command: parses arguments, calls into app/, prints.

Global options come before the command (`labrouter --config PATH <command> ...`). Every
LabrouterError becomes one message (and a hint) on stderr with its exit code; a traceback
is shown only with LABROUTER_DEBUG=1.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .commands import COMMAND_MODULES
from .core.errors import LabrouterError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"labrouter: error: {message}", file=sys.stderr)
        print(f"Run `{self.prog} --help` for the usage.", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="labrouter",
        description="Route prompts to the best live model on the best live machine.",
    )
    parser.add_argument("--config", metavar="PATH", help="use this config file")
    parser.add_argument("--version", action="version", version=f"labrouter {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"labrouter.commands.{name}")
        module.register(sub)
    _describe(sub)
    return parser


def _describe(sub: argparse._SubParsersAction[Any]) -> None:
    """`labrouter X --help` opens with X's one line from `labrouter --help` when X has no
    longer description of its own (argparse shows ``help=`` only in the parent's list)."""
    helps = {a.dest: a.help for a in sub._choices_actions}
    for name, parser in sub.choices.items():
        if parser.description is None and helps.get(name):
            parser.description = str(helps[name])[0].upper() + str(helps[name])[1:] + "."
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                _describe(action)


def main(argv: Sequence[str] | None = None) -> int:
    # no stdout or stderr at all (`labrouter ask hi >&-`, pythonw on Windows): Python sets
    # them to None, and every write would be an AttributeError
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115 - lives as long as we do
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        from .app.paths import check_home, storage_error
        from .app.settings import load_context

        check_home()
        ctx = None if getattr(args, "no_context", False) else load_context(args.config)
        try:
            return int(args.handler(args, ctx) or 0)
        except OSError as exc:
            # a folder that is a file, not writable, a full disk: one line, not a traceback
            err = storage_error(exc)
            if err is None:
                raise
            raise err from exc
    except LabrouterError as exc:
        print(f"labrouter: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  {exc.hint}", file=sys.stderr)
        if os.environ.get("LABROUTER_DEBUG"):
            raise
        return exc.exit_code
    except KeyboardInterrupt:
        print("labrouter: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # stdout closed early (`labrouter stats | head`): not an error for the user
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        except OSError:
            pass
        return 0


def gui_main() -> int:
    """Entry point of the windowed launcher (pythonw on Windows): `labrouter run`."""
    return main(["run", *sys.argv[1:]])


if __name__ == "__main__":
    raise SystemExit(main())
