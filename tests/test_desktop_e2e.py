"""The real desktop end to end under Xvfb: real X server, D-Bus session, notification
server (dunst, watched by dbus-monitor), tray (trayer), a Tk window with selected text,
the real daemon with the desktop (pystray, pynput, xclip, notify-send) in a subprocess,
and a fake Ollama on 127.0.0.1. The hotkey is pressed with xdotool like a person.

Skipped with the reason when the tools are missing (.ci/desktop-setup.sh installs them).
Each test is bounded (well under 60 s); every process is ended by its own id.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.desktop_env import DesktopSession, skip_reason, wait_for
from tests.fakes.ollama_server import FakeOllama

pytestmark = [pytest.mark.desktop,
              pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")]

ROOT = Path(__file__).resolve().parents[1]
ANSWER = "The selected words say hello to the world."
CHORD = "ctrl+alt+space"  # the Linux default, <ctrl>+<alt>+<space>


@pytest.fixture(scope="module")
def session() -> Iterator[DesktopSession]:
    s = DesktopSession(tray=True).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOllama]:
    server = FakeOllama(models=["qwen3:4b"], answer=ANSWER)
    _url, stop = server.start_in_thread()
    try:
        yield server
    finally:
        stop()


def app_command() -> list[str]:
    """`labrouter run`: the real daemon with the desktop on top."""
    return [sys.executable, "-m", "labrouter", "run"]


class RunningApp:
    def __init__(self, session: DesktopSession, fake: FakeOllama, tmp: Path,
                 extra_env: dict[str, str] | None = None,
                 answer: str = "notification") -> None:
        home = tmp / "home"
        (home / "config").mkdir(parents=True)
        # loopback only: no broadcast, no LAN address, ports of our own
        (home / "config" / "config.toml").write_text(
            f'[node]\nname = "testbox"\n'
            f'[cluster]\nbind = "127.0.0.1"\nbroadcast = false\nport = {_free_udp()}\n'
            f'[api]\nenabled = false\n[relay]\nenabled = false\n'
            f'[desktop]\nanswer = "{answer}"\n'
            f'[[servers]]\nurl = "{fake.url}"\nname = "fake"\n')
        env = dict(session.env, LABROUTER_HOME=str(home), NO_PROXY="127.0.0.1,localhost",
                   PYTHONPATH=str(ROOT / "src"), LABROUTER_LOG_LEVEL="DEBUG",
                   **(extra_env or {}))
        self.session = session
        self.name = f"app-{tmp.name}"
        self.log = session.run_dir / f"{self.name}.log"
        self.proc = session.spawn(self.name, app_command(), env=env, cwd=str(ROOT))
        try:
            wait_for(lambda: "desktop ready" in self.text() or self.proc.poll() is not None,
                     30, "the desktop to be ready")
        except TimeoutError:
            self.stop()
            raise AssertionError("the desktop did not start:\n" + self.tail()) from None
        assert self.proc.poll() is None, self.text()

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, n: int = 40) -> str:
        """The end of the app's log without the HTTP client's chatter."""
        lines = [ln for ln in self.text().splitlines()
                 if " httpx" not in ln and " httpcore" not in ln]
        return "\n".join(lines[-n:])

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
                return -9
        return self.proc.returncode


def _free_udp() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tray_pixels(session: DesktopSession, tmp: Path) -> int:
    """Non-background pixels in trayer's area (top right, 200x32): the icon is drawn."""
    from PIL import Image

    shot = tmp / "tray.png"
    session.screenshot(shot, crop=(1080, 0, 1280, 32))
    with Image.open(shot) as im:
        colours = im.convert("RGB").getcolors(1 << 16) or []
    background = max(colours)[1]
    return sum(n for n, c in colours if c != background)


@pytest.mark.parametrize("path", ["primary", "copy"])
def test_hotkey_on_selected_text_answers_in_a_notification(
        session: DesktopSession, fake: FakeOllama, tmp_path: Path, path: str) -> None:
    text = f"hello selected world via {path}"
    win = session.window_with_selection(text)
    session.set_clipboard("WHAT THE USER HAD COPIED")
    extra = {"LABROUTER_SELECTION_PRIMARY": "0"} if path == "copy" else {}
    app = RunningApp(session, fake, tmp_path, extra)
    before = len(session.notify_calls())
    chats = fake.count("/api/chat")
    try:
        wait_for(lambda: _tray_pixels(session, tmp_path) > 20, 10, "the tray icon drawn")
        session.press(CHORD)
        got = session.wait_notification(lambda n: ANSWER in n.body, 20, since=before)
        assert got.summary == "qwen3:4b on testbox (quick)"
        calls = session.notify_calls()[before:]
        assert [c.body for c in calls][:2] == ["Asking qwen3:4b on testbox (quick)…", ANSWER]
        assert fake.count("/api/chat") == chats + 1
        sent = fake.requests_to("/api/chat")[-1].body["messages"][-1]["content"]
        assert sent.endswith(text)
        assert f"hotkey: captured {path} {len(text)} chars" in app.text()
        # the answer fit the notification: the clipboard is exactly what it was
        assert session.get_clipboard() == "WHAT THE USER HAD COPIED"
        assert ("qwen3:4b on testbox (quick)", ANSWER) in session.dunst_history()
    finally:
        rc = app.stop()
        win.terminate()
        win.wait(5)
    assert rc == 0, app.tail()


def test_the_answer_replaces_asking_and_markup_reaches_the_screen_as_written(
        session: DesktopSession, tmp_path: Path) -> None:
    """dunst interprets markup (its default): `List<int>` must survive, and the answer
    takes the place of the "Asking..." bubble instead of standing beside it. dunst keeps
    the body as it was sent: escaped, which it draws as the text itself (seen on a
    screenshot)."""
    from xml.sax.saxutils import escape

    answer = "Use List<int> xs = new List<int>(); then <br> is text & so is <b>this</b>."
    server = FakeOllama(models=["qwen3:4b"], answer=answer)
    _url, stop = server.start_in_thread()
    session.set_clipboard("What does List<int> mean in C#?", "primary")
    app = RunningApp(session, server, tmp_path)
    try:
        session.dunst_history()  # empty it
        session.press(CHORD)
        wait_for(lambda: any(escape(answer) == b for _s, b in session.dunst_history()), 40,
                 "the answer, escaped, in dunst's history")
        history = session.dunst_history()
        assert not any(b.startswith("Asking") for _s, b in history), history
    finally:
        rc = app.stop()
        stop()
        session.set_clipboard("", "primary")
    assert rc == 0, app.tail()


def test_a_press_opens_the_answer_window_when_answer_is_window(
        session: DesktopSession, fake: FakeOllama, tmp_path: Path) -> None:
    """The wiring: with ``[desktop] answer = "window"`` the hotkey's question is answered
    in the answer window (desktop/answer), not in notifications."""
    session.set_clipboard("What is the capital of France?", "primary")
    app = RunningApp(session, fake, tmp_path, answer="window")
    before = len(session.notify_calls())
    try:
        session.press(CHORD)
        wait_for(lambda: "answer window shown" in app.text() or
                 "answering in notifications" in app.text(), 20, "the answer to be shown")
        assert "answer window shown" in app.text(), app.tail()
        assert not [n for n in session.notify_calls()[before:] if ANSWER in n.body]
    finally:
        rc = app.stop()
        session.set_clipboard("", "primary")
    assert rc == 0, app.tail()


def test_nothing_selected_says_so_and_keeps_the_clipboard(
        session: DesktopSession, fake: FakeOllama, tmp_path: Path) -> None:
    session.set_clipboard("KEEP ME")
    # PRIMARY: the Tk windows of the other tests are gone, so it has no owner
    assert not session.get_clipboard("primary")
    app = RunningApp(session, fake, tmp_path)
    chats = fake.count("/api/chat")
    before = len(session.notify_calls())
    try:
        session.press(CHORD)
        got = session.wait_notification(lambda n: n.summary == "Nothing selected", 20,
                                        since=before)
        assert "Ctrl+Alt+Space" in got.body
        assert fake.count("/api/chat") == chats
        assert session.get_clipboard() == "KEEP ME"
    finally:
        rc = app.stop()
    assert rc == 0, app.tail()


def test_long_answer_is_shortened_and_copied(session: DesktopSession, tmp_path: Path) -> None:
    long = "Long answer sentence number one. " * 20
    server = FakeOllama(models=["qwen3:4b"], answer=long)
    _url, stop = server.start_in_thread()
    win = session.window_with_selection("please explain this at length")
    session.set_clipboard("OLD")
    app = RunningApp(session, server, tmp_path)
    before = len(session.notify_calls())
    try:
        session.press(CHORD)
        got = session.wait_notification(
            lambda n: n.body.endswith("(full answer copied to the clipboard)"), 20, since=before)
        assert len(got.body) <= 200
        wait_for(lambda: session.get_clipboard() == long, 5, "the full answer on the clipboard")
    finally:
        rc = app.stop()
        win.terminate()
        win.wait(5)
        stop()
    assert rc == 0, app.tail()


def _click(session: DesktopSession, x: int, y: int, button: str = "1") -> None:
    session.xdotool("mousemove", str(x), str(y), "click", button)


def _item(menu: list[dict], prefix: str) -> dict:
    found = next((i for i in menu if i["text"].startswith(prefix)), None)
    assert found is not None, f"no {prefix!r} in {[i['text'] for i in menu]}"
    return found


def test_tray_menu_opens_from_a_click_and_pauses_this_machine(
        session: DesktopSession, fake: FakeOllama, tmp_path: Path) -> None:
    """A plain install (no PyGObject) under trayer: a click on the icon opens the menu,
    the machine's submenu shows its models, Pause > For 1 hour pauses it, the tooltip
    says so. Clicked with xdotool like a person; the menu is read from the screen's
    windows (each level says what it shows)."""
    gi = subprocess.run([sys.executable, "-c", "import gi"], capture_output=True)
    extra = {} if gi.returncode != 0 else {"LABROUTER_TRAY_BACKEND": "xembed"}
    app = RunningApp(session, fake, tmp_path, extra)
    try:
        assert "tray: xembed" in app.text(), app.tail()
        wait_for(lambda: session.tray_icon() is not None, 10, "the tray icon")
        icon = session.tray_icon()
        assert icon is not None
        wait_for(lambda: "all up" in (session.tray_icon() or {}).get("name", ""), 15,
                 "the tooltip to say the cluster is up")
        cx, cy = icon["x"] + icon["w"] // 2, icon["y"] + icon["h"] // 2
        _click(session, cx, cy)
        wait_for(lambda: len(session.open_menus()) == 1, 5, "the menu to open")
        (menu,) = session.open_menus()
        assert menu[0]["text"] == "labrouter: all up" and not menu[0]["enabled"]
        _item(menu, "Ask about selection (Ctrl+Alt+Space)")
        machine = _item(menu, "testbox (this machine): up")
        session.xdotool("mousemove", str(machine["x"] + 40), str(machine["y"] + 8))
        wait_for(lambda: len(session.open_menus()) == 2, 5, "the machine's submenu")
        sub = next(m for m in session.open_menus() if m[0]["text"].startswith("State:"))
        texts = [i["text"] for i in sub]
        assert "Loaded: qwen3:4b" in texts and "Models installed: qwen3:4b" in texts, texts
        session.screenshot(tmp_path / "menu.png")
        pause = _item(menu, "Pause this machine")
        session.xdotool("mousemove", str(pause["x"] + 40), str(pause["y"] + 8))
        wait_for(lambda: any(m[0]["text"] == "For 15 minutes" for m in session.open_menus()),
                 5, "the pause submenu")
        sub = next(m for m in session.open_menus() if m[0]["text"] == "For 15 minutes")
        hour = _item(sub, "For 1 hour")
        _click(session, hour["x"] + 30, hour["y"] + 8)
        wait_for(lambda: not session.open_menus(), 5, "the menu to close")
        wait_for(lambda: "paused" in (session.tray_icon() or {}).get("name", ""), 10,
                 "the tooltip to say paused")
        _click(session, cx, cy, "3")
        wait_for(lambda: len(session.open_menus()) == 1, 5, "the menu to open again")
        (menu,) = session.open_menus()
        _item(menu, "Resume this machine (paused until ")
        session.xdotool("key", "Escape")
        wait_for(lambda: not session.open_menus(), 5, "Esc to close the menu")
    finally:
        rc = app.stop()
    assert rc == 0, app.tail()


@pytest.mark.skipif(shutil.which("xterm") is None, reason="xterm is not installed")
def test_the_hotkey_never_types_into_the_focused_terminal(
        session: DesktopSession, fake: FakeOllama, tmp_path: Path) -> None:
    """20 presses of Ctrl+Alt+Space with xterm focused leave its input line empty: the key
    is grabbed, not listened for. The control presses first show that the same chord,
    not grabbed, does type into the terminal (so this test can fail)."""
    typed = tmp_path / "typed.bin"
    term = session.xterm_recording_input(typed)
    try:
        session.xdotool("type", "ab")
        wait_for(lambda: typed.read_bytes() == b"ab", 5, "the recorder to see typing")
        session.press(CHORD)
        wait_for(lambda: len(typed.read_bytes()) > 2, 5, "the ungrabbed chord to type")
        before = typed.read_bytes()
        session.set_clipboard("What is the capital of France?", "primary")
        app = RunningApp(session, fake, tmp_path)
        try:
            for _ in range(20):
                session.press(CHORD)
                time.sleep(0.35)  # presses closer than 0.3 s count as one
            wait_for(lambda: app.text().count("hotkey pressed (grabbed") >= 20, 10,
                     "the app to see 20 presses")
            time.sleep(0.5)
            assert typed.read_bytes() == before, typed.read_bytes()[len(before):]
        finally:
            rc = app.stop()
        assert rc == 0, app.tail()
    finally:
        term.terminate()
        term.wait(5)


def test_the_copy_path_gives_back_an_image_and_bytes_that_are_not_utf8(
        session: DesktopSession, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real xclip, nothing selected (Ctrl+C copies nothing): the previous clipboard comes
    back byte for byte, a screenshot included, and is never taken for the selection."""
    from labrouter.desktop.clipboard.xclip import XclipClipboard
    from labrouter.desktop.keyboard import NullKeyboard
    from labrouter.desktop.selection import SelectionCapture

    monkeypatch.setenv("DISPLAY", session.env["DISPLAY"])
    cb = XclipClipboard()
    cases = {"image/png": b"\x89PNG\r\n\x1a\n not really a png \xff\x00",
             "STRING": "café".encode("latin-1"), "UTF8_STRING": b"ab\xff\xfecd"}
    for target, data in cases.items():
        proc = subprocess.Popen(["xclip", "-selection", "clipboard", "-t", target, "-i"],
                                env=session.env, stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, start_new_session=True)
        proc.communicate(data, timeout=10)
        session._owners.append(proc.pid)
        wait_for(lambda t=target: f"\n{t}\n".encode() in subprocess.run(
            ["xclip", "-selection", "clipboard", "-o", "-t", "TARGETS"], env=session.env,
            capture_output=True).stdout + b"\n", 5, "xclip to own the clipboard")
        cap = SelectionCapture(cb, NullKeyboard(), use_primary=False,
                               waits=(0.1, 0.2)).capture()
        assert cap.method == "none" and cap.restored, (target, cap)
        out = subprocess.run(["xclip", "-selection", "clipboard", "-o", "-t", target],
                             env=session.env, capture_output=True, timeout=10)
        assert out.stdout == data, target
