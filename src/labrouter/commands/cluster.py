"""CLI commands of the cluster: `init`, `join`, `key show|export|add|use|remove`, `nodes`.

Keys are written with ``app.paths.write_private`` (0600); a running daemon notices a
changed keyring within a second. `nodes` asks the running daemon through the control
channel and falls back to this machine's configured servers when none runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ..app.settings import Context
from ..core.errors import KeyringError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    i = sub.add_parser("init", help="create a cluster key on the first machine; prints a join code")
    i.add_argument("--force", action="store_true",
                   help="create a new active key even if this machine has one")
    i.set_defaults(handler=_init)

    j = sub.add_parser("join", help="join a cluster with the code from `labrouter key export`")
    j.add_argument("code", nargs="+",
                   help="the join code that `labrouter init` or `labrouter key export` printed "
                   "on a machine of the cluster (LR1-...; spaces and dashes do not matter)")
    j.set_defaults(handler=_join)

    k = sub.add_parser("key", help="the cluster key: show, export, add, use, remove")
    ksub = k.add_subparsers(dest="key_command", metavar="ACTION")
    ks = ksub.add_parser("show", help="the keys' fingerprints (compare them between machines)")
    ks.set_defaults(handler=_key_show)
    ke = ksub.add_parser("export", help="print only the active key's join code (for scripts)")
    ke.set_defaults(handler=_key_export)
    ka = ksub.add_parser("add", help="add a key (a join code, or a new one) without using it")
    ka.add_argument("code", nargs="*", help="a join code; none: create a new key")
    ka.set_defaults(handler=_key_add)
    ku = ksub.add_parser("use", help="seal with this key from now on (rotation step 2)")
    ku.add_argument("fingerprint", help="the key's fingerprint as `labrouter key show` "
                    "prints it (its first characters are enough when they are unique)")
    ku.set_defaults(handler=_key_use)
    kr = ksub.add_parser("remove", help="remove a key that is no longer active (step 3)")
    kr.add_argument("fingerprint", help="the key's fingerprint as `labrouter key show` "
                    "prints it (its first characters are enough when they are unique)")
    kr.set_defaults(handler=_key_remove)
    k.set_defaults(handler=_key_show)

    n = sub.add_parser("nodes", help="the machines of the cluster as the running daemon sees them")
    n.add_argument("--json", action="store_true", help="print JSON")
    n.set_defaults(handler=_nodes)


def _ring(ctx: Context) -> Any:
    from ..cluster.keys import load_keyring

    return load_keyring(ctx.paths.keyring_file)


def _save(ctx: Context, ring: Any) -> None:
    from ..app.paths import write_private
    from ..cluster.keys import save_keyring

    save_keyring(ctx.paths.keyring_file, ring, write_private)


def _init(args: argparse.Namespace, ctx: Context) -> int:
    from ..cluster.keys import encode_join_code, fingerprint, generate_key

    ring = _ring(ctx)
    if ring.active_key is not None and not args.force:
        raise KeyringError(
            f"this machine already has a cluster key ({fingerprint(ring.active_key)})",
            hint="`labrouter key export` prints its join code; `labrouter init --force` "
                 "starts a new cluster instead.")
    key = generate_key()
    ring.add(key, activate=True)
    _save(ctx, ring)
    code = encode_join_code(key)
    print(f"Created a cluster key, fingerprint {fingerprint(key)} ({ctx.paths.keyring_file}).")
    print("Join code (it is the key itself: share it only with your own machines):")
    print(f"  {code}")
    print(f"On each other machine run:  labrouter join {code}")
    return 0


def _join(args: argparse.Namespace, ctx: Context) -> int:
    from ..cluster.keys import decode_join_code, fingerprint

    key = decode_join_code(" ".join(args.code))
    ring = _ring(ctx)
    ring.add(key, activate=True)
    _save(ctx, ring)
    print(f"Joined: cluster key {fingerprint(key)} is now active.")
    print("Compare it with `labrouter key show` on another machine of the cluster.")
    return 0


def _key_show(args: argparse.Namespace, ctx: Context) -> int:
    from ..cluster.keys import fingerprint

    ring = _ring(ctx)
    if not ring.keys:
        raise KeyringError("no cluster key on this machine",
                           hint="`labrouter init` starts a cluster; `labrouter join CODE` joins "
                                "one.")
    for kid, key in ring.keys.items():
        mark = "* " if kid == ring.active else "  "
        print(f"{mark}{fingerprint(key)}{'  (active)' if kid == ring.active else ''}")
    return 0


def _key_export(args: argparse.Namespace, ctx: Context) -> int:
    from ..cluster.keys import encode_join_code

    ring = _ring(ctx)
    if ring.active_key is None:
        raise KeyringError("no active cluster key to export",
                           hint="`labrouter init` creates one.")
    print(encode_join_code(ring.active_key))
    return 0


def _key_add(args: argparse.Namespace, ctx: Context) -> int:
    from ..cluster.keys import decode_join_code, encode_join_code, fingerprint, generate_key

    ring = _ring(ctx)
    new = not args.code
    key = generate_key() if new else decode_join_code(" ".join(args.code))
    ring.add(key)
    _save(ctx, ring)
    print(f"Added key {fingerprint(key)}"
          f"{' (active: it is the only one)' if ring.active_key == key else ''}.")
    if new:
        print("Add it on every machine with:")
        print(f"  labrouter key add {encode_join_code(key)}")
    print(f"Then, on every machine: labrouter key use {fingerprint(key)}")
    return 0


def _key_use(args: argparse.Namespace, ctx: Context) -> int:
    from ..cluster.keys import fingerprint

    ring = _ring(ctx)
    kid = ring.use(args.fingerprint)
    _save(ctx, ring)
    print(f"Key {fingerprint(ring.keys[kid])} is now active.")
    return 0


def _key_remove(args: argparse.Namespace, ctx: Context) -> int:
    ring = _ring(ctx)
    kid = ring.remove(args.fingerprint)
    _save(ctx, ring)
    print(f"Removed key {kid[:4]}-{kid[4:]}.")
    return 0


def _ago(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d"


def _server_mark(s: dict[str, Any]) -> str:
    """Nothing when up; "(not checked)" when no one asked it yet (no daemon); "(down)"."""
    if s.get("up"):
        return ""
    return "(not checked)" if str(s.get("error", "")).startswith("not checked") else "(down)"


def _nodes(args: argparse.Namespace, ctx: Context) -> int:
    from ..app.control import ControlClient
    from ..core.peers import ServerState, peer_to_dict, static_peers

    client = ControlClient.from_paths(ctx.paths)
    if client is None:
        servers = [ServerState(id=s.label, url=s.url, kind=s.kind, up=False,
                               error="not checked (no daemon)") for s in ctx.config.servers]
        nodes = [peer_to_dict(p) for p in static_peers(ctx.config.node.name, servers)]
        now = 0.0
        print("labrouter: no daemon runs; showing this machine's configured servers "
              "(start it with `labrouter run`)", file=sys.stderr)
    else:
        reply = client.call("nodes")
        nodes, now = reply["nodes"], reply["now"]
    if args.json:
        print(json.dumps(nodes, indent=1))
        return 0
    services = client.call("status").get("services", []) if client is not None else []
    rows = [("NAME", "STATE", "SINCE", "ADDRESS", "SERVERS", "MODELS", "LOADED", "BUSY",
             "PAUSED")]
    for n in nodes:
        servers = n.get("servers", [])
        up = [s for s in servers if s.get("up")]
        paused = ""
        if n.get("paused"):
            paused = n.get("pause_reason") or "yes"
            if n.get("paused_until"):
                paused += time.strftime(" until %m-%d %H:%M", time.localtime(n["paused_until"]))
        rows.append((
            n["name"] + (" (this)" if n.get("is_self") else ""),
            n["state"],
            _ago(now - n.get("since", now)) if now else "-",
            "-" if n.get("is_self") else f"{n.get('address', '')}:{n.get('port', 0)}",
            ",".join(f"{s['id']}{_server_mark(s)}" for s in servers) or "-",
            str(sum(len(s.get("models", [])) for s in up))
            + ("+" if any(s.get("models_truncated") for s in up) else ""),
            ",".join(m for s in up for m in s.get("loaded", [])) or "-",
            str(n.get("in_flight", 0)),
            paused or "-",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    if services:
        from .daemon import services_text

        print(f"this machine's services: {services_text(services)}")
    return 0
