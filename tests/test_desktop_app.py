"""The desktop app's behaviour with fake parts: what a press does, the busy policy,
notifications, recent answers, copy_answer, the menu actions. No display needed.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from labrouter.app.desktop.app import DesktopApp
from labrouter.app.desktop.parts import DesktopParts
from labrouter.app.settings import Context, load_context
from labrouter.ask import AskRequest, AskResult
from labrouter.core.config import DesktopConfig
from labrouter.core.errors import AllFailed, NoCandidate
from labrouter.core.peers import Peer, ServerState
from labrouter.desktop import tray
from labrouter.desktop.clipboard import MemoryClipboard
from labrouter.desktop.hotkey import NullHotkey
from labrouter.desktop.keyboard import NullKeyboard
from labrouter.desktop.notify import NotificationChain

LONG = "This answer is long. " * 30  # > 200 characters: does not fit a notification


class FakeDaemon:
    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.peers = [Peer(node_id="me", name="mac", is_self=True,
                           servers=(ServerState(id="ollama", url="http://127.0.0.1:1"),))]
        self.callbacks: list[Callable[[], Any]] = []
        self.pauses: list[tuple[str, float | None]] = []

    def snapshot(self) -> list[Peer]:
        return list(self.peers)

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
    """Answers after ``gate`` is set (or at once); records the requests."""

    def __init__(self, answer: str = "42.", error: Exception | None = None) -> None:
        self.answer = answer
        self.error = error
        self.requests: list[AskRequest] = []
        self.gate: asyncio.Event | None = None
        self.started = asyncio.Event()

    async def ask(self, req: AskRequest, on_start: Callable[[Any], None] | None = None,
                  on_text: Callable[[str], None] | None = None) -> AskResult:
        self.requests.append(req)
        if self.error is not None:
            raise self.error
        if on_start:
            on_start(Cand("qwen3:4b", "quick", Peer(node_id="g", name="gpu-box")))
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        return AskResult(answer=self.answer, route="quick", node="gpu-box", server="ollama",
                         model="qwen3:4b")


@dataclasses.dataclass
class RecordingNotifier:
    """A notification backend that keeps what it was asked to show."""

    name: str = "recorder"
    sent: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def problem(self) -> str | None:
        return None

    def send(self, title: str, body: str) -> None:
        self.sent.append((title, body))


class App:
    def __init__(self, ctx: Context, selected: str = "some selected text",
                 clipboard: str | None = "user clipboard", answer: str = "42.",
                 copy_answer: str = "when-shortened", busy: str = "queue",
                 error: Exception | None = None) -> None:
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
        self.app = DesktopApp(self.ctx, self.daemon, self.asker.ask, self.parts,
                              opener=self.opened.append, wall=lambda: 1000.0)

    async def start(self) -> None:
        self.daemon.loop = asyncio.get_running_loop()
        await self.app.start_on_loop()

    async def press_and_wait(self) -> None:
        await self.app.handle_press()
        if self.app.current is not None:
            await self.app.current

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
    assert (req.prompt, req.source, req.bare, req.image) == ("some selected text", "hotkey",
                                                            True, None)
    assert a.sent == [("labrouter", "Asking qwen3:4b on gpu-box (quick)…"),
                      ("qwen3:4b on gpu-box (quick)", "42.")]
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


@pytest.mark.parametrize("error,words", [
    (NoCandidate("no live server has a model for this request", hint="Run doctor."),
     ["no live server", "Run doctor."]),
    (AllFailed("no candidate could answer (1 tried)",
               [("qwen3:4b on gpu", "connection refused")]),
     ["no candidate could answer", "Tried: qwen3:4b on gpu: connection refused"]),
])
async def test_a_failure_says_what_failed_and_what_was_tried(ctx: Context, error: Exception,
                                                             words: list[str]) -> None:
    a = App(ctx, error=error)
    await a.start()
    await a.press_and_wait()
    title, body = a.sent[-1]
    assert title == "labrouter could not answer"
    for w in words:
        assert w in body


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
    await asyncio.wait_for(a.app.current, 5)
    assert [r.prompt for r in a.asker.requests] == ["some selected text", "second question"]
    assert [t for t, _ in a.sent].count("qwen3:4b on gpu-box (quick)") == 2


async def test_busy_queue_is_bounded(ctx: Context) -> None:
    a = App(ctx)
    await a.start()
    a.asker.gate = asyncio.Event()
    await a.app.handle_press()
    await asyncio.wait_for(a.asker.started.wait(), 5)
    for _ in range(4):
        await a.app.handle_press()
    assert len(a.app.pending) == 3 and a.sent[-1][0] == "Busy"
    a.asker.gate.set()
    assert a.app.current is not None
    await asyncio.wait_for(a.app.current, 5)
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
    await asyncio.sleep(0)
    assert first.cancelled() or first.done()
    assert ("Cancelled", "The previous question was cancelled; asking the new one.") in a.sent
    a.asker.gate.set()
    assert a.app.current is not None
    await asyncio.wait_for(a.app.current, 5)
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


async def test_menu_open_config_and_usage(ctx: Context) -> None:
    a = App(ctx)
    await a.start()
    a.app.menu_open_config()
    assert a.opened == [ctx.paths.config_file.parent]  # no file yet: its folder
    await a.app._open_usage()
    assert a.opened[-1].name == "usage-summary.txt"
    assert "labrouter usage, last 7 days" in a.opened[-1].read_text()


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
    a.daemon.control = control  # type: ignore[attr-defined]
    await a.start()
    handler = control.handlers["ask-selection"]
    assert await handler({"cmd": "ask-selection", "text": "from wl-paste"}) == {
        "outcome": "asking"}
    assert a.app.current is not None
    await a.app.current
    assert a.asker.requests[-1].prompt == "from wl-paste"
    assert a.asker.requests[-1].source == "selection"
    assert a.sent[-1] == ("qwen3:4b on gpu-box (quick)", "42.")
    assert await handler({"text": "  "}) == {"outcome": "nothing-selected"}
    assert await handler({}) == {"outcome": "pressed"}  # captured here, as the hotkey
    await a.app.current
    assert a.asker.requests[-1].prompt == "some selected text"


async def test_a_capture_that_fails_says_so_and_the_next_press_works(ctx: Context) -> None:
    a = App(ctx)
    await a.start()

    def broken() -> None:
        raise TimeoutError("xclip did not answer")

    a.app.capture.capture = broken  # type: ignore[method-assign]
    await a.press_and_wait()
    assert a.sent and a.sent[-1][0] == "Could not read the selection"
    assert "xclip did not answer" in a.sent[-1][1]
    assert not a.app.capturing and a.asker.requests == []


async def test_an_unexpected_error_is_notified_and_the_queue_goes_on(ctx: Context) -> None:
    a = App(ctx)
    await a.start()
    calls = 0
    real = a.asker.ask

    async def flaky(req: AskRequest, on_start: Any = None, on_text: Any = None) -> AskResult:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise KeyError("model")
        return await real(req, on_start=on_start)

    a.app.ask = flaky
    await a.app.handle_press()
    a.cb.primary = "second question"
    await a.app.handle_press()  # queued behind the first
    assert a.app.current is not None
    await a.app.current
    assert ("labrouter could not answer", "KeyError: 'model'") in a.sent
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
