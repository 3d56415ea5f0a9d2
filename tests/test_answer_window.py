"""The answer window without a display: its protocol, the streamed Markdown, the actions,
the choice of a stronger model, and the controller driving a stand-in window over a real
fake Ollama on 127.0.0.1 (cancel reaches the server, follow-ups carry the earlier turns on
the same model, another action asks again, Retry asks the stronger model).

The real window under Xvfb and openbox is tests/test_answer_window_e2e.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from labrouter.ask import AskRequest
from labrouter.core.classify import Classifier
from labrouter.core.config import RouteConfig, parse_config
from labrouter.core.peers import ModelInfo, NodeState, Peer, ServerState
from labrouter.desktop.answer import protocol as p
from labrouter.desktop.answer.actions import instruction_for, preselect, user_language
from labrouter.desktop.answer.controller import (
    AnswerSession,
    Hooks,
    WindowUnavailable,
    failure_text,
    selection_hooks,
    stronger_model,
    window_problem,
)
from labrouter.desktop.answer.render import MarkdownStream, spans_of
from tests.answer_window_env import CODE_ANSWER, SELECTED, WatchedOllama, make_asker

MODELS = ("qwen3:4b", "qwen2.5-coder:7b", "qwen3-coder:30b")

# ------------------------------------------------------------------ protocol


def test_every_message_survives_a_round_trip() -> None:
    msgs: list[p.Message] = [
        p.Open("Asking…", "def f(): pass", (p.ActionChoice("fix", "Fix"),), "fix"),
        p.Status("x", busy=False), p.Reset(everything=True), p.Text("a\nb \ud800"),
        p.Turn("and?"), p.Done("m on n", "Cancelled.", "big:70b"), p.Error("no", ""),
        p.Query(), p.Close(), p.Shown(42), p.Painted(3), p.CopyAnswer(),
        p.ReplaceSelection(), p.Retry(), p.Cancel(), p.FollowUp("more"), p.Action("fix"),
        p.Closed("escape"), p.Contents("t", "s", True, {"copy": [1, 2]}), p.Failed("no X"),
    ]
    for m in msgs:
        line = p.encode(m)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert p.decode(line) == m


@pytest.mark.parametrize("line,why", [
    (b"not json", "not JSON"), (b"[1]", "not an object"), (b'{"type": "nope"}', "unknown"),
    (b'{"type": "text", "text": 5}', "wrong type"), (b'{"type": "text"}', "text"),
    (b'{"type": "open", "status": "", "question": "", "actions": [1]}', "actions"),
    (b'{"type": "contents", "controls": {"a": [1]}}', "controls"),
])
def test_bad_lines_are_protocol_errors_with_a_reason(line: bytes, why: str) -> None:
    with pytest.raises(p.ProtocolError, match=why):
        p.decode(line)


# ------------------------------------------------------------------ rendering


def test_code_blocks_headings_bullets_and_inline_styles() -> None:
    spans = spans_of("# Title\nUse `x` and **y**.\n```py\nprint(1)\n```\n- item\n1. first\n")
    assert ("Title", ("h",)) in spans
    assert ("x", ("icode",)) in spans and ("y", ("b",)) in spans
    assert ("py\n", ("codelang",)) in spans and ("print(1)\n", ("code",)) in spans
    assert ("•  ", ("li",)) in spans and ("1. ", ("li",)) in spans
    assert not any("```" in text for text, _ in spans)


def test_streaming_in_any_pieces_renders_as_the_whole() -> None:
    whole = spans_of(CODE_ANSWER)
    for size in (1, 2, 5, 13):
        stream = MarkdownStream()
        done: list[Any] = []
        tail: list[Any] = []
        for i in range(size, len(CODE_ANSWER) + size, size):
            new, tail = stream.update(CODE_ANSWER[:i])
            done += new
            assert not any("``" in t for t, _ in tail), "a fence being typed is not shown"
        assert [s for s in done + tail if s[0]] == whole


def test_a_line_in_a_code_block_stays_code_while_it_streams() -> None:
    stream = MarkdownStream()
    stream.update("```\n")
    _done, tail = stream.update("```\n- not a bullet")
    assert tail == [("- not a bullet", ("code",))]


# ------------------------------------------------------------------ actions


@pytest.mark.parametrize("text,want", [
    (SELECTED, "explain"),
    ("What is the capital of France?", "answer"),
    ("If a train leaves at 3 pm going 60 km/h, when does it arrive 150 km away?", "answer"),
    ("The meeting moved to Thursday because the venue was double booked, and the team "
     "agreed that the agenda should focus on the budget review, the hiring plan and the "
     "quarterly roadmap instead of the usual status updates.", "summarise"),
    ("serendipity", "explain"),
])
def test_the_preselected_action_fits_the_selection(text: str, want: str) -> None:
    assert preselect(text, Classifier().classify(text)) == want


def test_instructions_follow_the_locale_for_translation() -> None:
    assert instruction_for("answer") is None
    assert instruction_for("explain") == "Explain this and point out any mistakes:"
    assert user_language({"LANG": "de_DE.UTF-8"}) == "German"
    assert user_language({"LC_ALL": "C"}) == "English"
    assert "German" in str(instruction_for("translate", {"LANG": "de_DE.UTF-8"}))
    with pytest.raises(ValueError, match="unknown action"):
        instruction_for("dance")


# ------------------------------------------------------------------ stronger model


def _peers(*models: str, up: bool = True, state: NodeState = NodeState.ALIVE) -> list[Peer]:
    server = ServerState(id="s", url="http://127.0.0.1:1", up=up,
                         models=tuple(ModelInfo(m, params_b=ModelInfo.guess_params(m))
                                      for m in models))
    return [Peer("n", "box", state=state, servers=(server,))]


def test_stronger_is_the_largest_larger_model_of_the_route_first() -> None:
    cfg = parse_config("", hostname="box")
    peers = _peers("qwen3:4b", "qwen2.5-coder:7b", "qwen3-coder:30b", "llama3.3:70b")
    assert stronger_model(cfg, peers, "qwen2.5-coder:7b", "code") == "qwen3-coder:30b"
    # outside the route only when the route has nothing larger
    assert stronger_model(cfg, peers, "qwen3-coder:30b", "code") == "llama3.3:70b"
    assert stronger_model(cfg, peers, "llama3.3:70b", "quick") == ""
    assert stronger_model(cfg, _peers("qwen3:4b", "qwen3:14b", up=False), "qwen3:4b",
                          "quick") == ""
    assert stronger_model(cfg, _peers("qwen3:4b", "qwen3:14b", state=NodeState.DOWN),
                          "qwen3:4b", "quick") == ""


def test_stronger_is_the_routes_escalation_target_when_it_is_up() -> None:
    cfg = parse_config("", hostname="box")
    cfg = replace(cfg, routes={**cfg.routes, "quick": replace(
        cfg.route("quick"), escalate_to="qwen3:14b")})
    peers = _peers("qwen3:4b", "qwen3:14b", "llama3.3:70b")
    assert stronger_model(cfg, peers, "qwen3:4b", "quick") == "qwen3:14b"
    # with an image only a model that sees
    assert stronger_model(cfg, peers, "qwen3:4b", "quick", image=True) == ""


def test_failure_text_names_each_reason_once() -> None:
    from labrouter.core.errors import AllFailed

    exc = AllFailed("no candidate could answer (2 tried)",
                    [("smollm2 on desk", "smollm2 on desk: cannot reach the server"),
                     ("qwen3:4b on desk", "qwen3:4b on desk: cannot reach the server")])
    text = failure_text(exc)
    assert text.startswith("None of the models could answer.")
    assert "smollm2 on desk: smollm2 on desk" not in text
    assert "• smollm2 on desk: cannot reach the server" in text
    assert failure_text(ValueError("x")) == "Something went wrong: ValueError: x"


def test_window_problem_names_what_is_missing() -> None:
    import sys

    if sys.platform.startswith("linux"):
        assert "DISPLAY" in str(window_problem({}))
    assert window_problem({"DISPLAY": ":9"}) in (None, window_problem({"DISPLAY": ":9"}))


# ------------------------------------------------------------------ the controller


class StandInWindow:
    """The window process as the controller sees it, played by the test."""

    def __init__(self, show: bool = True) -> None:
        self.sent: list[p.ToWindow] = []
        self.inbox: asyncio.Queue[p.FromWindow | None] = asyncio.Queue()
        self.show = show
        self.closed = False
        self.changed = asyncio.Event()

    async def send(self, msg: p.ToWindow) -> None:
        self.sent.append(msg)
        self.changed.set()
        if isinstance(msg, p.Open):
            await self.inbox.put(p.Shown(1) if self.show else p.Failed("no display: test"))
        elif isinstance(msg, p.Query):
            await self.inbox.put(p.Contents(self.text()))

    async def receive(self) -> p.FromWindow | None:
        return await self.inbox.get()

    async def close(self) -> None:
        self.closed = True

    def user(self, msg: p.FromWindow | None) -> None:
        self.inbox.put_nowait(msg)

    def text(self) -> str:
        out = ""
        for m in self.sent:
            if isinstance(m, p.Reset):
                out = out[:out.rfind("\n\x00") + 1] if not m.everything and "\x00" in out \
                    else ""
            elif isinstance(m, p.Turn):
                out += f"\n\x00{m.question}\n"
            elif isinstance(m, p.Text):
                out += m.text
        return out

    def last(self, kind: type) -> Any:
        return next((m for m in reversed(self.sent) if isinstance(m, kind)), None)

    async def wait(self, cond: Any, timeout: float = 10) -> None:
        async def loop() -> None:
            while not cond():
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(loop(), timeout)


class Recorder:
    def __init__(self) -> None:
        self.copied: list[str] = []
        self.replaced: list[str] = []
        self.answered: list[tuple[str, Any]] = []

    def hooks(self) -> Hooks:
        async def copy(t: str) -> None:
            self.copied.append(t)

        async def replace_(t: str) -> None:
            self.replaced.append(t)

        def answered(q: str, r: Any) -> None:
            self.answered.append((q, r))

        return Hooks(copy, replace_, answered)


async def _session(srv: WatchedOllama, rec: Recorder, win: StandInWindow,
                   req: AskRequest) -> tuple[AnswerSession, asyncio.Task[str]]:
    asker, peers = make_asker(srv.url, MODELS)
    session = AnswerSession(asker, rec.hooks(), peers=lambda: peers)
    task = asyncio.get_running_loop().create_task(session.run(req, window=win))  # type: ignore[arg-type]
    return session, task


def _done(win: StandInWindow) -> bool:
    return win.last(p.Done) is not None or win.last(p.Error) is not None


async def test_the_answer_streams_into_the_window_and_copy_takes_it() -> None:
    rec, win = Recorder(), StandInWindow()
    async with WatchedOllama(models=list(MODELS), answer=CODE_ANSWER) as srv:
        session, task = await _session(srv, rec, win,
                                       AskRequest(prompt=SELECTED, bare=True, source="hotkey"))
        await win.wait(lambda: _done(win))
        opened = win.sent[0]
        assert isinstance(opened, p.Open) and opened.action == "explain"
        assert [a.id for a in opened.actions] == ["explain", "fix", "summarise", "translate",
                                                  "answer"]
        statuses = [m.text for m in win.sent if isinstance(m, p.Status)]
        assert statuses[-1] == "Asking qwen3-coder:30b on desk (code)…"
        assert sum(isinstance(m, p.Text) for m in win.sent) > 10, "streamed, not in one go"
        assert win.text() == CODE_ANSWER
        assert win.last(p.Done).status.startswith("qwen3-coder:30b on desk · code · ")
        # the classifier's action went with the question, not the route's instruction
        sent = srv.requests_to("/api/chat")[0].body["messages"][-1]["content"]
        assert sent == f"Explain this and point out any mistakes:\n\n{SELECTED}"
        assert (await session.query()).text == CODE_ANSWER
        win.user(p.CopyAnswer())
        win.user(p.Closed("escape"))
        assert await asyncio.wait_for(task, 5) == "closed"
    assert rec.copied == [CODE_ANSWER]
    assert rec.answered[0][0] == SELECTED and rec.answered[0][1].answer == CODE_ANSWER
    assert win.closed and session.marks.shown and session.marks.first_text


async def test_escape_cancels_the_request_at_the_server() -> None:
    rec, win = Recorder(), StandInWindow()
    async with WatchedOllama(models=list(MODELS), answer=CODE_ANSWER * 5,
                             tokens_per_s=20) as srv:
        session, task = await _session(srv, rec, win, AskRequest(prompt="What is a monad?"))
        await win.wait(lambda: win.last(p.Text) is not None)
        assert session.busy
        win.user(p.Closed("escape"))
        assert await asyncio.wait_for(task, 5) == "cancelled"
        await srv.wait_hung_up(1, timeout=5)
        assert srv.finished == 0
        assert win.last(p.Done).note == "Cancelled."
        assert session.marks.cancelled > 0
    assert rec.answered == []


async def test_stop_cancels_and_the_window_stays_for_a_retry() -> None:
    rec, win = Recorder(), StandInWindow()
    async with WatchedOllama(models=list(MODELS), answer=CODE_ANSWER * 5,
                             tokens_per_s=20) as srv:
        asker, peers = make_asker(srv.url, MODELS)
        session = AnswerSession(asker, rec.hooks(), peers=lambda: peers)
        task = asyncio.get_running_loop().create_task(session.run(
            AskRequest(prompt="Summarise: the cat sat on the mat.", route="quick"),
            window=win))  # type: ignore[arg-type]
        await win.wait(lambda: win.last(p.Text) is not None)
        win.user(p.Cancel())
        await win.wait(lambda: win.last(p.Done) is not None)
        await srv.wait_hung_up(1, timeout=5)
        assert not task.done()
        done = win.last(p.Done)
        assert done.note == "Cancelled." and done.stronger == "qwen3-coder:30b"
        win.user(p.Retry())
        await win.wait(lambda: len(srv.requests_to("/api/chat")) == 2)
        assert srv.requests_to("/api/chat")[1].model == "qwen3-coder:30b"
        win.user(None)  # the window process ended
        assert await asyncio.wait_for(task, 5) in ("closed", "cancelled")


async def test_a_follow_up_sends_the_earlier_turns_to_the_same_model() -> None:
    rec, win = Recorder(), StandInWindow()
    async with WatchedOllama(models=list(MODELS), answer="Paris.") as srv:
        session, task = await _session(srv, rec, win,
                                       AskRequest(prompt="What is the capital of France?",
                                                  bare=True))
        await win.wait(lambda: _done(win))
        first = srv.requests_to("/api/chat")[0].model
        win.user(p.FollowUp("And of Italy?"))
        await win.wait(lambda: len([m for m in win.sent if isinstance(m, p.Done)]) == 2)
        req = srv.requests_to("/api/chat")[1]
        assert req.model == first
        assert [(m["role"], m["content"]) for m in req.body["messages"]] == [
            ("user", "What is the capital of France?"), ("assistant", "Paris."),
            ("user", "And of Italy?")]
        assert win.last(p.Turn).question == "And of Italy?"
        # a third turn carries both earlier ones
        win.user(p.FollowUp("And of Spain?"))
        await win.wait(lambda: len([m for m in win.sent if isinstance(m, p.Done)]) == 3)
        assert len(srv.requests_to("/api/chat")[2].body["messages"]) == 5
        win.user(p.CopyAnswer())
        win.user(p.Closed("escape"))
        await asyncio.wait_for(task, 5)
    assert rec.copied == ["Paris."]  # Copy takes the latest answer


async def test_another_action_asks_again_with_its_instruction() -> None:
    rec, win = Recorder(), StandInWindow()
    async with WatchedOllama(models=list(MODELS), answer=CODE_ANSWER * 3,
                             tokens_per_s=40) as srv:
        session, task = await _session(srv, rec, win, AskRequest(prompt=SELECTED, bare=True))
        await win.wait(lambda: win.last(p.Text) is not None)
        win.user(p.Action("fix"))
        await win.wait(lambda: len(srv.requests_to("/api/chat")) == 2)
        await srv.wait_hung_up(1, timeout=5)  # the explanation was cancelled at the server
        sent = srv.requests_to("/api/chat")[1].body["messages"][-1]["content"]
        assert sent.startswith("Fix the mistakes in this") and sent.endswith(SELECTED)
        assert any(isinstance(m, p.Reset) and m.everything for m in win.sent)
        win.user(p.Action("nonsense"))  # ignored
        win.user(p.Closed("escape"))
        await asyncio.wait_for(task, 5)


async def test_replace_pastes_the_answer_and_closes() -> None:
    rec, win = Recorder(), StandInWindow()
    async with WatchedOllama(models=list(MODELS), answer="a + b") as srv:
        _session_, task = await _session(srv, rec, win, AskRequest(prompt=SELECTED))
        await win.wait(lambda: _done(win))
        win.user(p.ReplaceSelection())
        assert await asyncio.wait_for(task, 5) == "replaced"
    assert rec.replaced == ["a + b"] and win.closed


async def test_a_failure_is_shown_in_words_and_a_window_that_cannot_start_raises() -> None:
    rec = Recorder()
    async with WatchedOllama(models=list(MODELS), faults={"*": "http500"}) as srv:
        win = StandInWindow()
        _s, task = await _session(srv, rec, win, AskRequest(prompt="hello there"))
        await win.wait(lambda: _done(win))
        err = win.last(p.Error)
        assert err.text.startswith("None of the models could answer.")
        win.user(p.Closed("escape"))
        await asyncio.wait_for(task, 5)

        win = StandInWindow(show=False)
        _s, task = await _session(srv, rec, win, AskRequest(prompt="hello there"))
        with pytest.raises(WindowUnavailable, match="no display"):
            await asyncio.wait_for(task, 5)


async def test_an_answer_cut_at_the_length_limit_says_so() -> None:
    rec, win = Recorder(), StandInWindow()
    async with WatchedOllama(models=list(MODELS), answer=CODE_ANSWER) as srv:
        from labrouter.backends.base import ChatOptions

        _s, task = await _session(srv, rec, win, AskRequest(
            prompt="hello there", options=ChatOptions(max_tokens=5)))
        await win.wait(lambda: _done(win))
        assert win.last(p.Done).note.startswith("Cut off at the length limit")
        win.user(p.Closed("escape"))
        await asyncio.wait_for(task, 5)


def test_selection_hooks_paste_then_put_the_clipboard_back() -> None:
    calls: list[str] = []

    class Clip:
        value = "the user's clipboard"

        def save(self) -> str:
            calls.append("save")
            return self.value

        def put_back(self, saved: str) -> None:
            calls.append(f"put_back {saved}")
            self.value = saved

        def write_text(self, text: str) -> None:
            calls.append(f"write {text}")
            self.value = text

    class Keys:
        def send_paste(self) -> None:
            calls.append(f"paste while the clipboard holds {clip.value!r}")

    clip = Clip()
    hooks = selection_hooks(clip, Keys(), sleep=lambda _s: None)
    asyncio.run(hooks.replace("the answer"))
    assert calls == ["save", "write the answer",
                     "paste while the clipboard holds 'the answer'",
                     "put_back the user's clipboard"]
    asyncio.run(hooks.copy("copied"))
    assert clip.value == "copied"


def test_routes_with_no_models_have_no_stronger_model() -> None:
    cfg = parse_config("", hostname="box")
    cfg = replace(cfg, routes={"quick": RouteConfig()})
    assert stronger_model(cfg, _peers(), "qwen3:4b", "quick") == ""


async def test_a_selection_with_the_desktops_instruction_is_asked_as_it_is() -> None:
    # the desktop chose the instruction (from the classification): the first request goes
    # as it came, the action row shows what it amounts to, and another action asks anew
    rec, win = Recorder(), StandInWindow()
    async with WatchedOllama(models=list(MODELS), answer="ok") as srv:
        req = AskRequest(prompt=SELECTED, instruction="Explain this code and point out any "
                         "bugs:", source="hotkey")
        _s, task = await _session(srv, rec, win, req)
        await win.wait(lambda: _done(win))
        opened = win.sent[0]
        assert isinstance(opened, p.Open) and opened.action == "explain" and opened.actions
        first = srv.requests_to("/api/chat")[0].body["messages"][-1]["content"]
        assert first == f"Explain this code and point out any bugs:\n\n{SELECTED}"
        win.user(p.Action("translate"))
        await win.wait(lambda: len([m for m in win.sent if isinstance(m, p.Done)]) == 2)
        again = srv.requests_to("/api/chat")[1].body["messages"][-1]["content"]
        assert again.startswith("Translate this into ")
        win.user(p.Closed("escape"))
        await asyncio.wait_for(task, 5)

        # a typed question (not a selection) has no action row
        win = StandInWindow()
        _s, task = await _session(srv, rec, win, AskRequest(prompt="hi", source="cli"))
        await win.wait(lambda: _done(win))
        assert win.sent[0].actions == () and win.sent[0].action == ""
        win.user(p.Closed("escape"))
        await asyncio.wait_for(task, 5)


@pytest.mark.parametrize("instruction,route,want", [
    ("", "code", "answer"), ("Summarise this concisely:", "quick", "summarise"),
    ("Explain this code and point out any bugs:", "code", "explain"),
    ("Work through this step by step:", "reasoning", "answer"),
    ("Describe this image:", "vision", "explain"),
])
def test_the_action_a_desktop_instruction_amounts_to(instruction: str, route: str,
                                                     want: str) -> None:
    from labrouter.core.classify import Classification
    from labrouter.desktop.answer.actions import action_of

    assert action_of(instruction, Classification(route, {}, 1.0, ())) == want
