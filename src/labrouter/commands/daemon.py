"""CLI commands of the daemon: `run`, `status`, `pause`, `resume`.

`run` calls ``app.daemon.run(ctx, headless)`` (the desktop work extends that function
with the tray). The others talk to the running daemon through the control channel;
`pause` and `resume` also work with no daemon (the state is saved for its next start).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ..app.settings import Context


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser(
        "run", help="run the daemon in the foreground: gossip, server monitor, relay, the "
        "Ollama/OpenAI front door, and on a desktop the tray and the hotkey",
        description="Run the daemon in the foreground: announces this machine to the lab "
        "(gossip), watches the local model servers, serves peers over the relay and local "
        "clients through the Ollama/OpenAI front door; on a desktop also the tray icon and "
        "the global hotkey. With no display it runs headless by itself.")
    r.add_argument("--headless", action="store_true",
                   help="no tray or hotkey, even when a display is there")
    r.add_argument("-v", "--verbose", action="store_true",
                   help="log debug lines and every HTTP request too (the default: state "
                   "changes, errors and one line per answered request)")
    r.set_defaults(handler=_run)

    s = sub.add_parser("status", help="is the daemon running, and the cluster in one line")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(handler=_status)

    p = sub.add_parser("pause", help="stop taking work (rented out); others route around it")
    p.add_argument("--reason", default="", help="shown to the other machines")
    p.add_argument("--until", metavar="TIME|DURATION",
                   help="resume by itself: 2h, 90m, 18:30 or 2026-12-01T09:00")
    p.set_defaults(handler=_pause)

    u = sub.add_parser("resume", help="take work again (after `labrouter pause`)")
    u.set_defaults(handler=_resume)


def _run(args: argparse.Namespace, ctx: Context) -> int:
    import os

    from ..app.runtime import run

    if args.verbose:
        # read by app.logsetup.configure, which the daemon calls as it starts
        os.environ["LABROUTER_LOG_LEVEL"] = "DEBUG"

    return run(ctx, headless=args.headless)


def _client(ctx: Context) -> Any:
    from ..app.control import ControlClient

    return ControlClient.from_paths(ctx.paths)


def _until_text(until: float | None) -> str:
    return time.strftime(" until %Y-%m-%d %H:%M", time.localtime(until)) if until else ""


def _status(args: argparse.Namespace, ctx: Context) -> int:
    import json

    client = _client(ctx)
    if client is None:
        if args.json:
            print(json.dumps({"running": False}))
        else:
            print("labrouter: not running (start it with `labrouter run`)")
        return 3
    st = client.call("status")
    if args.json:
        print(json.dumps({"running": True, **st}, indent=1))
        return 0
    counts = st.get("nodes", {})
    others = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no other nodes"
    cluster = f"cluster {st['key']}: {others}" if st.get("cluster") else \
        "no cluster key (this machine only)"
    servers = ", ".join(
        f"{s['id']} {'up' if s['up'] else 'down'}"
        + (f" ({s['models']} models, {len(s['loaded'])} loaded)" if s["up"] else "")
        for s in st.get("servers", []))
    paused = ""
    if st.get("paused"):
        paused = f"; PAUSED{': ' + st['pause_reason'] if st['pause_reason'] else ''}" \
                 f"{_until_text(st.get('paused_until'))}"
    print(f"labrouter: running (pid {st['pid']}) as {st['name']}; {cluster}; "
          f"servers: {servers or 'none'}{paused}")
    print(f"services: {services_text(st.get('services', []))}")
    return 0


def services_text(services: list[dict[str, Any]]) -> str:
    """``control up, gossip up (...), relay up (...), front door RETRYING (...)``."""
    from ..app.services import ServiceState

    return ", ".join(ServiceState.from_dict(s).text() for s in services) or "unknown"


def _pause(args: argparse.Namespace, ctx: Context) -> int:
    from ..app.pause import PauseState, parse_until, save_pause

    until = parse_until(args.until) if args.until else None
    client = _client(ctx)
    if client is None:
        save_pause(ctx.paths.pause_file, PauseState(True, args.reason, until))
        print(f"Paused{_until_text(until)}. No daemon runs: the pause applies when it starts.",
              file=sys.stderr)
        return 0
    client.call("pause", reason=args.reason, until=until)
    print(f"Paused{': ' + args.reason if args.reason else ''}{_until_text(until)}; "
          "the other machines stop sending work here.")
    return 0


def _resume(args: argparse.Namespace, ctx: Context) -> int:
    from ..app.pause import PauseState, load_pause, save_pause

    client = _client(ctx)
    if client is None:
        if not load_pause(ctx.paths.pause_file, time.time()).paused:
            print("Not paused: nothing to resume.")
            return 0
        save_pause(ctx.paths.pause_file, PauseState())
        print("Resumed (no daemon runs).", file=sys.stderr)
        return 0
    if not client.call("status").get("paused"):
        print("Not paused: nothing to resume; this machine takes work.")
        return 0
    client.call("resume")
    print("Resumed; taking work again.")
    return 0
