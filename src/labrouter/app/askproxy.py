"""Asking through the running daemon's one Asker, over the control channel.

Owns the JSON form of an ``AskRequest`` and of the events of an answer, the daemon's
``ask`` control command (``register_ask``: the events of ``Asker.stream`` as JSON lines),
``DaemonAsker`` (the same ``stream(req)`` in a command, answered by the daemon) and
``ProxyAsker``, the proxy with a fallback (as maestral's ``MaestralProxy``): through the
daemon when one answers, else an in-process Asker built by ``app/runtime.local_asker``.

Through the daemon, a command's request counts in the in-flight table peers see, its speed
is learned in the one table (saved by the daemon), and its route joins the one stickiness
history. Hanging up (Ctrl+C, a closed pipe) stops the request in the daemon.

Must not import desktop packages.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import asdict, fields
from typing import Any

from ..ask import (
    Asker,
    AskEvent,
    AskRequest,
    AskResult,
    Attempt,
    Done,
    FellOver,
    Started,
    Text,
)
from ..backends.base import ChatMessage, ChatOptions
from ..core.classify import Classification
from ..core.errors import DaemonError, LabrouterError
from ..core.peers import Peer, ServerState
from ..core.policy import Candidate
from .control import MAX_LINE, ControlClient, ControlServer, error_from_reply, token_line

log = logging.getLogger(__name__)

Json = dict[str, Any]


class ProxyUnavailable(DaemonError):
    """The daemon cannot take the request (gone, or too old for ``ask``); nothing was
    asked, so the caller may ask in-process instead."""


# ------------------------------------------------------------------ the JSON forms


def request_to_json(req: AskRequest) -> Json:
    return {"prompt": req.prompt,
            "image": base64.b64encode(req.image).decode("ascii") if req.image else None,
            "route": req.route, "model": req.model, "node": req.node,
            "instruction": req.instruction, "bare": req.bare, "source": req.source,
            "options": asdict(req.options),
            "messages": [{"role": m.role, "content": m.content, "images": list(m.images)}
                         for m in req.messages]}


def _opt_str(d: Json, key: str) -> str | None:
    v = d.get(key)
    if v is not None and not isinstance(v, str):
        raise ValueError(f"{key} must be a string")
    return v


def request_from_json(d: object) -> AskRequest:
    """ValueError when the object is not a request."""
    if not isinstance(d, dict) or not isinstance(d.get("prompt"), str):
        raise ValueError("a request needs a prompt")
    image = _opt_str(d, "image")
    try:
        data = base64.b64decode(image, validate=True) if image else None
    except (binascii.Error, ValueError):
        raise ValueError("image is not base64") from None
    o = d.get("options") or {}
    if not isinstance(o, dict) or not isinstance(o.get("extra", {}), dict):
        raise ValueError("options must be an object")
    known = {f.name for f in fields(ChatOptions)}
    options = ChatOptions(**{k: v for k, v in o.items() if k in known})
    raw = d.get("messages") or []
    if not isinstance(raw, list) or not all(
            isinstance(m, dict) and isinstance(m.get("content"), str) for m in raw):
        raise ValueError("messages must be a list of {role, content}")
    messages = tuple(ChatMessage(str(m.get("role", "user")), m["content"],
                                 tuple(str(i) for i in m.get("images") or ()))
                     for m in raw)
    return AskRequest(prompt=d["prompt"], image=data, route=_opt_str(d, "route"),
                      model=_opt_str(d, "model"), node=_opt_str(d, "node"),
                      instruction=_opt_str(d, "instruction"), bare=bool(d.get("bare")),
                      source=str(d.get("source") or "cli"), options=options,
                      messages=messages)


def event_to_json(event: AskEvent) -> Json:
    if isinstance(event, Text):
        return {"type": "text", "text": event.text}
    if isinstance(event, Started):
        c, k = event.candidate, event.classification
        return {"type": "started", "route": event.route,
                "candidate": {"node_id": c.peer.node_id, "node": c.peer.name,
                              "is_self": c.peer.is_self, "server": c.server.id,
                              "kind": c.server.kind, "model": c.model, "route": c.route,
                              "reason": c.reason, "fallback": c.fallback,
                              "drop_image": c.drop_image},
                "classification": {"route": k.route, "scores": dict(k.scores),
                                   "confidence": k.confidence, "reasons": list(k.reasons),
                                   "runner_up": k.runner_up, "has_image": k.has_image}}
    if isinstance(event, FellOver):
        return {"type": "fell_over", "attempt": asdict(event.attempt), "partial": event.partial,
                "continued": event.continued}
    return {"type": "done", "result": result_to_json(event.result)}


def result_to_json(res: AskResult) -> Json:
    d = asdict(res)
    d["attempts"] = [asdict(a) for a in res.attempts]
    d["reasons"] = list(res.reasons)
    return d


def result_from_json(d: Json) -> AskResult:
    known = {f.name for f in fields(AskResult)}
    kw = {k: v for k, v in d.items() if k in known}
    kw["attempts"] = tuple(Attempt(**a) for a in kw.get("attempts") or ())
    kw["reasons"] = tuple(kw.get("reasons") or ())
    return AskResult(**kw)


def event_from_json(d: Json) -> AskEvent:
    """ValueError (or KeyError, TypeError) when the line is not an event."""
    kind = d.get("type")
    if kind == "text":
        return Text(str(d["text"]))
    if kind == "started":
        c, k = d["candidate"], d["classification"]
        peer = Peer(node_id=str(c["node_id"]), name=str(c["node"]), is_self=bool(c["is_self"]))
        server = ServerState(id=str(c["server"]), url="", kind=str(c.get("kind") or "ollama"))
        cand = Candidate(peer, server, str(c["model"]), str(c["route"]), str(c["reason"]),
                         bool(c["fallback"]), bool(c["drop_image"]))
        cls = Classification(route=str(k["route"]), scores=dict(k["scores"]),
                             confidence=float(k["confidence"]), reasons=tuple(k["reasons"]),
                             runner_up=str(k.get("runner_up", "")),
                             has_image=bool(k.get("has_image")))
        return Started(cand, cls, str(d["route"]))
    if kind == "fell_over":
        return FellOver(Attempt(**d["attempt"]), str(d["partial"]),
                        bool(d.get("continued", False)))
    if kind == "done":
        return Done(result_from_json(d["result"]))
    raise ValueError(f"unknown event {kind!r}")


# ------------------------------------------------------------------ the daemon's side


def register_ask(control: ControlServer, asker: Asker) -> None:
    """The control command ``ask``: ``{"cmd": "ask", "request": {...}}`` -> event lines."""

    def ask(msg: Json) -> AsyncGenerator[Json, None]:
        try:
            req = request_from_json(msg.get("request"))
        except ValueError as exc:
            raise LabrouterError(f"not a request: {exc}") from None

        async def events() -> AsyncGenerator[Json, None]:
            async with contextlib.aclosing(asker.stream(req)) as stream:
                async for event in stream:
                    yield event_to_json(event)

        return events()

    control.register("ask", ask)


# ------------------------------------------------------------------ the command's side


class DaemonAsker:
    """``stream(req)`` answered by the running daemon's Asker."""

    def __init__(self, client: ControlClient) -> None:
        self.client = client

    async def stream(self, req: AskRequest) -> AsyncGenerator[AskEvent, None]:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.client.port,
                                                           limit=MAX_LINE)
        except OSError as exc:
            raise ProxyUnavailable(f"the daemon did not answer ({exc})") from None
        try:
            line = token_line(self.client.token) + json.dumps(
                {"token": self.client.token, "cmd": "ask",
                 "request": request_to_json(req)}).encode() + b"\n"
            writer.write(line)
            await writer.drain()
            first = True
            while True:
                raw = await reader.readline()
                if not raw:
                    if first:
                        raise ProxyUnavailable("the daemon closed the connection")
                    raise DaemonError("the daemon stopped in the middle of the answer",
                                      hint="Check `labrouter status`, and ask again.")
                try:
                    msg = json.loads(raw)
                    if not isinstance(msg, dict):
                        raise ValueError
                except ValueError:
                    raise DaemonError("the daemon sent a garbled answer",
                                      hint="Restart it with `labrouter run`.") from None
                if not msg.get("ok"):
                    if first and str(msg.get("error", "")).startswith("unknown command"):
                        raise ProxyUnavailable("the running daemon is too old to ask through")
                    raise error_from_reply(msg)
                if msg.get("end"):
                    return
                first = False
                try:
                    event = event_from_json(msg["event"])
                except (KeyError, TypeError, ValueError) as exc:
                    raise DaemonError(f"the daemon sent an event this version cannot read "
                                      f"({exc})", hint="Run the same labrouter version "
                                      "for the daemon and the command.") from None
                yield event
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


class ProxyAsker:
    """Through the daemon when one runs, else in-process (the fallback is built only when
    it is needed, and used too when the daemon could not take the request)."""

    def __init__(self, daemon: DaemonAsker | None,
                 fallback: Callable[[], Awaitable[Asker]]) -> None:
        self.daemon = daemon
        self._make_fallback = fallback
        self.local: Asker | None = None
        self.through_daemon = daemon is not None

    async def stream(self, req: AskRequest) -> AsyncGenerator[AskEvent, None]:
        if self.daemon is not None:
            events = self.daemon.stream(req)
            try:
                async with contextlib.aclosing(events):
                    async for event in events:
                        yield event
                return
            except ProxyUnavailable as exc:
                log.info("asking here instead: %s", exc)
                self.through_daemon = False
        if self.local is None:
            self.local = await self._make_fallback()
        async with contextlib.aclosing(self.local.stream(req)) as local_events:
            async for event in local_events:
                yield event
