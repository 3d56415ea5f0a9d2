"""The answer window for real: Xvfb, a real window manager (openbox), an editor with
selected text that keeps the focus, the window process started by the controller, and a
fake Ollama on 127.0.0.1 that notices when the client hangs up. Driven with xdotool like a
person; the window is read back through its protocol (``query``) and the clipboard with
xclip.

Skipped with the reason when the tools are missing (.ci/desktop-setup.sh installs them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from labrouter.ask import AskRequest
from labrouter.desktop.answer import protocol as p
from labrouter.desktop.answer.controller import (
    AnswerSession,
    Hooks,
    WindowPool,
    WindowProcess,
    selection_hooks,
)
from tests.answer_window_env import (
    CODE_ANSWER,
    SELECTED,
    Target,
    WatchedOllama,
    answer_skip_reason,
    focused_window,
    make_asker,
    start_openbox,
)
from tests.desktop_env import DesktopSession

pytestmark = [pytest.mark.desktop,
              pytest.mark.skipif(answer_skip_reason() is not None,
                                 reason=answer_skip_reason() or "")]

MODELS = ("qwen3:4b", "qwen2.5-coder:7b", "qwen3-coder:30b")


@pytest.fixture(scope="module")
def desk() -> Iterator[DesktopSession]:
    s = DesktopSession().start()
    try:
        start_openbox(s)
        yield s
    finally:
        s.stop()


@pytest.fixture
def target(desk: DesktopSession) -> Iterator[Target]:
    desk.xdotool("mousemove", "300", "200")
    t = Target(desk)
    try:
        yield t
    finally:
        t.close()


class XClipboard:
    """The clipboard as the desktop's xclip backend uses it (owners ended by the session)."""

    def __init__(self, desk: DesktopSession) -> None:
        self.desk = desk

    def save(self) -> str | None:
        return self.desk.get_clipboard()

    def put_back(self, saved: str | None) -> None:
        self.desk.set_clipboard(saved or "")

    def write_text(self, text: str) -> None:
        self.desk.set_clipboard(text)


class XdotoolKeys:
    def __init__(self, desk: DesktopSession) -> None:
        self.desk = desk

    def send_paste(self) -> None:
        self.desk.xdotool("key", "--clearmodifiers", "ctrl+v")


def hooks_for(desk: DesktopSession) -> Hooks:
    return selection_hooks(XClipboard(desk), XdotoolKeys(desk))


async def start(desk: DesktopSession, srv: WatchedOllama, req: AskRequest,
                window: WindowProcess | None = None) -> tuple[AnswerSession, asyncio.Task[str]]:
    asker, peers = make_asker(srv.url, MODELS)
    session = AnswerSession(asker, hooks_for(desk), peers=lambda: peers, env=desk.env)
    task = asyncio.get_running_loop().create_task(session.run(req, window=window))
    await until(lambda: session.marks.shown > 0, "the window to show")
    return session, task


async def until(cond: Any, what: str, timeout: float = 15) -> None:
    async def loop() -> None:
        while not cond():
            await asyncio.sleep(0.02)
    try:
        await asyncio.wait_for(loop(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def click(desk: DesktopSession, session: AnswerSession, control: str) -> None:
    c = await session.query()  # where it is now: the window grows with the answer
    assert control in c.controls, f"{control} is not shown: {c.controls}"
    x, y = c.controls[control]
    desk.xdotool("mousemove", str(x), str(y), "click", "1")
    await asyncio.sleep(0.2)


async def test_the_answer_streams_in_without_taking_the_focus_and_copy_works(
        desk: DesktopSession, target: Target) -> None:
    async with WatchedOllama(models=list(MODELS), answer=CODE_ANSWER, tokens_per_s=60) as srv:
        session, task = await start(desk, srv, AskRequest(prompt=SELECTED, bare=True))
        assert focused_window(desk) == target.window, "the window took the focus on map"
        await until(lambda: session.marks.painted > 0, "the first text on screen")
        streaming = await session.query()
        assert streaming.status.startswith("Asking qwen3-coder:30b on desk (code)")
        assert not streaming.focused and "stop" in streaming.controls
        await until(lambda: not session.busy, "the answer")
        shown = await session.query()
        assert "def add(a, b):\n" in shown.text and "```" not in shown.text
        assert "return a + b" in shown.text and "a - b is subtraction" in shown.text
        assert shown.status.startswith("qwen3-coder:30b on desk · code")
        assert focused_window(desk) == target.window, "the focus moved while streaming"

        await click(desk, session, "text")
        assert (await session.query()).focused, "a click gives the window the keyboard"
        assert focused_window(desk) != target.window
        desk.xdotool("key", "ctrl+c")
        await until(lambda: desk.get_clipboard() == CODE_ANSWER, "the answer on the clipboard")
        await click(desk, session, "copy")
        assert desk.get_clipboard() == CODE_ANSWER

        desk.xdotool("key", "Escape")
        assert await asyncio.wait_for(task, 10) == "closed"
        assert session.window is not None and session.window.proc.returncode is not None
        await until(lambda: focused_window(desk) == target.window, "the focus back")


async def test_escape_closes_the_window_and_the_server_sees_the_request_end(
        desk: DesktopSession, target: Target) -> None:
    async with WatchedOllama(models=list(MODELS), answer=CODE_ANSWER * 10,
                             tokens_per_s=15) as srv:
        session, task = await start(desk, srv, AskRequest(prompt="What is a monad?"))
        await until(lambda: session.marks.painted > 0, "the first text on screen")
        await click(desk, session, "text")
        desk.xdotool("key", "Escape")
        assert await asyncio.wait_for(task, 10) == "cancelled"
        await srv.wait_hung_up(1, timeout=10)
        assert srv.finished == 0
        assert session.window is not None and session.window.proc.returncode is not None


async def test_a_follow_up_typed_in_the_window_continues_on_the_same_model(
        desk: DesktopSession, target: Target) -> None:
    async with WatchedOllama(models=list(MODELS), answer="Paris.") as srv:
        session, task = await start(desk, srv, AskRequest(
            prompt="What is the capital of France?", bare=True))
        await until(lambda: not session.busy and session.answer == "Paris.", "the answer")
        model = srv.requests_to("/api/chat")[0].model
        await click(desk, session, "followup")
        desk.xdotool("type", "--delay", "5", "And of Italy?")
        desk.xdotool("key", "Return")
        await until(lambda: len(srv.requests_to("/api/chat")) == 2, "the follow-up request")
        req = srv.requests_to("/api/chat")[1]
        assert req.model == model
        assert [(m["role"], m["content"]) for m in req.body["messages"]] == [
            ("user", "What is the capital of France?"), ("assistant", "Paris."),
            ("user", "And of Italy?")]
        await until(lambda: not session.busy, "the second answer")
        text = (await session.query()).text
        assert text.count("Paris.") == 2 and "And of Italy?" in text
        desk.xdotool("key", "Escape")
        await asyncio.wait_for(task, 10)


async def test_replace_pastes_over_the_selection_and_puts_the_clipboard_back(
        desk: DesktopSession, target: Target) -> None:
    desk.set_clipboard("the user's clipboard")
    async with WatchedOllama(models=list(MODELS), answer="def add(a, b):\n    return a + b"
                             ) as srv:
        session, task = await start(desk, srv, AskRequest(prompt=SELECTED, bare=True))
        await until(lambda: not session.busy and session.answer, "the answer")
        await click(desk, session, "replace")
        assert await asyncio.wait_for(task, 10) == "replaced"
        assert target.next_text() == "def add(a, b):\n    return a + b"
        assert desk.get_clipboard() == "the user's clipboard"
        assert focused_window(desk) == target.window


async def test_a_warm_window_from_the_pool_and_another_action(
        desk: DesktopSession, target: Target) -> None:
    pool = WindowPool(env=desk.env, delay=0.0)
    await pool.prepare()
    try:
        await until(lambda: pool._spare is not None, "the spare window process")
        async with WatchedOllama(models=list(MODELS), answer=CODE_ANSWER,
                                 tokens_per_s=40) as srv:
            session, task = await start(desk, srv, AskRequest(prompt=SELECTED, bare=True),
                                        window=await pool.take())
            assert focused_window(desk) == target.window
            await click(desk, session, "action:fix")
            await until(lambda: len(srv.requests_to("/api/chat")) == 2, "the second request")
            sent = srv.requests_to("/api/chat")[1].body["messages"][-1]["content"]
            assert sent.startswith("Fix the mistakes")
            await until(lambda: not session.busy, "the answer")
            assert (await session.query()).text.count("def add(a, b):") == 1
            desk.xdotool("key", "Escape")
            await asyncio.wait_for(task, 10)
            await until(lambda: pool._spare is not None, "the next spare")
    finally:
        await pool.close()


def test_a_window_that_cannot_start_says_why(desk: DesktopSession) -> None:
    async def run() -> p.FromWindow | None:
        env = dict(desk.env, DISPLAY=":999")
        w = await WindowProcess.start(env=env)
        try:
            return await asyncio.wait_for(w.receive(), 15)
        finally:
            await w.close()

    msg = asyncio.run(run())
    assert isinstance(msg, p.Failed) and "no window can be shown" in msg.text


async def test_a_new_question_replaces_the_open_window_and_cancels_its_request(
        desk: DesktopSession, target: Target) -> None:
    from labrouter.desktop.answer.controller import AnswerWindows

    async with WatchedOllama(models=list(MODELS), answer=CODE_ANSWER * 10,
                             tokens_per_s=15) as srv:
        asker, peers = make_asker(srv.url, MODELS)
        answered: list[str] = []
        hooks = hooks_for(desk)
        hooks.answered = lambda q, _r: answered.append(q)
        windows = AnswerWindows(asker, lambda: peers, hooks, env=desk.env)
        await windows.start()
        try:
            first = await windows.show(AskRequest(prompt="What is a monad?"))
            assert first.marks.shown and focused_window(desk) == target.window
            await until(lambda: first.marks.painted > 0, "the first answer streaming")
            second = await windows.show(AskRequest(prompt="What is a functor?"))
            await srv.wait_hung_up(1, timeout=10)
            assert first.window is not None and first.window.proc.returncode is not None
            assert windows.active is second and second.marks.shown
            assert focused_window(desk) == target.window
        finally:
            await windows.close()
        await srv.wait_hung_up(2, timeout=10)
        assert answered == []


async def test_no_display_means_no_window_and_a_reason(desk: DesktopSession) -> None:
    from labrouter.desktop.answer.controller import AnswerWindows, WindowUnavailable

    async with WatchedOllama(models=list(MODELS)) as srv:
        asker, peers = make_asker(srv.url, MODELS)
        for env in ({k: v for k, v in desk.env.items() if k != "DISPLAY"},
                    dict(desk.env, DISPLAY=":999")):
            windows = AnswerWindows(asker, lambda: peers, hooks_for(desk), env=env,
                                    warm=False)
            try:
                with pytest.raises(WindowUnavailable):
                    await windows.show(AskRequest(prompt="hello"))
                assert not windows.available and windows.reason
            finally:
                await windows.close()
