"""The desktop app's behaviour with fake parts: what a press does, the busy policy,
notifications, recent answers, copy_answer, the menu actions. No display needed.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from labrouter.app.desktop.app import DesktopApp
from labrouter.app.desktop.history import RecentStore
from labrouter.app.desktop.parts import DesktopParts
from labrouter.app.settings import Context, load_context
from labrouter.ask import AskRequest, AskResult, Done, Started, Text
from labrouter.core.classify import Classifier
from labrouter.core.config import DesktopConfig
from labrouter.core.errors import AllFailed, NoCandidate
from labrouter.core.peers import Peer, ServerState
from labrouter.desktop import tray
from labrouter.desktop.clipboard import MemoryClipboard
from labrouter.desktop.hotkey import NullHotkey
from labrouter.desktop.keyboard import NullKeyboard
from labrouter.desktop.notify import NotificationChain

# A selection of plain prose: the classifier calls it quick, so the press summarises it.
PROSE = "The meeting moved to Thursday because the room was booked."
LONG = "This answer is long. " * 30  # > 200 characters: does not fit a notification


class FakeDaemon:
    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.control: Any = None
        self.peers = [Peer(node_id="me", name="mac", is_self=True,
                           servers=(ServerState(id="ollama", url="http://127.0.0.1:1"),))]
        self.callbacks: list[Callable[[], Any]] = []
        self.pauses: list[tuple[str, float | None]] = []

    def snapshot(self) -> list[Peer]:
        return list(self.peers)

    def service_states(self) -> list[Any]:
        return []

    def pause(self, reason: str, until: float | None) -> None:
        self.pauses.append((reason, until))
        self.peers = [dataclasses.replace(self.peers[0], paused=True, pause_reason=reason,
                                          paused_until=until)]
        for cb in self.callbacks:
            cb()

    async def resume(self) -> None:  # async on purpose: both kinds are accepted
        self.peers = [dataclasses.replace(self.peers[0], paused=False)]

    def on_change(self, cb: Callable[[], Any]) -> None:
        self.callbacks.append(cb)


@dataclasses.dataclass
class Cand:
    model: str
    route: str
    peer: Peer


class FakeAsker:
    """Streams Started then Done after ``gate`` is set (or at once); records the requests;
    classifies with the real classifier."""

    def __init__(self, answer: str = "42.", error: Exception | None = None) -> None:
        self.answer = answer
        self.error = error
        self.requests: list[AskRequest] = []
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()
        self.closed = 0  # streams closed before their end (cancelled)
        self.finish_reason = "stop"
        self.classifier = Classifier({})

    def classify(self, req: AskRequest) -> Any:
        return self.classifier.classify(req.prompt, image=req.image is not None)

    async def stream(self, req: AskRequest) -> AsyncIterator[Any]:
        self.requests.append(req)
        if self.error is not None:
            raise self.error
        done = False
        try:
            yield Started(Cand("qwen3:4b", "quick", Peer(node_id="g", name="gpu-box")),
                          self.classify(req), "quick")
            self.started.set()
            if self.gate is not None:
                await self.gate.wait()
            yield Text(self.answer)
            done = True
            yield Done(AskResult(answer=self.answer, route="quick", node="gpu-box",
                                 server="ollama", model="qwen3:4b",
                                 finish_reason=self.finish_reason))
        finally:
            if not done:
                self.closed += 1


@dataclasses.dataclass
class RecordingNotifier:
    """A notification backend that keeps what it was asked to show."""

    name: str = "recorder"
    sent: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def problem(self) -> str | None:
        return None

    shown: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    actions: dict[int, Callable[[str], None]] = dataclasses.field(default_factory=dict)

    def send(self, title: str, body: str) -> None:
        self.show(title, body)

    def show(self, title: str, body: str, replaces: int = 0,
             actions: Any = (), on_action: Any = None, timeout_ms: Any = None) -> int:
        """As the freedesktop backend: an id per notification, replaces kept."""
        self.sent.append((title, body))
        nid = replaces or len(self.shown) + 1
        self.shown.append({"title": title, "body": body, "id": nid, "replaces": replaces,
                           "actions": tuple(actions)})
        if on_action is not None:
            self.actions[nid] = on_action
        return nid


class App:
    def __init__(self, ctx: Context, selected: str = PROSE,
                 clipboard: str | None = "user clipboard", answer: str = "42.",
                 copy_answer: str = "when-shortened", busy: str = "queue",
                 error: Exception | None = None, store: RecentStore | None = None) -> None:
        cfg = dataclasses.replace(ctx.config, desktop=DesktopConfig(copy_answer=copy_answer,
                                                                    busy=busy))
        self.ctx = dataclasses.replace(ctx, config=cfg)
        self.cb = MemoryClipboard(text=clipboard, primary=selected, supports_primary=True)
        self.log = RecordingNotifier()
        self.tray = tray.NullTray()
        self.hotkey = NullHotkey()
        self.parts = DesktopParts(self.tray, self.hotkey, self.cb, NullKeyboard(),
                                  NotificationChain([self.log], env={}))
        self.daemon = FakeDaemon()
        self.asker = FakeAsker(answer, error)
        self.opened: list[Path] = []
        self.now = 100.0
        self.app = DesktopApp(self.ctx, self.daemon, self.asker, self.parts,
                              opener=self.opened.append, wall=lambda: 1000.0,
                              clock=lambda: self.now, store=store)

    async def start(self) -> None:
        self.daemon.loop = asyncio.get_running_loop()
        await self.app.start_on_loop()

    async def press_and_wait(self) -> None:
        await self.app.handle_press()
        await self.wait()

    async def wait(self) -> None:
        if self.app.current is not None and self.app.current.task is not None:
            await asyncio.wait_for(self.app.current.task, 5)

    @property
    def sent(self) -> list[tuple[str, str]]:
        return self.log.sent


@pytest.fixture
def ctx() -> Context:
    return load_context(None)


async def test_a_press_asks_and_shows_asking_then_the_answer(ctx: Context) -> None:
    a = App(ctx)
    await a.start()
    await a.press_and_wait()
    (req,) = a.asker.requests
    assert (req.prompt, req.source, req.image) == (PROSE, "hotkey", None)
    # prose: summarised, bounded by the classified route's desktop_max_tokens
    assert req.instruction == "Summarise this concisely:" and not req.bare
    assert req.options.max_tokens == ctx.config.route("quick").desktop_max_tokens == 1024
    assert a.sent == [("labrouter", "Asking qwen3:4b on gpu-box (quick)…"),
                      ("qwen3:4b on gpu-box (quick)", "42.")]
    # the answer replaced the "Asking..." bubble and offers Copy
    asking, answer = a.log.shown
    assert answer["replaces"] == asking["id"] and answer["actions"] == (("copy", "Copy"),)
    assert a.cb.text == "user clipboard" and a.cb.writes == []  # it fit: untouched
    assert a.app.recent[0].answer == "42."
    assert tray.find_item(a.tray.menu, "Recent answers (click").submenu


@pytest.mark.parametrize("mode,answer,copied", [
    ("when-shortened", "short", False),
    ("when-shortened", LONG, True),
    ("always", "short", True),
    ("never", LONG, False),
])
async def test_copy_answer_setting(ctx: Context, mode: str, answer: str, copied: bool) -> None:
    a = App(ctx, answer=answer, copy_answer=mode)
    await a.start()
    await a.press_and_wait()
    title, body = a.sent[-1]
    assert (a.cb.text == answer) is copied
    if not copied:
        assert a.cb.text == "user clipboard"
    if answer == LONG:
        assert len(body) <= 200
        assert body.endswith("(full answer copied to the clipboard)" if copied else
                             "(full answer: tray > Recent answers)")
    else:
        assert body == answer


async def test_nothing_selected_notifies_and_asks_nothing(ctx: Context) -> None:
    a = App(ctx, selected="")
    await a.start()
    await a.press_and_wait()
    assert a.asker.requests == []
    assert a.sent[-1][0] == "Nothing selected"
    assert a.cb.text == "user clipboard"


async def test_an_image_on_the_clipboard_goes_with_the_request(ctx: Context) -> None:
    a = App(ctx, selected="what is in this picture?")
    a.cb.image = b"\x89PNG"
    await a.start()
    await a.press_and_wait()
    assert a.asker.requests[0].image == b"\x89PNG"


@pytest.mark.parametrize("error,expect", [
    (NoCandidate("no live server has a model for this request", hint="Run doctor."),
     "No machine with a model for this is up right now. Start Ollama (or your model "
     "server) on one of your machines, then try again."),
    (AllFailed("no candidate could answer (2 tried)",
               [("smollm2 on desk", "smollm2 on desk: cannot reach llama: All connection "
                 "attempts failed"),
                ("qwen3:4b on gpu", "qwen3:4b on gpu: timed out after 60 s")]),
     "No model could answer.\n"
     "smollm2 on desk could not be reached (is its model server running?)\n"
     "qwen3:4b on gpu took too long to answer\n"
     "Open the tray menu to see which machines are up."),
])
async def test_a_failure_reads_plainly_and_names_each_machine_once(
        ctx: Context, error: Exception, expect: str) -> None:
    a = App(ctx, error=error)
    await a.start()
    await a.press_and_wait()
    title, body = a.sent[-1]
    assert (title, body) == ("labrouter could not answer", expect)


async def test_busy_queue_asks_the_second_question_after_the_first(ctx: Context) -> None:
    a = App(ctx)
    await a.start()
    a.asker.gate = asyncio.Event()
    await a.app.handle_press()
    await asyncio.wait_for(a.asker.started.wait(), 5)
    a.cb.primary = "second question"
    await a.app.handle_press()
    assert a.sent[-1][0] == "Queued"
    assert len(a.asker.requests) == 1
    a.asker.gate.set()
    assert a.app.current is not None
    await a.wait()
    assert [r.prompt for r in a.asker.requests] == [PROSE, "second question"]
    assert [t for t, _ in a.sent].count("qwen3:4b on gpu-box (quick)") == 2


async def test_busy_queue_is_bounded(ctx: Context) -> None:
    a = App(ctx)
    await a.start()
    a.asker.gate = asyncio.Event()
    await a.app.handle_press()
    await asyncio.wait_for(a.asker.started.wait(), 5)
    for i in range(4):
        a.cb.primary = f"question {i}"
        await a.app.handle_press()
    assert len(a.app.pending) == 3 and a.sent[-1][0] == "Busy"
    a.asker.gate.set()
    assert a.app.current is not None
    await a.wait()
    assert len(a.asker.requests) == 4


async def test_busy_cancel_drops_the_running_request(ctx: Context) -> None:
    a = App(ctx, busy="cancel")
    await a.start()
    a.asker.gate = asyncio.Event()
    await a.app.handle_press()
    await asyncio.wait_for(a.asker.started.wait(), 5)
    first = a.app.current
    a.cb.primary = "the new question"
    a.asker.started.clear()
    await a.app.handle_press()
    assert first is not None and first is not a.app.current
    # the cancelled question ends once its "Cancelled" notification (a worker thread) is
    # out: wait for that, not for a fixed number of loop turns
    for _ in range(500):
        if not first.active:
            break
        await asyncio.sleep(0.01)
    assert not first.active
    assert ("Cancelled", "The question was cancelled.") in a.sent
    assert a.asker.closed == 1  # the stream was closed: the server stops generating
    a.asker.gate.set()
    assert a.app.current is not None
    await a.wait()
    answers = [t for t, _ in a.sent if t.startswith("qwen3:4b")]
    assert answers == ["qwen3:4b on gpu-box (quick)"]  # only the new one was answered


async def test_a_press_while_capturing_is_ignored(ctx: Context) -> None:
    a = App(ctx)
    await a.start()
    a.app.capturing = True
    await a.app.handle_press()
    assert a.asker.requests == [] and a.app.events[-1] == "press ignored: still capturing"


async def test_menu_pause_resume_and_rebuild_on_change(ctx: Context) -> None:
    a = App(ctx)
    await a.start()
    assert tray.find_item(a.tray.menu, "Pause this machine")
    updates = a.tray.updates
    a.app.menu_pause(3600.0)  # as the tray thread would: hands it to the loop
    for _ in range(50):
        await asyncio.sleep(0.01)
        if a.daemon.pauses:
            break
    assert a.daemon.pauses == [("rented out", 4600.0)]
    assert a.tray.state == "paused" and a.tray.updates > updates
    assert tray.find_item(a.tray.menu, "Resume this machine")
    await a.app.resume()
    assert a.tray.state == "ok"


async def test_menu_copy_recent_answer(ctx: Context) -> None:
    a = App(ctx, answer="the full answer")
    await a.start()
    await a.press_and_wait()
    item = tray.find_item(a.tray.menu, "Recent answers").submenu[0]
    assert item.action is not None
    item.action()
    for _ in range(50):
        await asyncio.sleep(0.01)
        if a.cb.text == "the full answer":
            break
    assert a.cb.text == "the full answer"


async def test_menu_open_config_and_usage(ctx: Context,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from labrouter.app import usagepage

    a = App(ctx)
    await a.start()
    a.app.menu_open_config()
    assert a.opened == [ctx.paths.config_file.parent]  # no file yet: its folder
    # the daemon's front door answers: the tray opens its live usage page
    monkeypatch.setattr(usagepage, "page_url",
                        lambda config, range_key="7d": f"http://127.0.0.1:1/usage?range={range_key}")
    await a.app._open_usage()
    assert a.opened[-1] == "http://127.0.0.1:1/usage?range=7d"
    # no front door (the API is off): a snapshot of the page, a private file
    monkeypatch.setattr(usagepage, "page_url", lambda config, range_key="7d": None)
    await a.app._open_usage()
    opened = str(a.opened[-1])
    assert opened.startswith("file://") and opened.endswith("/usage.html")
    assert "<title>labrouter usage" in (ctx.paths.data_dir / "usage.html").read_text()


class FakeLogin:
    available = True

    def __init__(self) -> None:
        self.on = False

    def enabled(self) -> bool:
        return self.on

    def set(self, on: bool) -> list[str]:
        self.on = on
        return [f"start at login {'on' if on else 'off'}"]


async def test_start_at_login_toggle(ctx: Context) -> None:
    a = App(ctx)
    login = FakeLogin()
    a.app.login = login  # type: ignore[assignment]
    await a.start()
    assert tray.find_item(a.tray.menu, "Start at login").checked is False
    await a.app.toggle_autostart()
    assert login.on and tray.find_item(a.tray.menu, "Start at login").checked is True
    assert a.sent[-1] == ("Start at login", "start at login on")


def test_the_app_runs_and_quits_with_the_null_tray(ctx: Context) -> None:
    """The lifecycle on real threads: loop in a worker, tray on this thread, Quit."""
    a = App(ctx)
    loop = asyncio.new_event_loop()
    import threading

    t = threading.Thread(target=loop.run_forever, daemon=True)
    t.start()
    a.daemon.loop = loop
    stopped: list[int] = []
    a.app.stop_daemon = lambda: stopped.append(1)

    def quit_soon() -> None:
        a.hotkey.press()  # the hotkey thread hands the press to the loop
        for _ in range(200):
            if any(t.startswith("qwen3") for t, _ in a.sent):
                break
            threading.Event().wait(0.01)
        item = tray.find_item(a.tray.menu, "Quit labrouter")
        assert item.action is not None
        item.action()

    orig = a.hotkey.start

    def start(cb: Callable[[], None]) -> None:
        orig(cb)
        threading.Thread(target=quit_soon, daemon=True).start()

    a.hotkey.start = start  # type: ignore[method-assign]
    assert a.app.run() == 0
    loop.call_soon_threadsafe(loop.stop)
    t.join(5)
    assert stopped == [1] and a.hotkey._callback is None
    assert any(t.startswith("qwen3") for t, _ in a.sent)


class FakeControl:
    def __init__(self) -> None:
        self.handlers: dict[str, Callable[[dict[str, Any]], Any]] = {}

    def register(self, cmd: str, handler: Callable[[dict[str, Any]], Any]) -> None:
        self.handlers[cmd] = handler


async def test_control_ask_selection_for_a_desktop_shortcut(ctx: Context) -> None:
    """`labrouter ask --selection` bound to a Wayland shortcut reaches the running app."""
    a = App(ctx)
    control = FakeControl()
    a.daemon.control = control
    await a.start()
    handler = control.handlers["ask-selection"]
    assert await handler({"cmd": "ask-selection", "text": "from wl-paste"}) == {
        "outcome": "asking"}
    assert a.app.current is not None
    await a.wait()
    assert a.asker.requests[-1].prompt == "from wl-paste"
    assert a.asker.requests[-1].source == "selection"
    assert a.sent[-1] == ("qwen3:4b on gpu-box (quick)", "42.")
    assert await handler({"text": "  "}) == {"outcome": "nothing-selected"}
    assert await handler({}) == {"outcome": "pressed"}  # captured here, as the hotkey
    await a.wait()
    assert a.asker.requests[-1].prompt == PROSE


async def test_a_capture_that_fails_says_so_and_the_next_press_works(ctx: Context) -> None:
    a = App(ctx)
    await a.start()

    def broken() -> None:
        raise TimeoutError("xclip did not answer")

    a.app.capture.capture = broken  # type: ignore[method-assign]
    await a.press_and_wait()
    assert a.sent and a.sent[-1][0] == "Could not read the selection"
    assert "labrouter doctor" in a.sent[-1][1]
    assert not a.app.capturing and a.asker.requests == []


async def test_an_unexpected_error_is_notified_and_the_queue_goes_on(ctx: Context) -> None:
    a = App(ctx)
    await a.start()
    calls = 0
    real = a.asker.stream

    async def flaky(req: AskRequest) -> AsyncIterator[Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KeyError("model")
        async for ev in real(req):
            yield ev

    a.asker.stream = flaky  # type: ignore[method-assign]
    await a.app.handle_press()
    a.cb.primary = "second question"
    await a.app.handle_press()  # queued behind the first
    await a.wait()
    assert ("labrouter could not answer",
            "Something went wrong inside labrouter; the log has the details.") in a.sent
    assert a.app.busy_text == ""
    assert [r.prompt for r in a.asker.requests] == ["second question"]


async def test_an_answer_is_shown_even_when_copying_it_fails(ctx: Context) -> None:
    a = App(ctx, answer=LONG)
    await a.start()

    def broken(text: str) -> None:
        raise TimeoutError("xclip hung")

    a.cb.write_text = broken  # type: ignore[method-assign]
    await a.press_and_wait()
    title, body = a.sent[-1]
    assert title == "qwen3:4b on gpu-box (quick)"
    assert "Recent answers" in body and "copied" not in body
    assert a.app.recent[0].answer == LONG


# ------------------------------------------------------------------ cancel and bounds


async def test_a_press_while_busy_offers_to_cancel_and_a_second_press_does(
        ctx: Context) -> None:
    a = App(ctx, busy="ask")
    await a.start()
    a.asker.gate = asyncio.Event()
    await a.app.handle_press()
    await asyncio.wait_for(a.asker.started.wait(), 5)
    first = a.app.current
    a.now += 12
    a.cb.primary = "a newer question"
    await a.app.handle_press()
    title, body = a.sent[-1]
    assert title == "Still answering your last question"
    assert "qwen3:4b on gpu-box (quick) for 12 s" in body and "Ctrl+Alt+Space again" in body
    assert a.app.current is first and len(a.asker.requests) == 1  # nothing queued
    a.now += 2  # within the window: the second press cancels and asks
    await a.app.handle_press()
    assert a.app.current is not first
    a.asker.gate.set()
    await a.wait()
    assert [r.prompt for r in a.asker.requests] == [PROSE, "a newer question"]
    assert a.asker.closed == 1


async def test_the_tray_shows_the_running_question_with_its_time_and_cancels_it(
        ctx: Context) -> None:
    a = App(ctx)
    await a.start()
    a.asker.gate = asyncio.Event()
    await a.app.handle_press()
    await asyncio.wait_for(a.asker.started.wait(), 5)
    a.now += 75
    a.app.refresh()
    busy = tray.find_item(a.tray.menu, "Asking qwen3:4b on gpu-box (quick)…")
    assert busy.text.endswith("1 min 15 s") and not busy.enabled
    assert a.tray.title == "labrouter: asking qwen3:4b on gpu-box (quick)… 1 min 15 s"
    cancel = tray.find_item(a.tray.menu, "Cancel this question")
    assert cancel.action is not None
    cancel.action()  # the tray's thread: handed to the loop
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(a.app.current.task, 5)  # type: ignore[union-attr]
    assert a.asker.closed == 1 and a.sent[-1] == ("Cancelled", "The question was cancelled.")
    a.app.refresh()
    with pytest.raises(KeyError):
        tray.find_item(a.tray.menu, "Cancel this question")
    assert a.tray.title.startswith("labrouter: all up") or "machines" in a.tray.title


async def test_an_answer_cut_by_the_length_limit_says_so(ctx: Context) -> None:
    a = App(ctx, answer="A long story that")
    a.asker.finish_reason = "length"
    await a.start()
    await a.press_and_wait()
    title, body = a.sent[-1]
    assert body == ("A long story that\n(cut short: the answer reached this route's "
                    "length limit)")


async def test_an_older_answer_never_touches_the_clipboard(ctx: Context) -> None:
    """A queued or late answer arrives after the user asked something newer: shown and
    kept in Recent answers, but the clipboard stays the user's."""
    a = App(ctx, answer=LONG, copy_answer="always")
    await a.start()
    running = a.app.current
    from labrouter.ask import AskResult as R

    a.app.seq = 5  # the user has asked newer questions since
    result = R(answer=LONG, route="quick", node="gpu-box", server="ollama", model="qwen3:4b")
    await a.app.deliver("old question", result, newest=False)
    assert a.cb.writes == [] and a.cb.text == "user clipboard"
    assert a.app.recent[0].question == "old question"
    assert running is None
    await a.app.deliver("new question", result, newest=True)
    assert a.cb.text == LONG


# ------------------------------------------------------------------ the right question


@pytest.mark.parametrize("text,instruction", [
    ("What is the capital of France?", ""),
    ("explain how TCP slow start works", ""),
    ("def add(a, b):\n    return a - b\n", "Explain this code and point out any bugs:"),
    ("The meeting moved to Thursday because the room was booked. Bring the budget "
     "figures and the draft of the plan.", "Summarise this concisely:"),
])
async def test_the_instruction_fits_what_the_selection_is(ctx: Context, text: str,
                                                          instruction: str) -> None:
    a = App(ctx, selected=text)
    await a.start()
    await a.press_and_wait()
    assert a.asker.requests[-1].instruction == instruction


async def test_the_same_primary_again_is_not_asked_silently(ctx: Context) -> None:
    a = App(ctx)
    await a.start()
    await a.press_and_wait()
    await a.press_and_wait()  # nothing new highlighted: PRIMARY still holds the old text
    assert len(a.asker.requests) == 1
    assert a.sent[-1][0] == "Ask the same selection again?"
    a.now += 2
    await a.press_and_wait()  # pressed again: the user means it
    assert len(a.asker.requests) == 2
    a.cb.primary = "something new"
    a.now += 30
    await a.press_and_wait()
    assert [r.prompt for r in a.asker.requests][-1] == "something new"


async def test_a_clipboard_image_goes_only_when_new_since_the_last_press(
        ctx: Context) -> None:
    a = App(ctx, selected="what is in this picture?")
    a.cb.image = b"\x89PNG screenshot"
    await a.start()
    await a.press_and_wait()
    assert a.asker.requests[-1].image == b"\x89PNG screenshot"
    a.cb.primary = "an unrelated question?"
    await a.press_and_wait()
    assert a.asker.requests[-1].image is None  # the same old screenshot: not attached
    a.cb.primary = None
    await a.press_and_wait()
    assert a.sent[-1][0] == "Nothing selected" and "asked about already" in a.sent[-1][1]
    a.cb.image = b"\x89PNG a new screenshot"
    await a.press_and_wait()
    assert a.asker.requests[-1].image == b"\x89PNG a new screenshot"


# ------------------------------------------------------------------ recent answers


async def test_recent_answers_survive_a_restart_readable_by_the_user_only(
        ctx: Context, tmp_path: Path) -> None:
    import stat

    a = App(ctx, answer="kept", store=RecentStore(tmp_path, 3))
    await a.start()
    await a.press_and_wait()
    for _ in range(50):
        if (tmp_path / "recent-answers.json").exists():
            break
        await asyncio.sleep(0.01)
    path = tmp_path / "recent-answers.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    b = App(ctx, store=RecentStore(tmp_path, 3))
    await b.start()
    assert [r.answer for r in b.app.recent] == ["kept"]
    assert tray.find_item(b.tray.menu, "Recent answers (click").submenu
    RecentStore(tmp_path, 0).load()  # history = 0: nothing kept, the file removed
    assert not path.exists()


def test_a_damaged_history_is_set_aside(tmp_path: Path) -> None:
    (tmp_path / "recent-answers.json").write_text("{not json")
    assert RecentStore(tmp_path, 5).load() == []
    assert (tmp_path / "recent-answers.damaged").exists()


async def test_the_copy_action_of_a_notification_copies_the_answer(ctx: Context) -> None:
    a = App(ctx, answer="copy me")
    await a.start()
    await a.press_and_wait()
    nid = a.log.shown[-1]["id"]
    a.log.actions[nid]("copy")  # as the notification server's thread does
    for _ in range(50):
        if a.cb.text == "copy me":
            break
        await asyncio.sleep(0.01)
    assert a.cb.text == "copy me"


async def test_the_same_text_selected_again_is_asked_at_once(ctx: Context) -> None:
    """X11 stamps each selection (owner, time): the same words highlighted anew are a new
    selection and are asked without a second press."""
    a = App(ctx)
    await a.start()
    await a.press_and_wait()
    a.cb.primary_time += 1  # the user selected the same text again
    a.now += 30
    await a.press_and_wait()
    assert len(a.asker.requests) == 2
