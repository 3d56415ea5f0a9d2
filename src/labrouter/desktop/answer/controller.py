"""The daemon side of the answer window (asyncio, on the daemon's loop).

Owns :class:`WindowProcess` (the window's child process and its pipes), :class:`Hooks`
(what Copy and Replace selection do: the desktop app gives its clipboard and keyboard),
:class:`AnswerSession` (one window: it feeds ``Asker.stream`` events to the window and
does what the user asks there: copy, replace, retry on a stronger model, cancel, follow
up, choose another action), :func:`window_problem` (why no window can be shown here) and
:func:`stronger_model`.

Cancelling is closing: Esc, the close button, Stop and choosing another action cancel the
task that iterates ``Asker.stream``, which closes the stream to the server (the server
sees the connection close and stops generating).

Imports ``ask`` and ``core`` (the request and its events) and the window's protocol; never
tkinter (that is the child's), never ``app`` or ``autostart``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import sys
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from ...ask import AskRequest, AskResult, Done, FellOver, Started, Text
from ...backends.base import ChatMessage
from ...core.classify import Classification
from ...core.config import Config
from ...core.errors import AllFailed, LabrouterError
from ...core.peers import ModelInfo, Peer
from ...core.policy import Candidate, model_matches
from . import protocol as p
from .actions import ACTIONS, action_of, instruction_for, preselect

log = logging.getLogger(__name__)

START_TIMEOUT = 10.0  # seconds for the window to say it is shown (or failed)
#: requests about a selection: the window offers the action row for them
SELECTION_SOURCES = ("hotkey", "selection")


class WindowUnavailable(LabrouterError):
    """No answer window can be shown here; the caller falls back to notifications."""


def window_problem(env: Mapping[str, str] | None = None) -> str | None:
    """None when an answer window can probably be shown; else why not (for doctor and the
    fallback). The child's own start is the final word: it reports ``failed``."""
    env = os.environ if env is None else env
    if importlib.util.find_spec("tkinter") is None or importlib.util.find_spec(
            "_tkinter") is None:
        return "this Python has no Tk (tkinter); install python3-tk or a Python with Tk"
    if sys.platform.startswith(("linux", "freebsd", "openbsd")) and not env.get("DISPLAY"):
        return "no X display (DISPLAY is not set); Tk needs X11 or XWayland"
    return None


class StreamAsker(Protocol):
    """The part of ``ask.Asker`` the window uses."""

    config: Config

    def classify(self, req: AskRequest) -> Classification: ...

    def stream(self, req: AskRequest) -> AsyncGenerator[Any, None]: ...


# ------------------------------------------------------------------ the child process


class WindowProcess:
    """``python -m labrouter.desktop.answer.window`` and its pipes (JSON lines)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.closed = False

    @classmethod
    async def start(cls, python: str | None = None,
                    env: Mapping[str, str] | None = None) -> WindowProcess:
        run_env = dict(os.environ if env is None else env)
        # the child imports this package from wherever the parent did (a source tree too)
        pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.dirname(os.path.abspath(__file__)))))
        run_env["PYTHONPATH"] = os.pathsep.join(
            x for x in (pkg_root, run_env.get("PYTHONPATH", "")) if x)
        proc = await asyncio.create_subprocess_exec(
            python or sys.executable, "-m", "labrouter.desktop.answer.window",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=run_env,
            start_new_session=sys.platform != "win32")
        return cls(proc)

    async def send(self, msg: p.ToWindow) -> None:
        if self.closed or self.proc.stdin is None:
            return
        try:
            self.proc.stdin.write(p.encode(msg))
            await self.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError, RuntimeError):
            self.closed = True

    async def receive(self) -> p.FromWindow | None:
        """The next message from the window; None when it has gone."""
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                self.closed = True
                return None
            try:
                msg = p.decode(line)
            except p.ProtocolError as exc:
                log.warning("answer window: %s", exc)
                continue
            return msg  # type: ignore[return-value]

    async def close(self, grace: float = 2.0) -> None:
        """Ask the window to close; end it if it does not."""
        await self.send(p.Close())
        if self.proc.stdin is not None:
            with contextlib.suppress(Exception):
                self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        self.closed = True


class WindowPool:
    """Keeps one window process started and idle, so a press shows its window in tens of
    milliseconds instead of the ~0.5 s that starting Python and Tk takes. After one is
    taken, the next is started a little later (not while the first one maps)."""

    def __init__(self, python: str | None = None, env: Mapping[str, str] | None = None,
                 warm: bool = True, delay: float = 1.0) -> None:
        self.python = python
        self.env = env
        self.warm = warm
        self.delay = delay
        self._spare: WindowProcess | None = None
        self._warming: asyncio.Task[None] | None = None

    async def take(self) -> WindowProcess:
        spare, self._spare = self._spare, None
        if spare is None or spare.proc.returncode is not None:
            spare = await WindowProcess.start(self.python, self.env)
        if self.warm:
            self._warm_later(self.delay)
        return spare

    def _warm_later(self, delay: float) -> None:
        if self._warming is not None and not self._warming.done():
            return

        async def warm() -> None:
            await asyncio.sleep(delay)
            if self._spare is None:
                try:
                    self._spare = await WindowProcess.start(self.python, self.env)
                except OSError:
                    log.warning("answer window: could not start a spare", exc_info=True)

        self._warming = asyncio.get_running_loop().create_task(warm())

    async def prepare(self) -> None:
        """Start the spare now (at the desktop's start)."""
        if self.warm:
            self._warm_later(0.0)

    async def close(self) -> None:
        if self._warming is not None:
            self._warming.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._warming
        if self._spare is not None:
            await self._spare.close()
            self._spare = None


# ------------------------------------------------------------------ what the buttons do


@dataclass
class Hooks:
    """What the desktop does for the window: put the answer on the clipboard, paste it
    over the selection (clipboard restored after), and learn of each answer (Recent)."""

    copy: Callable[[str], Awaitable[None]]
    replace: Callable[[str], Awaitable[None]]
    answered: Callable[[str, AskResult], Awaitable[None] | None] = lambda _q, _r: None


class _Clipboard(Protocol):
    def save(self) -> Any: ...

    def put_back(self, saved: Any) -> None: ...

    def write_text(self, text: str) -> None: ...


class _Keyboard(Protocol):
    def send_paste(self) -> None: ...


FOCUS_SETTLE = 0.12  # seconds for the window manager to give the focus back after hiding
PASTE_SETTLE = 0.4  # seconds for the application to read the clipboard after Ctrl+V


def selection_hooks(clipboard: _Clipboard, keyboard: _Keyboard,
                    answered: Callable[[str, AskResult], Awaitable[None] | None] | None = None,
                    sleep: Callable[[float], None] = time.sleep) -> Hooks:
    """Copy and Replace through the desktop's clipboard and keyboard backends. Replace puts
    the answer on the clipboard, pastes it into the application that has the selection
    (the window has hidden itself), and puts the user's clipboard back afterwards."""

    def paste(text: str) -> None:
        saved = clipboard.save()
        clipboard.write_text(text)
        try:
            sleep(FOCUS_SETTLE)
            keyboard.send_paste()
            # X11 has no "pasted" event: the application asks the clipboard's owner for
            # the text after it handles Ctrl+V; give it time before taking the text back
            sleep(PASTE_SETTLE)
        finally:
            clipboard.put_back(saved)

    async def copy(text: str) -> None:
        await asyncio.to_thread(clipboard.write_text, text)

    async def replace(text: str) -> None:
        await asyncio.to_thread(paste, text)

    return Hooks(copy, replace, answered or (lambda _q, _r: None))


def stronger_model(config: Config, peers: Sequence[Peer], current: str, route: str,
                   image: bool = False) -> str:
    """The model "Retry" asks: the route's ``escalate_to`` when it is up, else the largest
    model that is up and larger than ``current`` (the route's own models first); "" when
    there is none."""
    up: list[ModelInfo] = []
    for peer in peers:
        if not peer.routable:
            continue
        for server in peer.servers:
            if server.up:
                up += [m for m in server.models if not image or m.vision]

    def size(name: str) -> float:
        for m in up:
            if m.name == name and m.params_b:
                return m.params_b
        return ModelInfo.guess_params(name)

    now = size(current)
    target = config.route(route).escalate_to
    if target and not model_matches(target, current):
        found = [m.name for m in up if model_matches(target, m.name)]
        if found:
            return found[0]
    wanted = config.route(route).models
    bigger = [m for m in up if m.name != current and size(m.name) > now > 0]
    if not bigger:
        return ""
    own = [m for m in bigger if any(model_matches(w, m.name) for w in wanted)]
    pool = own or bigger
    return max(pool, key=lambda m: size(m.name)).name


def failure_text(exc: BaseException) -> str:
    """What went wrong, in words for the window (no jargon, no repeated names)."""
    if isinstance(exc, AllFailed):
        lines = ["None of the models could answer."]
        seen: set[str] = set()
        for who, why in exc.attempts:
            why = why.removeprefix(f"{who}: ")
            if why not in seen:
                seen.add(why)
                lines.append(f"• {who}: {why}")
        return "\n".join(lines[:6])
    if isinstance(exc, LabrouterError):
        return exc.message + (f"\n{exc.hint}" if exc.hint else "")
    return f"Something went wrong: {type(exc).__name__}: {exc}"


# ------------------------------------------------------------------ one window


@dataclass
class Turn:
    question: str  # what the user sees as the question
    sent: str  # the user message as sent (instruction included)
    answer: str = ""


@dataclass
class SessionMarks:
    """Monotonic times of what happened (for the benchmark)."""

    opened: float = 0.0  # the Open message was sent
    shown: float = 0.0  # the window said it is mapped
    first_text: float = 0.0  # the first Text of the first answer was sent to the window
    painted: float = 0.0  # the window said the first text is on screen
    cancelled: float = 0.0  # the request was cancelled (Esc, Stop, close)
    closed: float = 0.0


@dataclass
class AnswerSession:
    """One question in one window, with its follow-ups. ``run`` returns when the window
    is closed; it raises :class:`WindowUnavailable` when the window could not start."""

    asker: StreamAsker
    hooks: Hooks
    peers: Callable[[], Sequence[Peer]] = list
    python: str | None = None
    env: Mapping[str, str] | None = None
    clock: Callable[[], float] = time.monotonic
    marks: SessionMarks = field(default_factory=SessionMarks)
    window: WindowProcess | None = None
    outcome: str = ""  # closed | replaced | cancelled | failed
    turns: list[Turn] = field(default_factory=list)
    candidate: Candidate | None = None
    stronger: str = ""
    _task: asyncio.Task[None] | None = None
    _base: AskRequest | None = None
    _action: str = ""
    _queries: list[asyncio.Future[p.Contents]] = field(default_factory=list)

    @property
    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def answer(self) -> str:
        return self.turns[-1].answer if self.turns else ""

    async def run(self, req: AskRequest, window: WindowProcess | None = None) -> str:
        """Show the window, ask, and serve the window until it closes; the outcome."""
        self._base = req
        c = self.asker.classify(req)
        actions: tuple[p.ActionChoice, ...] = ()
        first = req
        if req.bare:  # a bare selection: the action that fits asks
            self._action = preselect(req.prompt, c)
            first = self._with_action(self._action)
        elif req.source in SELECTION_SOURCES:  # the desktop chose the instruction already
            self._action = action_of(req.instruction or "", c)
        if self._action:
            actions = tuple(p.ActionChoice(a.id, a.label) for a in ACTIONS)
        self.window = window or await WindowProcess.start(self.python, self.env)
        self.marks.opened = self.clock()
        await self.window.send(p.Open("Choosing a model…", req.prompt, actions, self._action))
        self._ask(self._start(first))
        try:
            await self._serve()
        finally:
            await self._stop_request("closed")
            await self.window.close()
            self.marks.closed = self.clock()
        return self.outcome

    async def query(self, timeout: float = 5.0) -> p.Contents:
        """What the window shows now (tests, the benchmark)."""
        assert self.window is not None
        fut: asyncio.Future[p.Contents] = asyncio.get_running_loop().create_future()
        self._queries.append(fut)
        await self.window.send(p.Query())
        return await asyncio.wait_for(fut, timeout)

    # ------------------------------------------------------------ requests

    def _with_action(self, action_id: str) -> AskRequest:
        assert self._base is not None
        return replace(self._base, instruction=instruction_for(action_id), bare=False)

    def _start(self, req: AskRequest) -> AskRequest:
        """The conversation starts (again) with this request."""
        sent = f"{req.instruction}\n\n{req.prompt}" if req.instruction else req.prompt
        self.turns = [Turn(req.prompt, sent)]
        return req

    def _ask(self, req: AskRequest) -> None:
        self._task = asyncio.get_running_loop().create_task(self._stream(req))

    async def _stream(self, req: AskRequest) -> None:
        turn = self.turns[-1]
        stale = False  # a candidate fell over: its text goes when the next one starts
        result: AskResult | None = None
        assert self.window is not None
        w = self.window
        try:
            async with aclosing(self.asker.stream(req)) as events:
                async for ev in events:
                    if isinstance(ev, Started):
                        cand = ev.candidate
                        self.candidate = cand
                        if stale:
                            turn.answer = ""
                            await w.send(p.Reset())
                            stale = False
                        await w.send(p.Status(f"Asking {cand.model} on {cand.peer.name} "
                                              f"({cand.route})…"))
                    elif isinstance(ev, Text):
                        if stale:
                            turn.answer = ""
                            await w.send(p.Reset())
                            stale = False
                        turn.answer += ev.text
                        await w.send(p.Text(ev.text))
                        if not self.marks.first_text:
                            self.marks.first_text = self.clock()
                    elif isinstance(ev, FellOver):
                        stale = True
                        a = ev.attempt
                        why = "gave a weak answer" if getattr(a, "weak", False) else (
                            "stopped mid-answer" if a.mid_stream else "could not answer")
                        await w.send(p.Status(f"{a.model} on {a.node} {why}; trying "
                                              "another…"))
                    elif isinstance(ev, Done):
                        result = ev.result
        except asyncio.CancelledError:
            self.marks.cancelled = self.clock()
            await w.send(p.Done(self._label("Cancelled"), "Cancelled.", self._stronger()))
            raise
        except Exception as exc:  # every failure is shown in the window, never a traceback
            if not isinstance(exc, LabrouterError):
                log.error("answer window: the request failed", exc_info=True)
            await w.send(p.Error(failure_text(exc), self._stronger()))
            return
        if result is None:
            return
        if result.answer != turn.answer:  # a weak answer kept after a failed escalation
            turn.answer = result.answer
            await w.send(p.Reset())
            await w.send(p.Text(result.answer))
        await w.send(p.Done(self._done_label(result), self._note(result), self._stronger()))
        try:
            maybe = self.hooks.answered(turn.question, result)
            if maybe is not None:
                await maybe
        except Exception:  # noqa: BLE001 - Recent answers are a convenience
            log.warning("answer window: recording the answer failed", exc_info=True)

    def _label(self, state: str) -> str:
        c = self.candidate
        return f"{state}: {c.model} on {c.peer.name}" if c else state

    @staticmethod
    def _done_label(r: AskResult) -> str:
        return f"{r.model} on {r.node} · {r.route} · {r.duration:.1f} s"

    @staticmethod
    def _note(r: AskResult) -> str:
        reason = getattr(r, "finish_reason", "stop")
        notes = []
        if reason == "length":
            limit = getattr(r, "completion_tokens", 0)
            notes.append(f"Cut off at the length limit ({limit} tokens)." if limit else
                         "Cut off at the length limit.")
        if r.escalated:
            notes.append("The first answer looked weak; this one is from a larger model.")
        elif r.restarted:
            notes.append("The first model stopped mid-answer; this answer is from another.")
        if r.image_dropped:
            notes.append("The image was left out: this model cannot see images.")
        return " ".join(notes)

    def _stronger(self) -> str:
        c = self.candidate
        if c is None:
            return ""
        try:
            self.stronger = stronger_model(self.asker.config, self.peers(), c.model, c.route,
                                           image=self._base is not None
                                           and self._base.image is not None)
        except Exception:  # noqa: BLE001 - no Retry button is better than no window
            log.warning("answer window: finding a stronger model failed", exc_info=True)
            self.stronger = ""
        return self.stronger

    async def _stop_request(self, why: str) -> None:
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            log.debug("answer window: request cancelled (%s)", why)

    # ------------------------------------------------------------ the window's wishes

    async def _serve(self) -> None:
        assert self.window is not None
        deadline = self.clock() + START_TIMEOUT
        while True:
            if not self.marks.shown:
                left = deadline - self.clock()
                try:
                    msg = await asyncio.wait_for(self.window.receive(), max(0.01, left))
                except TimeoutError:
                    msg = p.Failed("the window did not appear")
            else:
                msg = await self.window.receive()
            if msg is None:
                if not self.marks.shown:
                    msg = p.Failed("the window process ended before it was shown")
                else:
                    self.outcome = self.outcome or "closed"
                    return
            if not await self._handle(msg):
                return

    async def _handle(self, msg: p.FromWindow) -> bool:
        """Do what the window asks; False when the session is over."""
        if isinstance(msg, p.Failed):
            self.outcome = "failed"
            await self._stop_request("window failed")
            raise WindowUnavailable(msg.text)
        if isinstance(msg, p.Shown):
            self.marks.shown = self.clock()
        elif isinstance(msg, p.Contents):
            if self._queries:
                fut = self._queries.pop(0)
                if not fut.done():
                    fut.set_result(msg)
        elif isinstance(msg, p.Painted):
            if not self.marks.painted:
                self.marks.painted = self.clock()
        elif isinstance(msg, p.CopyAnswer):
            if self.answer:
                await self.hooks.copy(self.answer)
        elif isinstance(msg, p.ReplaceSelection):
            if self.answer and not self.busy:
                await self.hooks.replace(self.answer)
                self.outcome = "replaced"
                return False
        elif isinstance(msg, p.Cancel):
            await self._stop_request("stop")
        elif isinstance(msg, p.Closed):
            self.outcome = "cancelled" if self.busy else "closed"
            if self.busy:
                self.marks.cancelled = self.clock()
            await self._stop_request(msg.reason)
            return False
        elif isinstance(msg, p.Retry):
            await self._retry()
        elif isinstance(msg, p.Action):
            await self._choose(msg.id)
        elif isinstance(msg, p.FollowUp):
            await self._follow_up(msg.text)
        return True

    async def _retry(self) -> None:
        if self.busy or not self.stronger or self._base is None:
            return
        assert self.window is not None
        turn = self.turns[-1]
        history = self._history(upto=len(self.turns) - 1)
        req = replace(self._base, prompt=turn.sent, instruction=None, bare=False,
                      messages=history, model=self.stronger, node=None, route=None)
        turn.answer = ""
        await self.window.send(p.Reset())
        await self.window.send(p.Status(f"Asking {self.stronger}…"))
        self._ask(req)

    async def _choose(self, action_id: str) -> None:
        if action_id not in {a.id for a in ACTIONS} or self._base is None:
            return
        await self._stop_request("another action")
        assert self.window is not None
        self._action = action_id
        await self.window.send(p.Reset(everything=True))
        await self.window.send(p.Status("Choosing a model…"))
        self._ask(self._start(self._with_action(action_id)))

    async def _follow_up(self, text: str) -> None:
        if self.busy or not text.strip() or self._base is None:
            return
        assert self.window is not None
        c = self.candidate
        history = self._history(upto=len(self.turns))
        self.turns.append(Turn(text, text))
        # the same model on the same machine: it has the conversation's context warm
        req = AskRequest(prompt=text, messages=history, source=self._base.source,
                         options=self._base.options,
                         model=c.model if c else None, node=c.peer.node_id if c else None,
                         route=c.route if c else None)
        await self.window.send(p.Turn(text))
        await self.window.send(p.Status(f"Asking {c.model} on {c.peer.name} ({c.route})…"
                                        if c else "Choosing a model…"))
        self._ask(req)

    async def close(self) -> None:
        """Cancel the request and close the window (a newer press replaces this one)."""
        self.outcome = self.outcome or ("cancelled" if self.busy else "closed")
        await self._stop_request("superseded")
        if self.window is not None:
            await self.window.close()

    def _history(self, upto: int) -> tuple[ChatMessage, ...]:
        out: list[ChatMessage] = list(self._base.messages) if self._base else []
        for t in self.turns[:upto]:
            if t.answer:
                out += [ChatMessage("user", t.sent), ChatMessage("assistant", t.answer)]
        return tuple(out)


# ------------------------------------------------------------------ what the desktop app holds


class AnswerWindows:
    """The desktop app's way to show answers in windows: one at a time (a new question
    closes the previous window, cancelling its request if it still runs), from a pool
    with a warm spare. :meth:`show` returns once the window is on screen; the session
    goes on by itself until the user closes it. When no window can be shown it raises
    :class:`WindowUnavailable` and says so from then on (``reason``), and the app uses
    notifications."""

    def __init__(self, asker: StreamAsker, peers: Callable[[], Sequence[Peer]], hooks: Hooks,
                 env: Mapping[str, str] | None = None, warm: bool = True) -> None:
        self.asker = asker
        self.peers = peers
        self.hooks = hooks
        self.env = env
        self.reason = window_problem(env)
        self.pool = WindowPool(env=env, warm=warm)
        self.active: AnswerSession | None = None
        self._tasks: set[asyncio.Task[str]] = set()

    @property
    def available(self) -> bool:
        return not self.reason

    async def start(self) -> None:
        if self.available:
            await self.pool.prepare()

    async def show(self, req: AskRequest) -> AnswerSession:
        if not self.available:
            raise WindowUnavailable(self.reason or "no answer window")
        if self.active is not None:
            await self.active.close()
        session = AnswerSession(self.asker, self.hooks, peers=self.peers, env=self.env)
        self.active = session
        try:
            window = await self.pool.take()
        except OSError as exc:
            self.reason = f"the answer window could not start: {exc}"
            raise WindowUnavailable(self.reason) from exc
        task = asyncio.get_running_loop().create_task(session.run(req, window=window))
        self._tasks.add(task)
        task.add_done_callback(self._ended)
        while not session.marks.shown and not task.done():
            await asyncio.wait({task}, timeout=0.02)
        if task.done() and not session.marks.shown:
            err = task.exception()
            self.reason = str(err) if isinstance(err, WindowUnavailable) else \
                f"the answer window failed: {err!r}"
            self.active = None
            raise WindowUnavailable(self.reason)
        return session

    def _ended(self, task: asyncio.Task[str]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and not isinstance(
                task.exception(), WindowUnavailable):
            log.error("answer window failed", exc_info=task.exception())

    async def close(self) -> None:
        """At the desktop's end: close the window and the spare."""
        if self.active is not None:
            await self.active.close()
            self.active = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pool.close()
