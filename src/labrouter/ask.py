"""One request end to end: classify -> choose -> stream events -> fall over -> log.

Owns ``AskRequest``, ``AskResult``, ``Attempt``, the events of a streamed answer
(``Started``, ``Text``, ``FellOver``, ``Done``), the ``Asker`` that runs a request over
the candidate list, and ``DirectConnector``, which reaches a candidate's server by URL.

``Asker.stream(req)`` is the one way to ask: an async iterator of events that ends with
``Done(result)``; ``Asker.ask(req)`` collects it. Closing the iterator (``aclose``, or
cancelling the task that iterates) closes the stream to the server, so the server stops
generating, and the request is logged as cancelled.

Fallover rules: a failure before the first token moves on to the next candidate with
nothing shown; a failure mid-stream asks the next candidate to continue the answer from
the words already sent (``continued``; with ``[routing] continue_stalled = false`` it
starts over, ``restarted``); a very short, empty or confused answer from a cheap model is
retried once on the route's ``escalate_to`` model when one is configured. A server that
looks down (refused, timed out) is reported at once (passive health) and its other models
are skipped for this request.

Deadlines and hedging: each candidate streams in a task of its own (``_Leg``) under the
first-token and gap deadlines its speed samples give (``SpeedBook.deadlines``; the
configured timeouts are ceilings). When the first candidate has no token by its hedge
time, the next candidate on another server is started in parallel; the first to send a
token wins and the other is stopped (closing its stream stops its server). A first choice
that lost a hedge is watched until its own deadline so that a hung server is remembered
(``core.health.FaultBook``: tried last, with a growing back-off) and a slow one measured.

Settling: when ``[classifier] settle_below`` is set and the classifier's calibrated
confidence is under it, the quick model in memory is asked, with a tight deadline, which of
the classifier's two best routes the prompt is (``core/settle.py`` writes the question and
reads the one-word reply); a late, failed or junk reply keeps the classifier's route.

Must not import desktop packages or ``app/``; the usage log and the connector are given.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import re
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, cast
from urllib.parse import urlsplit, urlunsplit

from .backends.base import Backend, ChatChunk, ChatMessage, ChatOptions
from .core.classify import QUICK, Classification, Classifier, context_for
from .core.config import Config
from .core.errors import AllFailed, BackendError, BackendTimeout, DeadlineMissed, NoCandidate
from .core.health import FaultBook
from .core.peers import Peer, ServerState
from .core.policy import (
    Candidate,
    DeadlineRule,
    Deadlines,
    RouteHistory,
    SpeedBook,
    choose,
    model_matches,
    resolve_route,
)
from .core.selection import instruction_for
from .core.settle import parse_reply, settle_choices, settle_question
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
    bare: bool = False  # a bare selection: the instruction follows what it is
    source: str = "cli"
    app: str = ""  # the focused application at hotkey time: a prior for the classifier
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
    hedged: bool = False  # a second candidate was asked in parallel (the first was slow)
    continued: bool = False  # a stalled answer was continued by another model

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
            "hedged": self.hedged, "continued": self.continued,
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
    #: the partial text stays: the next candidate continues it (its Text follows on)
    continued: bool = False


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
    hedged: bool = False
    continued: bool = False
    prefix: str = ""  # the text sent so far that the next candidate continues
    legs: list[_Leg] = field(default_factory=list)  # running now
    first_text: float | None = None  # when the user got the first piece of the answer

    async def stop_legs(self) -> None:
        legs, self.legs = self.legs, []
        for leg in legs:
            leg.stop()
        for leg in legs:
            if leg.task is not None:
                try:
                    await leg.task
                except BaseException:  # noqa: BLE001, S110 - it was told to stop
                    pass


@dataclass(eq=False)
class _Leg:
    """One candidate's stream running in a task of its own; its pieces (Text, then Served,
    or a _Failed) arrive in ``queue``. Two legs run at once when a request is hedged."""

    cand: Candidate
    deadlines: Deadlines
    started: float  # Asker clock
    prefix: str = ""  # text of an earlier leg it continues
    parts: list[str] = field(default_factory=list)
    queue: asyncio.Queue[Text | Served | _Failed] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    extra_tries: int = 0  # a hedge counts as an attempt

    def stop(self) -> None:
        """Cancel it: closing its stream tells its server to stop generating."""
        if self.task is not None and not self.task.done():
            self.task.cancel()


@dataclass(frozen=True)
class _Failed:
    error: BaseException


class _NoToken(Exception):
    """Every leg of a candidate failed before its first token."""


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


#: the routing question's options: greedy, a word or two (a thinking model's empty
#: ``<think></think>`` fits; a model that thinks longer has no answer in time)
SETTLE_OPTIONS = ChatOptions(temperature=0.0, seed=1, max_tokens=8)


async def ask_for_route(backend: Backend, model: str, prompt: str, choices: tuple[str, ...],
                        timeout: float, options: ChatOptions = SETTLE_OPTIONS) -> str:
    """The model's raw reply to the routing question (``core.settle.settle_question``),
    within ``timeout`` seconds (TimeoutError after; the stream is closed, so the server
    stops). Raises BackendError when the server fails."""
    messages = [ChatMessage(role, text) for role, text in settle_question(prompt, choices)]
    parts: list[str] = []
    chunks = cast(AsyncGenerator[ChatChunk, None],
                  backend.chat(model, messages, options))
    async with asyncio.timeout(timeout), aclosing(chunks):
        async for chunk in chunks:
            parts.append(chunk.text)
    return "".join(parts)


class Asker:
    """Runs requests. Lives on the event loop; not thread-safe."""

    def __init__(self, config: Config, peers: Callable[[], list[Peer]],
                 speeds: SpeedBook | None = None, usage_log: UsageSink | None = None,
                 connector: Connector | None = None,
                 on_server_failed: Callable[[Candidate, BackendError], None] | None = None,
                 suspect: Callable[[], set[tuple[str, str]]] | None = None,
                 in_flight: dict[str, int] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 faults: FaultBook | None = None,
                 deadline_rule: DeadlineRule | None = None) -> None:
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
        #: server+model pairs that missed a deadline or broke a stream lately (tried last)
        self.faults = faults if faults is not None else FaultBook()
        self.deadline_rule = deadline_rule or DeadlineRule()
        self._watching: set[asyncio.Task[None]] = set()  # legs that lost a race

    async def aclose(self) -> None:
        """Stop watching the legs that lost a race (their servers stop generating)."""
        tasks = list(self._watching)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def classify(self, req: AskRequest) -> Classification:
        context = context_for(req.app, self.config.classifier.apps) if req.app else None
        return self.classifier.classify(req.prompt, image=req.image is not None,
                                        context=context)

    async def _settle(self, req: AskRequest, c: Classification) -> tuple[str | None, str]:
        """Asks the quick model in memory which of the classifier's two best routes a very
        unsure prompt is (``[classifier] settle_below``; core/settle.py). Returns the route it
        named (None: the route resolved without it stands) and a note for the reasons ("":
        nothing was asked). Nothing is asked when the classifier was sure enough, the user
        chose a route or a model, an image decides, a run of requests on one route is
        context the quick model cannot see, or no quick model is in memory. A reply that is
        late, fails or is junk keeps the route, and the note says so."""
        cfg = self.config.classifier
        choices = settle_choices(c, cfg.settle_below, forced=bool(req.route or req.model),
                                 routes=tuple(self.config.routes))
        if not choices or self.history.sticky_route(self.clock()) is not None:
            return None, ""
        cand = self._settler(req, c)
        if cand is None:
            return None, ""
        kept = "the classifier's route stands"
        t0 = self.clock()
        try:
            reply = await ask_for_route(self.connector(cand), cand.model, req.prompt, choices,
                                        cfg.settle_timeout)
        except TimeoutError:
            return None, (f"{cand.label} was asked to settle {' or '.join(choices)} "
                          f"(confidence {c.confidence:.2f}) and gave no answer within "
                          f"{cfg.settle_timeout:g} s; {kept}")
        except BackendError as exc:
            return None, (f"{cand.label} was asked to settle {' or '.join(choices)} "
                          f"and failed ({exc}); {kept}")
        took = self.clock() - t0
        route = parse_reply(reply, choices)
        if route is None:
            return None, (f"{cand.label} was asked to settle {' or '.join(choices)} "
                          f"and answered {reply.strip()[:40]!r}, not a route; {kept}")
        return route, (f"route {route} settled by {cand.label} in {took:.2f} s (the "
                       f"classifier was unsure: {c.route} {c.confidence:.2f}, "
                       f"{c.runner_up} {c.probabilities.get(c.runner_up, 0.0):.2f})")

    def _settler(self, req: AskRequest, c: Classification) -> Candidate | None:
        """The model that settles: the quick route's own first choice, in memory, on no
        paying server (a cold load or a cloud call is not worth a routing question)."""
        if QUICK not in self.config.routes:
            return None
        for cand in self._candidates(req, c, QUICK):
            if not cand.fallback and cand.loaded and not cand.server.is_cloud:
                return cand
        return None

    def _candidates(self, req: AskRequest, c: Classification, route: str,
                    notes: list[str] | None = None) -> list[Candidate]:
        # read only when a paying server is up: a lab without one never reads the log
        spent = self.usage_log.spent_today if self.usage_log else 0.0
        # the route is resolved already (stickiness included): passed as forced, so the
        # policy does not resolve it a second time
        now = self.clock()
        return choose(c, self.peers(), self.config, self.speeds, None, now,
                      route=route, model=req.model, node=req.node, spent_today=spent,
                      suspect=self.suspect(), demoted=self.faults.demoted(now), notes=notes)

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
        try:
            settled, note = await self._settle(req, c)
        except BaseException as exc:
            # hung up while the quick model was being asked: still one line in the log
            stopped = isinstance(exc, (GeneratorExit, asyncio.CancelledError,
                                       KeyboardInterrupt))
            self._log_cut_short(run, CANCELLED if stopped else ERROR)
            raise
        if note:
            run.route = route = settled or route
            run.classification = c = replace(c, reasons=(*c.reasons, note))
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
        queue = list(cands)
        tried = 0
        try:
            while queue and tried < MAX_ATTEMPTS:
                cand = queue.pop(0)
                if (cand.peer.node_id, cand.server.id) in dead:
                    continue
                tried += 1
                served: Served | None = None
                winner: _Leg | None = None
                try:
                    async with aclosing(self._race(run, cand, queue, dead)) as events:
                        async for event in events:
                            if isinstance(event, _Leg):
                                winner = event
                            elif isinstance(event, Served):
                                served = event
                            else:
                                yield event
                except _MidStream as exc:
                    failed = winner.cand if winner is not None else cand
                    attempt = Attempt(failed.peer.name, failed.server.id, failed.model,
                                      f"{failed.label} failed mid-answer: {exc.error}", True,
                                      error=str(exc.error))
                    run.attempts.append(attempt)
                    run.spent += _cost(failed.server, _rough_tokens(run.req.prompt),
                                       _rough_tokens(exc.partial))  # no usage: a rough count
                    self._failed(failed, exc.error, dead)
                    cont = self.config.routing.continue_stalled and bool(exc.partial.strip())
                    if cont:
                        run.prefix += exc.partial
                        run.continued = True
                    else:
                        run.prefix = ""
                        run.restarted = True
                    yield FellOver(attempt, exc.partial, continued=cont)
                    continue
                except _NoToken:
                    continue  # every leg failed before its first token; FellOver said so
                if winner is not None:
                    tried += winner.extra_tries
                assert served is not None
                result = self._result(run, served)
                if looks_weak(result.answer, run.req.prompt) and not run.continued:
                    better: AskResult | None = None
                    async with aclosing(self._escalate(run, served)) as events:
                        async for step in events:
                            if isinstance(step, Done):
                                better = step.result
                            else:
                                yield step
                    if better is not None:
                        run.spent += _cost(served.candidate.server, served.prompt_tokens,
                                           served.completion_tokens)
                        result = replace(better, restarted=result.restarted,
                                         hedged=result.hedged)
                result = replace(result, cost_usd=round(run.spent + result.cost_usd, 6))
                self._log(run, result)
                yield Done(result)
                return
        finally:
            await run.stop_legs()
        self._log(run, self._ended(run, "failed", cands[0].route))
        raise AllFailed(
            f"no candidate could answer ({len(run.attempts)} tried)",
            [(f"{a.model} on {a.node}", a.reason) for a in run.attempts],
            hint="Run `labrouter doctor` to check the servers.")

    async def _race(self, run: _Run, cand: Candidate, queue: list[Candidate],
                    dead: set[tuple[str, str]]
                    ) -> AsyncGenerator[Started | Text | FellOver | Served | _Leg, None]:
        """One candidate, hedged: Started, then (if it has no token by its hedge time) a
        second candidate in parallel; the first to send a token wins and streams, the
        other is stopped at its server. Yields the winning leg, its Text and its Served.
        Raises _NoToken when every leg failed before a token (each with a FellOver
        yielded), _MidStream when the winner failed after one."""
        primary = self._start_leg(run, cand)
        yield Started(cand, run.classification, run.route)
        legs = [primary]
        hedge_at = None
        if self._hedging() and not run.hedged and primary.deadlines.hedge_after is not None:
            fixed = self.config.routing.hedge_after
            hedge_at = primary.started + (fixed or primary.deadlines.hedge_after)
        first: tuple[_Leg, Text | Served] | None = None
        getters: dict[asyncio.Future[Any], _Leg] = {}
        try:
            while first is None:
                for leg in legs:
                    if leg not in getters.values():
                        getters[asyncio.ensure_future(leg.queue.get())] = leg
                timeout = None if hedge_at is None else max(0.0, hedge_at - self.clock())
                done, _ = await asyncio.wait(getters, timeout=timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    hedge_at = None
                    backup = self._hedge_target(run, cand, queue, dead)
                    if backup is not None:
                        queue.remove(backup)
                        run.hedged = True
                        log.info("%s: no token after %.1f s; hedging to %s", cand.label,
                                 self.clock() - primary.started, backup.label)
                        leg = self._start_leg(run, backup)
                        leg.extra_tries = 1
                        legs.append(leg)
                    continue
                for fut in [f for f in getters if f in done]:
                    leg = getters.pop(fut)
                    piece = fut.result()
                    if isinstance(piece, _Failed):
                        legs.remove(leg)
                        exc = piece.error
                        if isinstance(exc, _MidStream):  # cannot be: no text came
                            exc = exc.error
                        if not isinstance(exc, BackendError):
                            raise exc  # a bug: the caller must see it
                        attempt = Attempt(leg.cand.peer.name, leg.cand.server.id,
                                          leg.cand.model, f"{leg.cand.label}: {exc}",
                                          error=str(exc))
                        run.attempts.append(attempt)
                        self._failed(leg.cand, exc, dead)
                        if legs:
                            if leg is primary:  # the hedge goes on alone
                                yield FellOver(attempt, "")
                                primary = legs[0]
                                yield Started(primary.cand, run.classification, run.route)
                            continue  # (a failed hedge is in the attempts, not shown)
                        yield FellOver(attempt, "")
                        raise _NoToken
                    if first is None:
                        first = (leg, piece)
            leg, piece = first
            for other in legs:
                if other is not leg:
                    self._let_go(run, other, watch=other is primary)
            for fut in getters:
                fut.cancel()
            getters.clear()
            if leg is not primary:
                slow = primary
                attempt = Attempt(slow.cand.peer.name, slow.cand.server.id, slow.cand.model,
                                  f"{slow.cand.label} sent nothing for "
                                  f"{self.clock() - slow.started:.1f} s; {leg.cand.label} "
                                  "was asked in parallel and answered first",
                                  error="slower than its usual time to first token")
                run.attempts.append(attempt)
                yield FellOver(attempt, "")
                yield Started(leg.cand, run.classification, run.route)
            run.current, run.parts = leg.cand, leg.parts
            if run.first_text is None and isinstance(piece, Text):
                run.first_text = self.clock()
            yield leg
            held: Text | Served | _Failed | None = None
            while True:
                if isinstance(piece, Text):
                    yield piece
                elif isinstance(piece, Served):
                    yield piece
                    return
                elif isinstance(piece, _Failed):
                    raise piece.error
                if held is not None:
                    piece, held = held, None
                    continue
                piece = await leg.queue.get()
                if isinstance(piece, Text) and not leg.queue.empty():
                    # what came while the caller was busy goes out as one piece: one write
                    # to the client per pass instead of one per token
                    texts = [piece.text]
                    while not leg.queue.empty():
                        more = leg.queue.get_nowait()
                        if not isinstance(more, Text):
                            held = more
                            break
                        texts.append(more.text)
                    piece = Text("".join(texts))
        finally:
            for fut in getters:
                fut.cancel()

    def _hedging(self) -> bool:
        return self.config.routing.hedge

    def _hedge_target(self, run: _Run, first: Candidate, queue: list[Candidate],
                      dead: set[tuple[str, str]]) -> Candidate | None:
        """The next candidate on another server: never a paused machine (the policy has
        left those out), a paying server only where the route allows cloud."""
        for c in queue:
            if (c.peer.node_id, c.server.id) in dead:
                continue
            if c.peer.node_id == first.peer.node_id and c.server.id == first.server.id:
                continue  # the same server is busy with the first request
            if c.peer.paused or not c.peer.routable:
                continue
            if c.server.is_cloud and not self.config.route(run.route).allow_cloud:
                continue
            return c
        return None

    def _start_leg(self, run: _Run, cand: Candidate) -> _Leg:
        dl = self._deadlines(cand, run.req, run.prefix)
        leg = _Leg(cand, dl, self.clock(), run.prefix)
        leg.task = asyncio.create_task(self._leg_main(run, leg),
                                       name=f"labrouter-ask {cand.label}")
        run.legs.append(leg)
        return leg

    def _deadlines(self, cand: Candidate, req: AskRequest, prefix: str) -> Deadlines:
        t = self.config.timeouts
        if not self.config.routing.adaptive_deadlines:
            return Deadlines(t.first_token, t.gap, None, False, "the configured timeouts")
        prompt = len(req.prompt) + sum(len(m.content) for m in req.messages) + len(prefix)
        return self.speeds.deadlines(cand.key, cand.loaded, t.first_token, t.gap,
                                     self.deadline_rule, prompt_tokens=prompt // 4)

    def _let_go(self, run: _Run, loser: _Leg, watch: bool) -> None:
        """Stop a leg that lost the race. One with no token yet is watched until its own
        deadline (a hung server is remembered as faulty; a slow one as slow) unless it is
        the hedge, which is simply stopped."""
        run.legs.remove(loser)
        if loser.parts or not watch:
            loser.stop()
            return
        task = asyncio.create_task(self._watch(loser), name=f"labrouter-watch {loser.cand.label}")
        self._watching.add(task)
        task.add_done_callback(self._watching.discard)

    async def _watch(self, leg: _Leg) -> None:
        try:
            while True:
                piece = await leg.queue.get()
                if isinstance(piece, _Failed):
                    return  # _leg_main remembered the fault
                if isinstance(piece, Text | Served):
                    return  # slow but alive: its sample is in the speed table
        finally:
            leg.stop()

    async def _leg_main(self, run: _Run, leg: _Leg) -> None:
        """One candidate's stream, in a task of its own (so its deadlines are its own):
        every piece goes to ``leg.queue``; a failure goes there as _Failed."""
        cand = leg.cand
        dl = leg.deadlines
        loop = asyncio.get_running_loop()
        start = loop.time()
        first = 0.0
        max_gap = -1.0
        pt = ct = 0
        reason = ""
        parts = leg.parts
        own = cand.peer.is_self
        put = leg.queue.put_nowait
        if own:
            self.in_flight[cand.server.id] = self.in_flight.get(cand.server.id, 0) + 1
        try:
            backend = self.connector(cand)
            messages = self._messages(cand, run.req, run.classification)
            if leg.prefix:
                # the words already sent, as the start of this model's reply: Ollama and
                # llama-server continue a final assistant message
                messages.append(ChatMessage("assistant", leg.prefix))
            # every backend's chat is an async generator: closing it closes the HTTP stream,
            # so the server stops generating
            chunks = cast(AsyncGenerator[ChatChunk, None],
                          backend.chat(cand.model, messages, run.req.options))
            try:
                async with asyncio.timeout_at(start + dl.first_token) as deadline, \
                        aclosing(chunks):
                    last = start
                    moved, slack = -math.inf, dl.gap / 10
                    async for chunk in chunks:
                        now = loop.time()
                        if chunk.done:
                            pt = chunk.prompt_tokens or 0
                            ct = chunk.completion_tokens or 0
                            reason = chunk.done_reason
                        if chunk.text or not chunk.done:
                            if first:
                                if now - last > max_gap:
                                    max_gap = now - last
                            else:
                                first = now
                                if not leg.prefix:
                                    self.speeds.record_first_token(cand.key, now - start,
                                                                   cand.loaded)
                            last = now
                            if now >= moved + slack:
                                # moved at most every tenth of the gap, and then a tenth
                                # further: never sooner than ``gap`` after this token,
                                # without a new timer for every token
                                moved = now
                                deadline.reschedule(now + dl.gap + slack)
                        if chunk.text:
                            parts.append(chunk.text)
                            put(Text(chunk.text))
            except TimeoutError as exc:
                if not deadline.expired():
                    raise
                raise self._missed(cand, dl, bool(first)) from exc
        except BackendError as exc:
            if max_gap >= 0:
                self.speeds.record_gaps(cand.key, max_gap)
            self._fault(cand, exc)
            put(_Failed(_MidStream(exc, "".join(parts)) if parts else exc))
            return
        except asyncio.CancelledError:
            raise  # stopped: it lost a race, or the request was cancelled
        except Exception as exc:  # noqa: BLE001 - a bug must reach the caller, not hang it
            put(_Failed(exc))
            return
        finally:
            if own:
                self.in_flight[cand.server.id] = max(0, self.in_flight.get(cand.server.id, 1) - 1)
        end = loop.time()
        if not first:
            first = end
        text = "".join(parts)
        if not ct and text:
            ct = _rough_tokens(text)
        self.speeds.record(cand.key, first - start, ct, end - start,
                           max_gap=max_gap if max_gap >= 0 else None)
        if self.faults.ok(cand.health_key):
            log.info("%s answers normally again", cand.label)
        put(Served(cand, text, first - start, end - start, pt, ct, reason or "stop"))

    def _missed(self, cand: Candidate, dl: Deadlines, mid: bool) -> BackendTimeout:
        # only a deadline learned from the model's answers says "this model": the configured
        # ceilings keep meaning what they meant (the server looks down)
        kind = DeadlineMissed if dl.learned else BackendTimeout
        if mid:
            return kind(
                f"{cand.label} went silent for {dl.gap:.1f} s in the middle of the answer "
                f"({'learned from its answers' if dl.learned else 'its usual pace unknown'})",
                hint="The answer goes on from another model; `labrouter nodes` shows "
                     "the servers.")
        return kind(
            f"{cand.label} sent no token within {dl.first_token:.1f} s ({dl.why})",
            hint="It is tried last for a while and probed in the background; raise "
                 "timeouts.first_token or set routing.adaptive_deadlines = false if it is "
                 "just slow.")

    def _fault(self, cand: Candidate, exc: BackendError) -> None:
        """A deadline missed, a stream dropped or stalled: the model is tried last for a
        while (growing back-off), and probed until it answers again."""
        if not isinstance(exc, BackendTimeout) and not exc.server_down and \
                type(exc).__name__ != "ServerFailure":
            return  # a 404 or a refused key says nothing of the server's health
        backoff = self.faults.fault(cand.health_key, self.clock(), str(exc))
        log.info("%s is tried last for %.0f s: %s", cand.label, backoff, exc)

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
                async with aclosing(self._single(run, cand)) as pieces:
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

    async def _single(self, run: _Run, cand: Candidate
                      ) -> AsyncGenerator[Started | Text | Served, None]:
        """One candidate, not hedged: Started, its Text, its Served. Raises _MidStream
        after text, BackendError before."""
        leg = self._start_leg(run, cand)
        yield Started(cand, run.classification, run.route)
        run.current, run.parts = cand, leg.parts
        try:
            while True:
                piece = await leg.queue.get()
                if isinstance(piece, _Failed):
                    raise piece.error
                yield piece
                if isinstance(piece, Served):
                    return
        finally:
            if leg in run.legs:
                run.legs.remove(leg)
            leg.stop()

    def _failed(self, cand: Candidate, exc: BackendError, dead: set[tuple[str, str]]) -> None:
        log.info("%s failed: %s", cand.label, exc)
        if exc.server_down:
            dead.add((cand.peer.node_id, cand.server.id))
            if self.on_server_failed:
                try:
                    self.on_server_failed(cand, exc)
                except Exception:  # noqa: BLE001 - passive health is best effort
                    log.exception("passive health report failed")

    def _messages(self, cand: Candidate, req: AskRequest,
                  c: Classification | None = None) -> list[ChatMessage]:
        instruction = req.instruction
        if instruction is None and req.bare:
            configured = self.config.route(cand.route).instruction
            # a question or a request is its own instruction; code, an error, a problem or
            # prose gets the route's (core/selection.py)
            instruction = (instruction_for(c, req.prompt, configured) if c is not None
                           else configured) or None
        text = f"{instruction}\n\n{req.prompt}" if instruction else req.prompt
        images: tuple[str, ...] = ()
        if req.image is not None:
            if cand.drop_image:
                text += ("\n\n(An image came with this request, but this model cannot see "
                         "images, so it was left out.)")
            else:
                images = (base64.b64encode(req.image).decode("ascii"),)
        return [*req.messages, ChatMessage("user", text, images)]

    def _result(self, run: _Run, served: Served, restarted: bool | None = None) -> AskResult:
        cand = served.candidate
        restarted = run.restarted if restarted is None else restarted
        outcome = "restarted" if restarted or run.continued else (
            "fallback" if run.attempts or cand.fallback else "ok")
        # the served ttft and duration are this attempt's (the speed table wants those); the
        # record wants what the user waited, from the request's start, like its duration: a
        # first choice that hung for a minute before the fallover is part of the wait
        now = self.clock()
        c = run.classification
        ttft = max(0.0, now - run.t0 - (served.duration - served.ttft))
        if run.continued and run.first_text is not None:
            ttft = run.first_text - run.t0  # the user saw the answer start on the first leg
        return AskResult(
            answer=run.prefix + served.text if run.continued else served.text,
            route=cand.route, node=cand.peer.name, server=cand.server.id,
            model=cand.model, attempts=tuple(run.attempts), prompt_tokens=served.prompt_tokens,
            completion_tokens=served.completion_tokens,
            ttft=ttft, duration=now - run.t0, outcome=outcome,
            image_dropped=run.req.image is not None and cand.drop_image, restarted=restarted,
            confidence=c.confidence, reasons=tuple(c.reasons) + (cand.reason,),
            finish_reason=served.finish_reason, classified_route=run.route,
            cost_usd=_cost(cand.server, served.prompt_tokens, served.completion_tokens),
            hedged=run.hedged, continued=run.continued)

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
            classified_route=result.classified_route, finish_reason=result.finish_reason,
            hedged=result.hedged, continued=result.continued)
        self.usage_log.append(rec)
