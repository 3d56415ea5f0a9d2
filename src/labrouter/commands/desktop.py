"""CLI commands of the desktop: `notify` and `doctor`.

`labrouter notify --test` walks the notification chain and says which backend showed it
and why the ones before it were skipped; `labrouter doctor` prints one line per check and
exits 0 when every check is OK, else 1. Desktop packages are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import os

from ..app.settings import Context


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    n = sub.add_parser("notify", help="show a desktop notification (--test: a test one)")
    n.add_argument("text", nargs="*", help="the body of the notification")
    n.add_argument("--test", action="store_true",
                   help="show a test notification and report which backend showed it")
    n.add_argument("--title", default="labrouter", help="the title (default: labrouter)")
    n.set_defaults(handler=_notify)

    d = sub.add_parser("doctor", help="check the desktop, the servers, the key and the port")
    d.add_argument("--headless", action="store_true",
                   help="skip the desktop checks (a server without a display)")
    d.set_defaults(handler=_doctor)


def _notify(args: argparse.Namespace, ctx: Context) -> int:  # noqa: ARG001
    from ..core.errors import UsageError
    from ..desktop.notify import NotificationChain, NotifyError, default_chain

    if args.test:
        title = "labrouter test notification"
        body = "If you can read this, answers will show up here."
    elif args.text:
        title, body = args.title, " ".join(args.text)
    else:
        raise UsageError("nothing to show", hint="Pass a text, or --test.")
    chain = NotificationChain(default_chain())
    before = dict(chain.problems())
    for name, problem in before.items():
        if problem is not None:
            print(f"skipped {name}: {problem}")
    try:
        used = chain.send(title, body)
    except NotifyError as exc:
        print(f"labrouter: {exc.message}")
        return 1
    # a backend that passed its check and then failed says why here, not only in the log
    for name, problem in chain.problems():
        if problem is not None and before.get(name) is None:
            print(f"failed {name}: {problem.removeprefix('failed earlier: ')}")
    if used == "log" and args.test:
        print("no notification backend works here: the notification went to the log only")
        return 1
    print(f"shown with {used}")
    return 0


def _doctor(args: argparse.Namespace, ctx: Context) -> int:
    from ..app.doctor import report, run_checks

    lines, code = report(run_checks(ctx, os.environ, desktop=not args.headless))
    for line in lines:
        print(line)
    return code
