"""One request end to end: classify -> choose -> stream events -> fall over -> log.

Owns ``AskRequest``, ``AskResult``, ``Attempt``, the events of a streamed answer
(``Started``, ``Text``, ``FellOver``, ``Done``), the ``Asker`` that runs a request over
the candidate list, and ``DirectConnector``, which reaches a candidate's server by URL.

``Asker.stream(req)`` is the one way to ask: an async iterator of events that ends with
``Done(result)``; ``Asker.ask(req)`` collects it. Closing the iterator (``aclose``, or
cancelling the task that iterates) closes the stream to the server, so the server stops
generating, and the request is logged as cancelled.

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
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Protocol, cast
from urllib.parse import urlsplit, urlunsplit

from .backends.base import Backend, ChatChunk, ChatMessage, ChatOptions
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
    """A candidate that did not give the answer returned, and why."""

    node: str
    server: str
    model: str
    reason: str
    mid_stream: bool = False  # it failed after its first token; its text was dropped
    weak: bool = False  # it answered, but weakly: the answer is asked of a bigger model
    error: str = ""  # the error alone, without the candidate's name

    @property
    def label(self) -> str:
        return f"{self.model} on {self.node}"

    def as_dict(self) -> dict[str, str]:
        return {"node": self.node, "server": self.server, "model": self.model,
                "reason": self.reason}


#: why an answer ended; what the serving backend reported ("stop", "length", or another
#: reason the server names) for an answer that came, else one of these two
CANCELLED = "cancelled"
ERROR = "error"


@dataclass(frozen=True)
class AskResult:
    answer: str
    route: str  # the route of the model that served
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
    finish_reason: str = "stop"  # "stop" | "length" | "cancelled" | "error" | the server's
    # the route the request was put on (classified, sticky or forced); ``route`` differs
    # when the lab had no model of it up and a fallback route served
    classified_route: str = ""
    cost_usd: float = 0.0  # cloud cost, answers not returned (cut off, weak) included

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
            "finish_reason": self.finish_reason, "classified_route": self.classified_route,
        }


# ------------------------------------------------------------------ events


@dataclass(frozen=True)
class Started:
    """A candidate is asked (the first, or the next after a FellOver)."""

    candidate: Candidate
    classification: Classification
    route: str  # the route the request is on (classified, sticky or forced)


@dataclass(frozen=True)
class Text:
    """A piece of the answer of the candidate last started."""

    text: str


@dataclass(frozen=True)
class FellOver:
    """The candidate last started did not give the answer: ``partial`` (the text it sent,
    "" when it failed before its first token) is dropped and the next Started follows,
    except after a weak answer whose escalation failed: then ``Done`` returns it."""

    attempt: Attempt
    partial: str


@dataclass(frozen=True)
class Done:
    """The last event: the answer and its record."""

    result: AskResult


AskEvent = Started | Text | FellOver | Done


async def collect(events: AsyncGenerator[AskEvent, None]) -> AskResult:
    """The result at the end of a request's events; the events are closed however this
    ends."""
    async with aclosing(events):
        async for event in events:
            if isinstance(event, Done):
                return event.result
    raise RuntimeError("the answer stream ended without a result")  # a bug


class UsageSink(Protocol):
    def append(self, record: UsageRecord) -> None: ...

    def spent_today(self) -> float: ...


Connector = Callable[[Candidate], Backend]


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


@dataclass(frozen=True)
class Served:
    """One candidate's complete answer; times from the start of this attempt."""

    candidate: Candidate
    text: str
    ttft: float
    duration: float
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


@dataclass
class _Run:
    """One request as it goes: what the log needs when it ends, however it ends."""

    req: AskRequest
    classification: Classification
    route: str  # the route it is on: classified, sticky or forced
    t0: float
    attempts: list[Attempt] = field(default_factory=list)
    current: Candidate | None = None  # streaming now
    parts: list[str] = field(default_factory=list)  # its text so far
    restarted: bool = False
    # what a cloud server billed for an answer that is not the one returned (cut off
    # mid-stream, or weak and escalated): the day's budget must count it too
    spent: float = 0.0


_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """Text that can be sent and logged as UTF-8.

    Undecodable bytes in argv or stdin arrive as lone surrogates (Python's
    surrogateescape), and so does a JSON ``"\\ud800"`` from a front door client; encoding
    them for the server or the usage log would raise. They become U+FFFD.
    """
    return _SURROGATE.sub("\ufffd", text)


def _clean(req: AskRequest) -> AskRequest:
    return replace(req, prompt=clean_text(req.prompt),
                   instruction=None if req.instruction is None else clean_text(req.instruction),
                   messages=tuple(replace(m, content=clean_text(m.content))
                                  for m in req.messages))


def _cost(server: ServerState, prompt_tokens: int, completion_tokens: int) -> float:
    if not server.is_cloud:
        return 0.0
    return (prompt_tokens * server.cost_input_per_1k
            + completion_tokens * server.cost_output_per_1k) / 1000


def _rough_tokens(text: str) -> int:
    """For servers (or cut-off answers) that report no usage."""
    return max(1, len(text) // 4) if text else 0


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

    def _candidates(self, req: AskRequest, c: Classification, route: str,
                    notes: list[str] | None = None) -> list[Candidate]:
        spent = self.usage_log.spent_today() if self.usage_log else 0.0
        # the route is resolved already (stickiness included): passed as forced, so the
        # policy does not resolve it a second time
        return choose(c, self.peers(), self.config, self.speeds, None, self.clock(),
                      route=route, model=req.model, node=req.node, spent_today=spent,
                      suspect=self.suspect(), notes=notes)

    async def ask(self, req: AskRequest) -> AskResult:
        """The answer, collected from ``stream``."""
        return await collect(self.stream(req))

    async def stream(self, req: AskRequest) -> AsyncGenerator[AskEvent, None]:
        """The request's events: Started, Text..., (FellOver, Started, Text...)*, Done.

        Raises NoCandidate when nothing can answer and AllFailed when every candidate
        failed, each after the request is logged.
        """
        t0 = self.clock()
        req = _clean(req)
        c = self.classify(req)
        # resolved once: the history keeps the route the prompt is on (classified, sticky or
        # forced), not a fallback route its candidates fell to: else three code prompts
        # asked while the code model was down would make the next borderline code prompt
        # stick to quick
        route, _why = resolve_route(c, self.history, self.clock(), req.route)
        run = _Run(req, c, route, t0)
        notes: list[str] = []
        cands = self._candidates(req, c, route, notes)
        if not cands:
            self._log(run, self._ended(run, "no_candidate", route))
            why = "; ".join(notes[1:]) or "no server is configured or up"
            raise NoCandidate(
                f"no live server has a model for this request ({why})",
                hint="Run `labrouter nodes` to see what is up, and `labrouter doctor` to check "
                     "the servers.")
        self.history.add(self.clock(), route)
        done: Done | None = None
        try:
            async with aclosing(self._over(run, cands)) as events:
                async for event in events:
                    if isinstance(event, Done):
                        done = event
                        break
                    yield event
        except (AllFailed, BackendError):
            raise
        except BaseException as exc:
            # Ctrl+C, a cancelled task or a closed iterator (the front door's client hung
            # up, the hotkey's "cancel"), stdout closed mid-answer: the request still cost
            # a server its work, and the log has one line per request
            stopped = isinstance(exc, (GeneratorExit, asyncio.CancelledError,
                                       KeyboardInterrupt, BrokenPipeError))
            self._log_cut_short(run, CANCELLED if stopped else ERROR)
            raise
        assert done is not None  # _over ends with Done or raises
        yield done

    async def _over(self, run: _Run, cands: list[Candidate]) -> AsyncGenerator[AskEvent, None]:
        dead: set[tuple[str, str]] = set()
        tried = 0
        for cand in cands:
            if (cand.peer.node_id, cand.server.id) in dead:
                continue
            if tried >= MAX_ATTEMPTS:
                break
            tried += 1
            served: Served | None = None
            try:
                async with aclosing(self._attempt(run, cand)) as pieces:
                    async for piece in pieces:
                        if isinstance(piece, Served):
                            served = piece
                        else:
                            yield piece
            except _MidStream as exc:
                attempt = Attempt(cand.peer.name, cand.server.id, cand.model,
                                  f"{cand.label} failed mid-answer: {exc.error}", True,
                                  error=str(exc.error))
                run.attempts.append(attempt)
                run.restarted = True
                run.spent += _cost(cand.server, _rough_tokens(run.req.prompt),
                                   _rough_tokens(exc.partial))  # no usage came: a rough count
                self._failed(cand, exc.error, dead)
                yield FellOver(attempt, exc.partial)
                continue
            except BackendError as exc:
                attempt = Attempt(cand.peer.name, cand.server.id, cand.model,
                                  f"{cand.label}: {exc}", error=str(exc))
                run.attempts.append(attempt)
                self._failed(cand, exc, dead)
                yield FellOver(attempt, "")
                continue
            assert served is not None
            result = self._result(run, served)
            if looks_weak(served.text, run.req.prompt):
                better: AskResult | None = None
                async with aclosing(self._escalate(run, served)) as events:
                    async for event in events:
                        if isinstance(event, Done):
                            better = event.result
                        else:
                            yield event
                if better is not None:
                    run.spent += _cost(cand.server, served.prompt_tokens,
                                       served.completion_tokens)
                    result = replace(better, restarted=result.restarted)
            result = replace(result, cost_usd=round(run.spent + result.cost_usd, 6))
            self._log(run, result)
            yield Done(result)
            return
        self._log(run, self._ended(run, "failed", cands[0].route))
        raise AllFailed(
            f"no candidate could answer ({len(run.attempts)} tried)",
            [(f"{a.model} on {a.node}", a.reason) for a in run.attempts],
            hint="Run `labrouter doctor` to check the servers.")

    async def _escalate(self, run: _Run, weak: Served) -> AsyncGenerator[AskEvent, None]:
        """Events of asking the route's ``escalate_to`` model; ends with Done when it
        answered, with nothing when there is no such model or it failed."""
        wc = weak.candidate
        target = self.config.route(wc.route).escalate_to
        # a model the user asked for by name is what they want to hear, weak or not
        if not target or run.req.model or model_matches(target, wc.model):
            return
        cands = self._candidates(replace(run.req, model=target), run.classification,
                                 run.route)[:2]
        if not cands:
            return
        weak_attempt = Attempt(wc.peer.name, wc.server.id, wc.model,
                               f"{wc.label} gave a weak answer; escalated", weak=True)
        yield FellOver(weak_attempt, weak.text)
        for cand in cands:
            served: Served | None = None
            try:
                async with aclosing(self._attempt(run, cand)) as pieces:
                    async for piece in pieces:
                        if isinstance(piece, Served):
                            served = piece
                        else:
                            yield piece
            except (_MidStream, BackendError) as exc:
                err = exc.error if isinstance(exc, _MidStream) else exc
                attempt = Attempt(cand.peer.name, cand.server.id, cand.model,
                                  f"escalation to {cand.label}: {err}",
                                  mid_stream=isinstance(exc, _MidStream), error=str(err))
                run.attempts.append(attempt)
                yield FellOver(attempt, exc.partial if isinstance(exc, _MidStream) else "")
                continue
            assert served is not None
            run.attempts.append(weak_attempt)
            res = self._result(run, served, restarted=False)
            yield Done(replace(res, escalated=True, outcome="escalated", route=wc.route))
            return

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

    async def _attempt(self, run: _Run, cand: Candidate
                       ) -> AsyncGenerator[Started | Text | Served, None]:
        """One candidate: Started, its Text pieces, then its Served answer. Raises
        _MidStream after text, BackendError before."""
        backend = self.connector(cand)
        run.current, run.parts = cand, []
        parts = run.parts
        yield Started(cand, run.classification, run.route)
        start = self.clock()
        first = 0.0
        pt = ct = 0
        reason = ""
        own = cand.peer.is_self
        if own:
            self.in_flight[cand.server.id] = self.in_flight.get(cand.server.id, 0) + 1
        try:
            # every backend's chat is an async generator: closing it closes the HTTP
            # stream, so the server stops generating
            chunks = cast(AsyncGenerator[ChatChunk, None],
                          backend.chat(cand.model, self._messages(cand, run.req),
                                       run.req.options))
            async with aclosing(chunks):
                async for chunk in chunks:
                    if chunk.text:
                        if not parts:
                            first = self.clock()
                        parts.append(chunk.text)
                        yield Text(chunk.text)
                    if chunk.done:
                        pt = chunk.prompt_tokens or 0
                        ct = chunk.completion_tokens or 0
                        reason = chunk.done_reason
        except BackendError as exc:
            if parts:
                raise _MidStream(exc, "".join(parts)) from exc
            raise
        finally:
            if own:
                self.in_flight[cand.server.id] = max(0, self.in_flight.get(cand.server.id, 1) - 1)
        end = self.clock()
        run.current = None
        if not first:
            first = end
        text = "".join(parts)
        if not ct and text:
            ct = _rough_tokens(text)
        self.speeds.record(cand.key, first - start, ct, end - start)
        yield Served(cand, text, first - start, end - start, pt, ct, reason or "stop")

    def _result(self, run: _Run, served: Served, restarted: bool | None = None) -> AskResult:
        cand = served.candidate
        restarted = run.restarted if restarted is None else restarted
        outcome = "restarted" if restarted else ("fallback" if run.attempts or cand.fallback
                                                 else "ok")
        # the served ttft and duration are this attempt's (the speed table wants those); the
        # record wants what the user waited, from the request's start, like its duration: a
        # first choice that hung for a minute before the fallover is part of the wait
        now = self.clock()
        c = run.classification
        return AskResult(
            answer=served.text, route=cand.route, node=cand.peer.name, server=cand.server.id,
            model=cand.model, attempts=tuple(run.attempts), prompt_tokens=served.prompt_tokens,
            completion_tokens=served.completion_tokens,
            ttft=max(0.0, now - run.t0 - (served.duration - served.ttft)),
            duration=now - run.t0, outcome=outcome,
            image_dropped=run.req.image is not None and cand.drop_image, restarted=restarted,
            confidence=c.confidence, reasons=tuple(c.reasons) + (cand.reason,),
            finish_reason=served.finish_reason, classified_route=run.route,
            cost_usd=_cost(cand.server, served.prompt_tokens, served.completion_tokens))

    def _ended(self, run: _Run, outcome: str, route: str) -> AskResult:
        """The record of a request that got no answer."""
        return AskResult(answer="", route=route, node="", server="", model="",
                         attempts=tuple(run.attempts), duration=self.clock() - run.t0,
                         outcome=outcome, confidence=run.classification.confidence,
                         finish_reason=ERROR, classified_route=run.route,
                         cost_usd=round(run.spent, 6))

    def _log_cut_short(self, run: _Run, outcome: str) -> None:
        try:
            cand = run.current
            result = self._ended(run, outcome, run.route)
            if cand is not None:
                text = "".join(run.parts)
                ct = _rough_tokens(text)  # no usage arrives: a rough count
                result = replace(result, answer=text, route=cand.route, node=cand.peer.name,
                                 server=cand.server.id, model=cand.model,
                                 completion_tokens=ct,
                                 cost_usd=round(run.spent + _cost(cand.server, 0, ct), 6))
            self._log(run, replace(result, finish_reason=outcome))
        except Exception:  # noqa: BLE001 - the interruption is what the caller must see
            log.exception("could not log the request that was cut short")

    def _log(self, run: _Run, result: AskResult) -> None:
        if self.usage_log is None:
            return
        req = run.req
        rec = UsageRecord(
            ts=self.wall(), route=result.route, node=result.node, server=result.server,
            model=result.model, outcome=result.outcome, prompt_tokens=result.prompt_tokens,
            completion_tokens=result.completion_tokens, ttft_ms=round(result.ttft * 1000, 1),
            duration_ms=round(result.duration * 1000, 1),
            fallbacks=tuple(a.as_dict() for a in result.attempts), source=req.source,
            confidence=round(result.confidence, 3), cost_usd=round(result.cost_usd, 6),
            prompt=req.prompt if self.config.usage.log_prompts else None,
            classified_route=result.classified_route, finish_reason=result.finish_reason)
        self.usage_log.append(rec)
