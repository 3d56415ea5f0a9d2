"""`labrouter doctor`: one line per check, OK or what is wrong and how to fix it.

Owns the checks and their wording: display and tray, hotkey (and macOS permissions),
clipboard, keyboard, notifications, the answer window, each configured server, the local
Ollama, the cluster key, the UDP port, and the reason every unavailable desktop backend
gave. Probing desktop backends never builds them (no icon appears, no key is sent, no
notification is shown);
the servers are asked ``version()`` only, with a short timeout. Traffic goes only to the
configured servers and the local Ollama.

Threading: runs on the caller's thread; the server checks run in one short asyncio.run.
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.config import ServerConfig, TimeoutConfig, ollama_url_from_env
from ..core.errors import BackendError, LabrouterError
from .settings import Context

CHECK_TIMEOUTS = TimeoutConfig(connect=1.5, first_token=2.0, gap=2.0, total=2.5)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    advisory: bool = False  # shown, but does not make doctor fail

    def line(self) -> str:
        mark = "OK  " if self.ok else ("note" if self.advisory else "FAIL")
        text = f"{mark}  {self.name}: {self.detail}"
        if self.fix and not self.ok:
            text += f" -> {self.fix}"
        return text


def desktop_checks(ctx: Context, env: Mapping[str, str]) -> list[Check]:
    from ..desktop.backends import BackendSpec, display_reason, probe_all
    from ..desktop.clipboard import clipboard_specs
    from ..desktop.hotkey import default_hotkey, hotkey_specs
    from ..desktop.keyboard import keyboard_specs
    from ..desktop.notify import NotificationChain, default_chain
    from ..desktop.tray import MENU_SUPPORT, tray_specs

    checks: list[Check] = []
    display = display_reason(env)
    if display is not None:
        # a server without a desktop is a normal place to run: a note, not a failure
        return [Check("display", False, f"{display}; the daemon runs headless here",
                      "for the tray and hotkey, run labrouter in a desktop session",
                      advisory=True)]
    checks.append(Check("display", True, _display_text(env)))
    combo = ctx.config.hotkey.ask or default_hotkey()
    groups: tuple[tuple[str, Sequence[BackendSpec[Any]], str], ...] = (
              ("tray", tray_specs(env), "without a tray the hotkey and notifications still "
               "work"),
              ("hotkey", hotkey_specs(combo, env), "bind `labrouter ask --selection` to a "
               "desktop shortcut"),
              ("clipboard", clipboard_specs(env), "install xclip (X11) or wl-clipboard "
               "(Wayland)"),
              ("keyboard", keyboard_specs(env), "the copy keystroke cannot be simulated; "
               "selections are read from PRIMARY only"))
    for capability, specs, fix in groups:
        probes = probe_all(specs)
        chosen = next((p for p in probes if p.available), None)
        forced = env.get(f"LABROUTER_{capability.upper()}_BACKEND", "")
        detail = f"{chosen.name}" if chosen else "none available (null backend)"
        if capability == "hotkey" and chosen:
            detail += f" ({combo})"
        if capability == "tray":
            detail += ": " + MENU_SUPPORT[chosen.name if chosen else "null"]
        if forced:
            detail += f"; forced to {forced!r} by LABROUTER_{capability.upper()}_BACKEND"
        checks.append(Check(capability, chosen is not None, detail, fix))
        for p in probes:
            if not p.available:
                checks.append(Check(f"{capability} backend {p.name}", False, p.reason,
                                    advisory=True))
    chain = NotificationChain(default_chain(env=env), env)
    problems = chain.problems()
    first = next((n for n, prob in problems if prob is None), "")
    checks.append(Check("notifications", first not in ("", "log"),
                        f"{first}" if first not in ("", "log") else
                        "only the log (no notification backend works here)",
                        "Linux: install libnotify-bin and run a notification server; "
                        "then `labrouter notify --test`"))
    for name, prob in problems:
        if prob is not None:
            checks.append(Check(f"notify backend {name}", False, prob, advisory=True))
    checks.append(answer_window_check(ctx, env))
    if sys.platform.startswith("linux") and (env.get("XDG_SESSION_TYPE") == "wayland"
                                             or env.get("WAYLAND_DISPLAY")):
        from ..desktop.hotkey import WAYLAND_HINT

        checks.append(Check("wayland", False, "Wayland session detected", WAYLAND_HINT,
                            advisory=True))
    return checks


def answer_window_check(ctx: Context, env: Mapping[str, str]) -> Check:
    """Whether answers can show in the answer window (``[desktop] answer``); where not,
    they come as notifications, so this is a note rather than a failure."""
    from ..desktop.answer.controller import window_problem

    if ctx.config.desktop.answer != "window":
        return Check("answer window", True, 'off ([desktop] answer = "notification"): '
                     "answers come as notifications")
    problem = window_problem(env)
    if problem is None:
        return Check("answer window", True, "Tk: answers stream into a window by the pointer")
    return Check("answer window", False, f"{problem}; answers come as notifications",
                 "install Tk for this Python (Debian/Ubuntu: apt install python3-tk)"
                 if "Tk" in problem else "", advisory=True)


def _display_text(env: Mapping[str, str]) -> str:
    if sys.platform in ("darwin", "win32"):
        return sys.platform
    parts = []
    if env.get("DISPLAY"):
        parts.append(f"X11 DISPLAY={env['DISPLAY']}")
    if env.get("WAYLAND_DISPLAY"):
        parts.append(f"Wayland {env['WAYLAND_DISPLAY']}")
    return ", ".join(parts)


async def _server_check(label: str, server: ServerConfig) -> Check:
    from ..backends import make_backend

    backend = make_backend(server, CHECK_TIMEOUTS)
    try:
        version = await asyncio.wait_for(backend.version(), CHECK_TIMEOUTS.total + 0.5)
        return Check(label, True, f"{server.url} answers (version {version or '?'})")
    except (BackendError, TimeoutError, OSError) as exc:
        return Check(label, False, f"{server.url}: {exc}",
                     "start the server, or fix its url in the config")
    finally:
        try:
            await backend.aclose()
        except Exception:
            pass


def server_checks(ctx: Context, env: Mapping[str, str]) -> list[Check]:
    servers = list(ctx.config.servers)
    local_url = ollama_url_from_env(env)
    jobs: list[tuple[str, ServerConfig]] = [(f"server {s.label}", s) for s in servers]
    if not any(s.kind == "ollama" and s.url.rstrip("/") == local_url for s in servers):
        jobs.append(("local Ollama", ServerConfig(url=local_url, kind="ollama", name="ollama")))

    async def run_all() -> list[Check]:
        return list(await asyncio.gather(*(_server_check(n, s) for n, s in jobs)))

    checks = asyncio.run(run_all())
    out = []
    for check in checks:
        if check.name == "local Ollama" and not check.ok:
            # only a note when the configured servers do not include it
            check = Check(check.name, False, check.detail, "install and start Ollama "
                          "(https://ollama.com) if this machine should serve models",
                          advisory=True)
        out.append(check)
    return out


def key_check(ctx: Context) -> Check:
    path = ctx.paths.keyring_file
    if not path.exists():
        # without peers in the config this is a working single machine: only a note
        alone = not ctx.config.cluster.peers
        return Check("cluster key", False, f"no key at {path}"
                     + (": this machine works alone" if alone else ""),
                     "`labrouter init` on the first machine (it prints a join code), "
                     "`labrouter join CODE` on the others", advisory=alone)
    if os.name != "nt":
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            return Check("cluster key", False, f"{path} is readable by others "
                         f"(mode {mode:o})", f"chmod 600 {path}")
    return Check("cluster key", True, f"{path}")


@dataclass(frozen=True)
class Port:
    """A port the daemon will open, as the config asks for it."""

    table: str  # the config section that sets it: cluster, relay, api
    service: str  # what listens there
    udp: bool
    host: str  # "" for every interface
    port: int

    def text(self) -> str:
        return f"{self.host or '*'}:{self.port}/{'udp' if self.udp else 'tcp'}"


def configured_ports(ctx: Context) -> list[Port]:
    cfg = ctx.config
    out = [Port("cluster", "gossip", True, cfg.cluster.bind, cfg.cluster.port)]
    if cfg.relay.enabled:
        # the relay listens where gossip does, or everywhere (app/http_services.py)
        relay_host = "" if cfg.cluster.bind in ("", "0.0.0.0", "::") else cfg.cluster.bind
        out.append(Port("relay", "relay", False, relay_host, cfg.relay.port))
    if cfg.api.enabled:
        out.append(Port("api", "front door", False, cfg.api.bind, cfg.api.port))
    return out


def port_problem(p: Port) -> str | None:
    """None when ``p`` can be bound now, else why not (the OS's words)."""
    try:
        infos = socket.getaddrinfo(p.host or None, p.port, type=socket.SOCK_DGRAM if p.udp
                                   else socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        return f"{p.host!r} is not an address of this machine ({exc.strerror or exc})"
    family, kind, _, _, addr = infos[0]
    s = socket.socket(family, kind)
    try:
        if not p.udp and os.name != "nt":
            # as asyncio's servers do: a port in TIME_WAIT is free to them
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(addr)
    except OSError as exc:
        return exc.strerror or str(exc)
    finally:
        s.close()
    return None


def daemon_running(ctx: Context) -> bool:
    from .control import ControlClient

    return ControlClient.from_paths(ctx.paths, timeout=2.0) is not None


_FIXES = {
    "gossip": "stop what uses the UDP port, or set [cluster] port to a free port on every "
              "machine",
    "relay": "stop what uses the port, or set [relay] port (peers learn it from the "
             "announcements)",
    "front door": "stop what uses the port, or set [api] port (and point your clients at "
                  "it), or [api] enabled = false",
}


def service_checks(status: Mapping[str, Any]) -> list[Check]:
    """The running daemon's services: each one the config asks for must be up."""
    from .services import ServiceState

    out = []
    for d in status.get("services", []):
        st = ServiceState.from_dict(d)
        if st.name == "control":
            continue  # it answered this very question
        fix = _FIXES.get(st.name, "see the daemon log") + (
            "; the daemon keeps trying and starts it when it can" if st.state == "retrying"
            else "; then restart the daemon")
        out.append(Check(f"service {st.name}", st.ok, st.summary(), fix))
    return out


def port_checks(ctx: Context) -> list[Check]:
    """The running daemon's services, or, without one, whether their ports are free."""
    from .control import ControlClient

    client = ControlClient.from_paths(ctx.paths, timeout=2.0)
    if client is not None:
        try:
            return service_checks(client.call("status"))
        except (LabrouterError, OSError) as exc:
            return [Check("daemon", False, f"does not answer: {exc}",
                          "see the daemon log; restart it")]
    out = []
    for p in configured_ports(ctx):
        name = "udp port" if p.udp else f"{p.table} port"
        if (why := port_problem(p)) is None:
            out.append(Check(name, True, f"{p.text()} is free"))
        else:
            out.append(Check(name, False, f"{p.text()} cannot be bound: {why}",
                             f"stop what uses it, or set [{p.table}] port to a free port"
                             + (" on every machine" if p.table == "cluster" else "")))
    return out


def udp_check(ctx: Context) -> Check:
    return port_checks(ctx)[0]


def run_checks(ctx: Context, env: Mapping[str, str] | None = None,
               desktop: bool = True) -> list[Check]:
    env = os.environ if env is None else env
    checks: list[Check] = []
    if desktop:
        checks += desktop_checks(ctx, env)
    checks += server_checks(ctx, env)
    checks.append(key_check(ctx))
    checks += port_checks(ctx)
    checks += exposure_checks(ctx, env)
    checks += pause_checks(ctx)
    return checks


def pause_checks(ctx: Context) -> list[Check]:
    """A damaged pause file keeps the machine paused (the safe side): say so."""
    import time

    from .pause import load_pause

    if not load_pause(ctx.paths.pause_file, time.time()).damaged:
        return []
    return [Check("pause file", False, f"{ctx.paths.pause_file} is damaged: this machine "
                  "stays paused and takes no work from the cluster",
                  "`labrouter resume` writes a good one (or `labrouter pause` again)")]


def exposure_checks(ctx: Context, env: Mapping[str, str]) -> list[Check]:
    """Tell the user when a local Ollama listens on the LAN: the relay makes that needless."""
    from ..relay.server import ollama_exposure

    out = []
    for s in ctx.config.servers:
        if s.kind != "ollama" or not _is_local(s.url):
            continue
        warning = ollama_exposure(s.url, env=env)
        if warning:
            out.append(Check(f"ollama exposure {s.label}", False, warning,
                             "labrouter's relay carries requests between machines, "
                             "authenticated and encrypted: bind Ollama to 127.0.0.1 "
                             "(unset OLLAMA_HOST or set it to 127.0.0.1:11434)",
                             advisory=True))
        else:
            out.append(Check(f"ollama exposure {s.label}", True,
                             "listens on loopback only; peers reach it through the relay"))
    return out


def _is_local(url: str) -> bool:
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def report(checks: Sequence[Check]) -> tuple[list[str], int]:
    """The lines to print and the exit code: 0 when every non-advisory check is OK."""
    lines = [c.line() for c in checks]
    failed = [c for c in checks if not c.ok and not c.advisory]
    lines.append(f"{len(checks) - len(failed)} of {len(checks)} checks OK" if not failed else
                 f"{len(failed)} problem(s): {', '.join(c.name for c in failed)}")
    return lines, (1 if failed else 0)
