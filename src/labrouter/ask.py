"""One request end to end: classify -> choose -> stream -> fall over -> log.

Owns ``AskRequest``, ``AskResult``, ``Attempt``, the ``Asker`` that runs a request over
the candidate list, and ``DirectConnector``, which reaches a candidate's server by URL.

Fallover rules: a failure before the first token moves on to the next candidate with
nothing shown; a failure mid-stream asks the next candidate again and marks the result
``restarted``; a very short, empty or confused answer from a cheap model is retried once
on the route's ``escalate_to`` model when one is configured. A server that looks down
(refused, timed out) is reported at once (passive health) and its other models are
skipped for this request.

Must not import desktop packages or ``app/``; the usage log and the connector are given.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from .backends.base import Backend, ChatMessage, ChatOptions
from .core.classify import Classification, Classifier
from .core.config import Config
from .core.errors import AllFailed, BackendError, NoCandidate
from .core.peers import Peer, ServerState
from .core.policy import Candidate, RouteHistory, SpeedBook, choose, model_matches, resolve_route
from .core.usage import UsageRecord

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 6  # bounds the worst case: every attempt has its own timeouts
_CONFUSED = re.compile(
    r"^\s*(i('m| am) not sure what you|i (don't|do not) understand|could you (please )?"
    r"(clarify|provide more)|i cannot help with|sorry, i can't)", re.I)


@dataclass(frozen=True)
class AskRequest:
    prompt: str
    image: bytes | None = None
    route: str | None = None  # force a route
    model: str | None = None  # force a model (pattern)
    node: str | None = None  # only this node
    instruction: str | None = None  # prepended to the prompt
    bare: bool = False  # a bare selection: use the route's default instruction
    source: str = "cli"
    options: ChatOptions = field(default_factory=ChatOptions)
    messages: tuple[ChatMessage, ...] = ()  # earlier turns (front door clients)


@dataclass(frozen=True)
class Attempt:
    node: str
    server: str
    model: str
    reason: str
    mid_stream: bool = False

    def as_dict(self) -> dict[str, str]:
        return {"node": self.node, "server": self.server, "model": self.model,
                "reason": self.reason}


@dataclass(frozen=True)
class AskResult:
    answer: str
    route: str
    node: str
    server: str
    model: str
    attempts: tuple[Attempt, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft: float = 0.0  # from the request's start to the answer's first token
    duration: float = 0.0  # the whole request, fallovers included
    outcome: str = "ok"
    image_dropped: bool = False
    restarted: bool = False
    escalated: bool = False
    confidence: float = 0.0
    reasons: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "answer": self.answer, "route": self.route, "node": self.node,
            "server": self.server, "model": self.model,
            "attempts": [a.as_dict() for a in self.attempts],
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "ttft_ms": round(self.ttft * 1000, 1), "duration_ms": round(self.duration * 1000, 1),
            "outcome": self.outcome, "image_dropped": self.image_dropped,
            "restarted": self.restarted, "escalated": self.escalated,
            "confidence": round(self.confidence, 3), "reasons": list(self.reasons),
        }


class UsageSink(Protocol):
    def append(self, record: UsageRecord) -> None: ...

    def spent_today(self) -> float: ...


Connector = Callable[[Candidate], Backend]
EventCallback = Callable[[str, str], None]  # (kind, text): fallover | restart | escalate | ...


class DirectConnector:
    """Reaches a candidate's server by URL, one cached client per server.

    For another node's server announced at a loopback URL, the peer's address takes the
    loopback host's place (works only where that server listens on the LAN; the relay
    is the better way and is preferred when the peer offers it).
    """

    def __init__(self, config: Config, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.env = env
        self._cache: dict[tuple[str, str, str], Backend] = {}

    def __call__(self, cand: Candidate) -> Backend:
        from .backends import make_backend

        url = cand.server.url
        if not cand.peer.is_self and cand.peer.address:
            parts = urlsplit(url)
            host = parts.hostname or ""
            if host in ("127.0.0.1", "localhost", "::1", "0.0.0.0"):
                netloc = f"{cand.peer.address}:{parts.port}" if parts.port else cand.peer.address
                url = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        key = (cand.peer.node_id, cand.server.id, url)
        backend = self._cache.get(key)
        if backend is None:
            backend = make_backend(replace(cand.server, url=url), self.config.timeouts,
                                   env=self.env)
            self._cache[key] = backend
        return backend

    async def aclose(self) -> None:
        for b in self._cache.values():
            try:
                await b.aclose()
            except Exception:  # noqa: BLE001 - closing must not mask the answer
                pass
        self._cache.clear()


class _MidStream(Exception):
    def __init__(self, error: BackendError, partial: str) -> None:
        super().__init__(str(error))
        self.error = error
        self.partial = partial


#: the attempt streaming now and its text so far, for logging a cancelled request. Per task,
#: so concurrent requests on one Asker (the front door) do not see each other's.
_CURRENT: ContextVar[tuple[Candidate, list[str]] | None] = ContextVar("labrouter_ask_current",
                                                                      default=None)
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """Text that can be sent and logged as UTF-8.

    Undecodable bytes in argv or stdin arrive as lone surrogates (Python's
    surrogateescape), and so does a JSON ``"\\ud800"`` from a front door client; encoding
    them for the server or the usage log would raise. They become U+FFFD.
    """
    return _SURROGATE.sub("\ufffd", text)


def _cost(server: ServerState, prompt_tokens: int, completion_tokens: int) -> float:
    if not server.is_cloud:
        return 0.0
    return (prompt_tokens * server.cost_input_per_1k
            + completion_tokens * server.cost_output_per_1k) / 1000


def looks_weak(answer: str, prompt: str) -> bool:
    """An answer worth one retry on a bigger model: empty, tiny or confused."""
    a = answer.strip()
    if len(a) < 2:
        return True
    if len(prompt) > 200 and len(a) < 12:
        return True
    return bool(_CONFUSED.match(a))


class Asker:
    """Runs requests. Lives on the event loop; not thread-safe."""

    def __init__(self, config: Config, peers: Callable[[], list[Peer]],
                 speeds: SpeedBook | None = None, usage_log: UsageSink | None = None,
                 connector: Connector | None = None,
                 on_server_failed: Callable[[Candidate, BackendError], None] | None = None,
                 suspect: Callable[[], set[tuple[str, str]]] | None = None,
                 in_flight: dict[str, int] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.config = config
        self.peers = peers
        self.speeds = speeds if speeds is not None else SpeedBook()
        self.usage_log = usage_log
        self.connector: Connector = connector or DirectConnector(config)
        self.on_server_failed = on_server_failed
        self.suspect = suspect or (lambda: set())
        self.in_flight = in_flight if in_flight is not None else {}
        self.clock = clock
        self.wall = wall
        self.classifier = Classifier(config.classifier.keywords)
        self.history = RouteHistory()

    def classify(self, req: AskRequest) -> Classification:
        return self.classifier.classify(req.prompt, image=req.image is not None)

    def plan(self, req: AskRequest, notes: list[str] | None = None,
             c: Classification | None = None) -> tuple[Classification, list[Candidate]]:
        c = c if c is not None else self.classify(req)
        spent = self.usage_log.spent_today() if self.usage_log else 0.0
        cands = choose(c, self.peers(), self.config, self.speeds, self.history, self.clock(),
                       route=req.route, model=req.model, node=req.node, spent_today=spent,
                       suspect=self.suspect(), notes=notes)
        return c, cands

    async def ask(self, req: AskRequest, on_start: Callable[[Candidate], None] | None = None,
                  on_text: Callable[[str], None] | None = None,
                  on_event: EventCallback | None = None) -> AskResult:
        t0 = self.clock()
        req = replace(req, prompt=clean_text(req.prompt),
                      instruction=None if req.instruction is None else clean_text(
                          req.instruction),
                      messages=tuple(replace(m, content=clean_text(m.content))
                                     for m in req.messages))
        notes: list[str] = []
        # the history keeps the route the prompt is on (classified, sticky or forced), not
        # a fallback route its candidates fell to: else three code prompts asked while the
        # code model was down would make the next borderline code prompt stick to quick
        c = self.classify(req)
        asked_route, _ = resolve_route(c, self.history, self.clock(), req.route)
        c, cands = self.plan(req, notes, c)
        route = cands[0].route if cands else (req.route or c.route)
        if not cands:
            self._log(req, c, route, None, "no_candidate", (), 0, 0, 0.0, self.clock() - t0)
            why = "; ".join(n for n in notes[1:]) or "no server is configured or up"
            raise NoCandidate(
                f"no live server has a model for this request ({why})",
                hint="Run `labrouter nodes` to see what is up, and `labrouter doctor` to check "
                     "the servers.")
        self.history.add(self.clock(), asked_route)
        attempts: list[Attempt] = []
        _CURRENT.set(None)
        try:
            return await self._ask_over(req, c, cands, route, attempts, t0, on_start,
                                        on_text, on_event)
        except BaseException as exc:
            if isinstance(exc, (AllFailed, BackendError)):
                raise
            # Ctrl+C, a cancelled task (the front door's client hung up, the hotkey's
            # "cancel"), stdout closed mid-answer: the request still cost a server its
            # work, and the log has one line per request
            stopped = isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt,
                                       BrokenPipeError))
            self._log_cut_short(req, c, route, attempts, t0,
                                "cancelled" if stopped else "error")
            raise

    async def _ask_over(self, req: AskRequest, c: Classification, cands: list[Candidate],
                        route: str, attempts: list[Attempt], t0: float,
                        on_start: Callable[[Candidate], None] | None,
                        on_text: Callable[[str], None] | None,
                        on_event: EventCallback | None) -> AskResult:
        dead: set[tuple[str, str]] = set()
        restarted = False
        tried = 0
        # what a cloud server billed for an answer that is not the one returned (cut off
        # mid-stream, or weak and escalated): the day's budget must count it too
        spent = 0.0
        for cand in cands:
            if (cand.peer.node_id, cand.server.id) in dead:
                continue
            if tried >= MAX_ATTEMPTS:
                break
            tried += 1
            # after a mid-stream failure the "restart" event has said it already
            if attempts and on_event and not attempts[-1].mid_stream:
                on_event("fallover", f"{attempts[-1].reason}; asking {cand.label} instead")
            try:
                text, first, last, pt, ct = await self._stream(cand, req, on_start, on_text)
            except _MidStream as exc:
                attempts.append(Attempt(cand.peer.name, cand.server.id, cand.model,
                                        f"{cand.label} failed mid-answer: {exc.error}", True))
                restarted = True
                spent += _cost(cand.server, max(1, len(req.prompt) // 4),
                               max(1, len(exc.partial) // 4))  # no usage came: a rough count
                self._failed(cand, exc.error, dead)
                if on_event:
                    on_event("restart", f"{cand.label} stopped mid-answer ({exc.error}); "
                                        "asking the next candidate from the start")
                continue
            except BackendError as exc:
                attempts.append(Attempt(cand.peer.name, cand.server.id, cand.model,
                                        f"{cand.label}: {exc}"))
                self._failed(cand, exc, dead)
                continue
            result = self._result(req, c, cand, text, first, last, pt, ct, attempts, restarted,
                                  t0)
            if looks_weak(text, req.prompt):
                better = await self._escalate(req, c, cand, attempts, on_start, on_text,
                                              on_event, t0)
                if better is not None:
                    result = replace(better, restarted=result.restarted)
                    spent += _cost(cand.server, pt, ct)
            self._log(req, c, result.route, cand if not result.escalated else None,
                      result.outcome, result.attempts, result.prompt_tokens,
                      result.completion_tokens, result.ttft, result.duration, result=result,
                      extra_cost=spent)
            return result
        self._log(req, c, route, None, "failed", tuple(attempts), 0, 0, 0.0, self.clock() - t0)
        raise AllFailed(
            f"no candidate could answer ({len(attempts)} tried)",
            [(f"{a.model} on {a.node}", a.reason) for a in attempts],
            hint="Run `labrouter doctor` to check the servers.")

    async def _escalate(self, req: AskRequest, c: Classification, weak: Candidate,
                        attempts: list[Attempt], on_start: Callable[[Candidate], None] | None,
                        on_text: Callable[[str], None] | None,
                        on_event: EventCallback | None, t0: float) -> AskResult | None:
        target = self.config.route(weak.route).escalate_to
        # a model the user asked for by name is what they want to hear, weak or not
        if not target or req.model or model_matches(target, weak.model):
            return None
        _, cands = self.plan(replace(req, model=target))
        for cand in cands[:2]:
            if on_event:
                on_event("escalate", f"the answer of {weak.label} looked weak; asking {cand.label}")
            try:
                text, first, last, pt, ct = await self._stream(cand, req, on_start, on_text)
            except (_MidStream, BackendError) as exc:
                err = exc.error if isinstance(exc, _MidStream) else exc
                attempts.append(Attempt(cand.peer.name, cand.server.id, cand.model,
                                        f"escalation to {cand.label}: {err}"))
                continue
            attempts.append(Attempt(weak.peer.name, weak.server.id, weak.model,
                                    f"{weak.label} gave a weak answer; escalated"))
            res = self._result(req, c, cand, text, first, last, pt, ct, attempts, False, t0)
            return replace(res, escalated=True, outcome="escalated", route=weak.route)
        return None

    def _failed(self, cand: Candidate, exc: BackendError, dead: set[tuple[str, str]]) -> None:
        log.info("%s failed: %s", cand.label, exc)
        if exc.server_down:
            dead.add((cand.peer.node_id, cand.server.id))
            if self.on_server_failed:
                try:
                    self.on_server_failed(cand, exc)
                except Exception:  # noqa: BLE001 - passive health is best effort
                    log.exception("passive health report failed")

    def _messages(self, cand: Candidate, req: AskRequest) -> list[ChatMessage]:
        instruction = req.instruction
        if instruction is None and req.bare:
            instruction = self.config.route(cand.route).instruction or None
        text = f"{instruction}\n\n{req.prompt}" if instruction else req.prompt
        images: tuple[str, ...] = ()
        if req.image is not None:
            if cand.drop_image:
                text += ("\n\n(An image came with this request, but this model cannot see "
                         "images, so it was left out.)")
            else:
                images = (base64.b64encode(req.image).decode("ascii"),)
        return [*req.messages, ChatMessage("user", text, images)]

    async def _stream(self, cand: Candidate, req: AskRequest,
                      on_start: Callable[[Candidate], None] | None,
                      on_text: Callable[[str], None] | None
                      ) -> tuple[str, float, float, int, int]:
        backend = self.connector(cand)
        if on_start:
            on_start(cand)
        start = self.clock()
        first = 0.0
        parts: list[str] = []
        pt = ct = 0
        own = cand.peer.is_self
        _CURRENT.set((cand, parts))
        if own:
            self.in_flight[cand.server.id] = self.in_flight.get(cand.server.id, 0) + 1
        try:
            async for chunk in backend.chat(cand.model, self._messages(cand, req), req.options):
                if chunk.text:
                    if not parts:
                        first = self.clock()
                    parts.append(chunk.text)
                    if on_text:
                        on_text(chunk.text)
                if chunk.done:
                    pt = chunk.prompt_tokens or 0
                    ct = chunk.completion_tokens or 0
        except BackendError as exc:
            if parts:
                raise _MidStream(exc, "".join(parts)) from exc
            raise
        finally:
            if own:
                self.in_flight[cand.server.id] = max(0, self.in_flight.get(cand.server.id, 1) - 1)
        end = self.clock()
        if not first:
            first = end
        text = "".join(parts)
        if not ct and text:
            ct = max(1, len(text) // 4)  # servers that send no usage: a rough count
        self.speeds.record(cand.key, first - start, ct, end - start)
        return text, first - start, end - start, pt, ct

    def _result(self, req: AskRequest, c: Classification, cand: Candidate, text: str,
                ttft: float, dur: float, pt: int, ct: int, attempts: list[Attempt],
                restarted: bool, t0: float) -> AskResult:
        outcome = "restarted" if restarted else ("fallback" if attempts or cand.fallback
                                                 else "ok")
        # ttft and dur are this attempt's (the speed table wants those); the record wants
        # what the user waited, from the request's start, like its duration: a first choice
        # that hung for a minute before the fallover is part of the wait
        now = self.clock()
        return AskResult(
            answer=text, route=cand.route, node=cand.peer.name, server=cand.server.id,
            model=cand.model, attempts=tuple(attempts), prompt_tokens=pt,
            completion_tokens=ct, ttft=max(0.0, now - t0 - (dur - ttft)), duration=now - t0,
            outcome=outcome,
            image_dropped=req.image is not None and cand.drop_image, restarted=restarted,
            confidence=c.confidence, reasons=tuple(c.reasons) + (cand.reason,))

    def _log_cut_short(self, req: AskRequest, c: Classification, route: str,
                       attempts: list[Attempt], t0: float, outcome: str) -> None:
        try:
            current = _CURRENT.get()
            result = None
            ct = 0
            if current is not None:
                cand, parts = current
                text = "".join(parts)
                ct = max(1, len(text) // 4) if text else 0  # no usage arrives: a rough count
                result = AskResult(answer=text, route=cand.route, node=cand.peer.name,
                                   server=cand.server.id, model=cand.model)
            self._log(req, c, result.route if result else route, None, outcome,
                      tuple(attempts), 0, ct, 0.0, self.clock() - t0, result=result)
        except Exception:  # noqa: BLE001 - the interruption is what the caller must see
            log.exception("could not log the request that was cut short")

    def _log(self, req: AskRequest, c: Classification, route: str, cand: Candidate | None,
             outcome: str, attempts: tuple[Attempt, ...], pt: int, ct: int, ttft: float,
             duration: float, result: AskResult | None = None, extra_cost: float = 0.0
             ) -> None:
        if self.usage_log is None:
            return
        server: ServerState | None = None
        if result is not None:
            for p in self.peers():
                if p.name == result.node:
                    for s in p.servers:
                        if s.id == result.server:
                            server = s
        cost = extra_cost + (_cost(server, pt, ct) if server is not None else 0.0)
        rec = UsageRecord(
            ts=self.wall(), route=route, node=result.node if result else "",
            server=result.server if result else "", model=result.model if result else "",
            outcome=outcome, prompt_tokens=pt, completion_tokens=ct,
            ttft_ms=round(ttft * 1000, 1), duration_ms=round(duration * 1000, 1),
            fallbacks=tuple(a.as_dict() for a in attempts), source=req.source,
            confidence=round(c.confidence, 3), cost_usd=round(cost, 6),
            prompt=req.prompt if self.config.usage.log_prompts else None)
        self.usage_log.append(rec)
