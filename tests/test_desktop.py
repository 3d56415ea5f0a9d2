"""The desktop adapters behind their small interfaces, with fakes: no display needed.

Backend choice, selection capture (clipboard never lost), notification chain and
previews, hotkey defaults and checks, the tray's pure view and menu.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from labrouter.core.peers import ModelInfo, NodeState, Peer, ServerState
from labrouter.desktop import backends as bk
from labrouter.desktop import clipboard, hotkey, keyboard, notify, selection, tray
from labrouter.desktop.clipboard import base as clip_base
from labrouter.desktop.clipboard import pyperclip as clip_pyperclip
from labrouter.desktop.clipboard import xclip as clip_xclip

# ------------------------------------------------------------------ backends


def _spec(name: str, reason: str | None, built: list[str] | None = None,
          fail: bool = False) -> bk.BackendSpec[str]:
    def factory() -> str:
        if fail:
            raise RuntimeError("boom")
        if built is not None:
            built.append(name)
        return name

    return bk.BackendSpec(name, lambda: reason, factory)


NULL = bk.BackendSpec("null", lambda: None, lambda: "null")


def test_choose_takes_the_first_available_and_keeps_the_reasons() -> None:
    built: list[str] = []
    c = bk.choose("tray", [_spec("a", "no display", built), _spec("b", None, built),
                           _spec("c", None, built)], NULL, env={})
    assert (c.backend, c.name) == ("b", "b")
    assert built == ["b"]  # later backends are not even built
    assert [(p.name, p.available, p.reason) for p in c.probes] == [
        ("a", False, "no display"), ("b", True, "")]
    assert c.describe() == "b; not used: a: no display"


def test_choose_falls_back_to_null_with_every_reason() -> None:
    c = bk.choose("hotkey", [_spec("a", "wayland"), _spec("b", "not installed")], NULL, env={})
    assert c.name == "null"
    assert [p.reason for p in c.unavailable] == ["wayland", "not installed"]


def test_a_backend_that_fails_to_build_is_passed_over() -> None:
    c = bk.choose("tray", [_spec("a", None, fail=True), _spec("b", None)], NULL, env={})
    assert c.name == "b"
    assert c.probes[0] == bk.Probe("a", False, "failed to start (see the log)")


def test_a_probe_that_raises_counts_as_unavailable() -> None:
    def bad() -> str | None:
        raise OSError("no X")

    c = bk.choose("tray", [bk.BackendSpec("a", bad, lambda: "a")], NULL, env={})
    assert c.name == "null"
    assert "OSError: no X" in c.probes[0].reason


@pytest.mark.parametrize("forced,expect,reason", [
    ("b", "b", ""),
    ("null", "null", ""),
    ("a", "null", "wayland"),  # forced but unavailable: null, never another real one
    ("zzz", "null", "unknown backend; known: a, b, null"),
])
def test_the_environment_forces_a_backend(forced: str, expect: str, reason: str) -> None:
    env = {"LABROUTER_TRAY_BACKEND": forced}
    c = bk.choose("tray", [_spec("a", "wayland"), _spec("b", None)], NULL, env=env)
    assert c.name == expect
    assert c.forced == forced
    if reason:
        assert c.probes[0].reason == reason
    assert "forced by LABROUTER_TRAY_BACKEND" in c.describe() or expect == "null"


@pytest.mark.parametrize("env,wayland,x11", [
    ({}, False, False),
    ({"DISPLAY": ":0"}, False, True),
    ({"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}, True, True),
    ({"XDG_SESSION_TYPE": "wayland"}, True, False),
])
def test_session_facts(env: dict[str, str], wayland: bool, x11: bool) -> None:
    assert bk.is_wayland(env) is wayland
    assert bk.has_x11(env) is x11


def test_a_dead_x_display_is_no_display() -> None:
    # DISPLAY left over from an ended session: it used to count as a desktop, and every
    # backend then failed to start with a traceback in the log
    why = bk.display_reason({"DISPLAY": ":9973"}, "linux")
    assert why is not None and "DISPLAY=:9973 cannot be reached" in why
    assert bk.x_display_problem("remote-host:0") is None  # never probed over the network


def test_display_reason() -> None:
    assert bk.display_reason({}, "linux") is not None
    assert bk.display_reason({"DISPLAY": ":1"}, "linux", reach=lambda d: None) is None
    assert bk.display_reason({}, "darwin") is None


# ------------------------------------------------------------------ selection


class SlowApp:
    """Plays the focused application: Ctrl+C puts its selection on the clipboard, after
    ``lag`` copy presses (an app slow to answer the first one)."""

    def __init__(self, cb: clipboard.MemoryClipboard, selected: str, lag: int = 0) -> None:
        self.cb = cb
        self.selected = selected
        self.lag = lag
        self.presses = 0

    def __call__(self) -> None:
        self.presses += 1
        if self.selected and self.presses > self.lag:
            self.cb.text = self.selected


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def _capture(cb: clipboard.MemoryClipboard, kb: keyboard.NullKeyboard,
             use_primary: bool = True) -> selection.SelectionCapture:
    clock = FakeClock()
    return selection.SelectionCapture(cb, kb, use_primary=use_primary, sleep=clock.sleep,
                                      clock=clock)


def test_primary_is_read_first_and_the_clipboard_is_not_touched() -> None:
    cb = clipboard.MemoryClipboard(text="user's clipboard", primary="selected words",
                                   supports_primary=True)
    kb = keyboard.NullKeyboard()
    cap = _capture(cb, kb).capture()
    assert (cap.text, cap.method) == ("selected words", "primary")
    assert cb.writes == [] and kb.copies == 0


def test_copy_path_restores_the_previous_clipboard() -> None:
    cb = clipboard.MemoryClipboard(text="user's clipboard")
    kb = keyboard.NullKeyboard()
    kb.on_copy = SlowApp(cb, "selected words")
    cap = _capture(cb, kb).capture()
    assert (cap.text, cap.method, cap.restored) == ("selected words", "copy", True)
    assert cb.text == "user's clipboard"
    assert kb.copies == 1


def test_an_empty_primary_falls_back_to_copy() -> None:
    cb = clipboard.MemoryClipboard(text="before", primary="  \n", supports_primary=True)
    kb = keyboard.NullKeyboard()
    kb.on_copy = SlowApp(cb, "from copy")
    assert _capture(cb, kb).capture().text == "from copy"
    assert cb.text == "before"


def test_a_slow_application_is_given_a_second_chance() -> None:
    cb = clipboard.MemoryClipboard(text="before")
    kb = keyboard.NullKeyboard()
    app = SlowApp(cb, "late words", lag=1)
    kb.on_copy = app
    cap = _capture(cb, kb).capture()
    assert cap.text == "late words" and app.presses == 2
    assert cb.text == "before"


@pytest.mark.parametrize("before", ["user's clipboard", None])
def test_nothing_selected_keeps_the_clipboard_and_returns_empty(before: str | None) -> None:
    cb = clipboard.MemoryClipboard(text=before)
    kb = keyboard.NullKeyboard()
    kb.on_copy = SlowApp(cb, "")
    cap = _capture(cb, kb).capture()
    assert cap.empty and cap.method == "none" and cap.text == ""
    assert kb.copies == 2  # tried, and retried with a longer wait
    assert (cb.text or None) == before
    assert not (cb.text or "").startswith("labrouter-capture-")  # the sentinel is gone


def test_the_clipboard_is_restored_even_when_the_keystroke_fails() -> None:
    cb = clipboard.MemoryClipboard(text="precious")
    kb = keyboard.NullKeyboard()

    def broken() -> None:
        raise RuntimeError("no keyboard")

    kb.on_copy = broken
    with pytest.raises(RuntimeError):
        _capture(cb, kb).capture()
    assert cb.text == "precious"


def test_an_image_on_the_clipboard_comes_with_the_selection() -> None:
    cb = clipboard.MemoryClipboard(text=None, primary="what is this?", image=b"\x89PNG...",
                                   supports_primary=True)
    cap = _capture(cb, keyboard.NullKeyboard()).capture()
    assert cap.image == b"\x89PNG..." and cap.text == "what is this?" and not cap.empty


def test_an_image_alone_is_not_empty() -> None:
    cb = clipboard.MemoryClipboard(text=None, image=b"\x89PNG")
    cap = _capture(cb, keyboard.NullKeyboard()).capture()
    assert cap.text == "" and cap.image == b"\x89PNG" and not cap.empty


def test_use_primary_off_always_copies() -> None:
    cb = clipboard.MemoryClipboard(text="x", primary="stale", supports_primary=True)
    kb = keyboard.NullKeyboard()
    kb.on_copy = SlowApp(cb, "fresh")
    assert _capture(cb, kb, use_primary=False).capture().text == "fresh"


def test_an_image_alone_on_the_clipboard_survives_the_copy_path() -> None:
    # a screenshot on the clipboard, nothing selected: it used to come back as empty text
    cb = clipboard.MemoryClipboard(text=None, image=b"\x89PNG screenshot")
    cap = _capture(cb, keyboard.NullKeyboard(), use_primary=False).capture()
    assert cap.restored and cap.image == b"\x89PNG screenshot"
    assert cb.image == b"\x89PNG screenshot" and cb.text is None


class LateClipboard(clipboard.MemoryClipboard):
    """Like xclip: a write lands only some reads later (the forked owner is not up yet)."""

    def __init__(self, text: str) -> None:
        super().__init__(text=text)
        self.queued: list[str] = []

    def write_text(self, text: str) -> None:
        self.writes.append(text)
        self.queued = [text, text]  # visible after two more reads

    def read_text(self) -> str | None:
        if self.queued:
            landed = self.queued.pop()
            if not self.queued:
                self.text, self.image = landed, None
        return self.text


def test_a_late_clipboard_write_is_not_taken_for_the_selection() -> None:
    cb = LateClipboard("the user's old clipboard")
    kb = keyboard.NullKeyboard()  # nothing is selected: Ctrl+C copies nothing
    cap = _capture(cb, kb, use_primary=False).capture()
    assert cap.empty and cap.method == "none", cap
    assert cap.restored and cb.text == "the user's old clipboard"


def test_xclip_saves_and_puts_back_the_raw_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    offered = {"TARGETS": b"TARGETS\nSTRING\n", "STRING": b"caf\xe9 \xff"}
    monkeypatch.setattr(clip_base, "run", lambda args, input_=None: subprocess
                        .CompletedProcess(args, 0, offered[args[args.index("-t") + 1]], b""))
    writes: list[tuple[list[str], bytes]] = []
    monkeypatch.setattr(clip_xclip.subprocess, "run",
                        lambda args, **kw: writes.append((args, kw["input"])))
    cb = clip_xclip.XclipClipboard()
    saved = cb.save()
    assert saved == clipboard.Saved("STRING", b"caf\xe9 \xff")
    cb.put_back(saved)
    assert writes == [(["xclip", "-selection", "clipboard", "-t", "STRING", "-i"],
                       b"caf\xe9 \xff")]
    offered["TARGETS"] = b"TARGETS\nimage/png\nUTF8_STRING\n"
    offered["UTF8_STRING"] = b"text wins"
    assert cb.save() == clipboard.Saved("UTF8_STRING", b"text wins")
    offered["TARGETS"] = b"TARGETS\nimage/png\n"
    offered["image/png"] = b"\x89PNG"
    assert cb.save() == clipboard.Saved("image/png", b"\x89PNG")


def test_clipboard_backends_are_chosen_per_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clipboard.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(clipboard.sys, "platform", "linux")
    x11 = clipboard.choose_clipboard({"DISPLAY": ":1"})
    assert x11.name == "xclip"
    way = clipboard.choose_clipboard({"DISPLAY": ":1", "WAYLAND_DISPLAY": "wayland-0"})
    assert way.name == "wl"
    forced = clipboard.choose_clipboard({"DISPLAY": ":1", "LABROUTER_CLIPBOARD_BACKEND": "null"})
    assert forced.name == "null" and isinstance(forced.backend, clipboard.MemoryClipboard)


def test_no_display_gives_the_memory_clipboard_and_says_why(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clipboard.shutil, "which", lambda name: None)
    monkeypatch.setattr(clipboard.sys, "platform", "linux")
    c = clipboard.choose_clipboard({})
    assert c.name == "null"
    reasons = {p.name: p.reason for p in c.unavailable}
    assert "DISPLAY" in reasons["xclip"] and "xclip or xsel" in reasons["pyperclip"]


def test_read_selection_for_cli_prefers_primary(monkeypatch: pytest.MonkeyPatch) -> None:
    cb = clipboard.MemoryClipboard(text="clip", primary="prim", supports_primary=True)
    monkeypatch.setattr(selection, "choose_clipboard",
                        lambda env=None: bk.Choice("clipboard", cb, "fake", ()))
    assert selection.read_selection_for_cli({}) == "prim"
    cb.primary = None
    assert selection.read_selection_for_cli({}) == "clip"
    cb.text = None
    assert selection.read_selection_for_cli({}) == ""


def test_xclip_write_never_waits_for_the_forked_owner(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    def run(args: list[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
        calls.append({"args": args, **kw})
        return subprocess.CompletedProcess(args, 0, b"", b"")

    monkeypatch.setattr(clip_xclip.subprocess, "run", run)
    clip_xclip.XclipClipboard().write_text("héllo")
    (call,) = calls
    assert call["args"] == ["xclip", "-selection", "clipboard", "-i"]
    assert call["input"] == "héllo".encode()
    assert call["stdout"] is subprocess.DEVNULL and call["stderr"] is subprocess.DEVNULL
    assert call["timeout"] > 0


def test_xclip_reads_an_image_only_when_offered(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {"TARGETS": b"TARGETS\nUTF8_STRING\n", "image/png": b"PNG"}

    def run(args: list[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
        target = args[args.index("-t") + 1]
        return subprocess.CompletedProcess(args, 0, answers[target], b"")

    monkeypatch.setattr(clip_base, "run", lambda args, input_=None: run(args))
    cb = clip_xclip.XclipClipboard()
    assert cb.read_image() is None
    answers["TARGETS"] = b"TARGETS\nimage/png\n"
    assert cb.read_image() == b"PNG"


# ------------------------------------------------------------------ notifications


@pytest.mark.parametrize("text,limit,utf16,expect", [
    ("a" * 63, 63, True, "a" * 63),
    ("a" * 64, 63, True, "a" * 62 + "…"),
    ("a" * 62 + "😀", 63, True, "a" * 62 + "…"),  # the emoji is 2 units: does not fit
    ("a" * 61 + "😀", 63, True, "a" * 61 + "😀"),
    ("a" * 62 + "😀", 63, False, "a" * 62 + "😀"),
    ("b" * 256, 255, True, "b" * 254 + "…"),
    ("b" * 255, 255, True, "b" * 255),
])
def test_fit_counts_like_the_platform(text: str, limit: int, utf16: bool, expect: str) -> None:
    out = notify.fit(text, limit, utf16)
    assert out == expect
    assert len(out.encode("utf-16-le")) // 2 <= limit or not utf16


def test_fit_never_splits_a_surrogate_pair() -> None:
    out = notify.fit("😀" * 200, 255, utf16=True)
    out.encode("utf-16-le")  # a lone surrogate would raise
    assert len(out.encode("utf-16-le")) // 2 <= 255


def test_preview_fits_whole_or_shortened_with_suffix() -> None:
    lim = notify.Limits(title=63, body=50)
    short = notify.preview("  a short answer  ", lim, "(copied)")
    assert short == notify.Preview("a short answer", False)
    long = notify.preview("word " * 40, lim, "(full answer copied)")
    assert long.shortened and long.body.endswith("\n(full answer copied)")
    assert len(long.body) <= 50


def test_limits_per_platform() -> None:
    assert notify.limits_for("win32") == notify.Limits(63, 255, True)
    assert notify.limits_for("linux").body == 200


def test_quoting_for_applescript_and_gvariant() -> None:
    assert notify.applescript_quote('say "hi" \\ there') == '"say \\"hi\\" \\\\ there"'
    assert notify.gvariant_quote("it's\na \\ test") == "'it\\'s\\na \\\\ test'"


class FakeNotifier:
    def __init__(self, name: str, problem: str | None = None, fail: bool = False) -> None:
        self.name = name
        self._problem = problem
        self.fail = fail
        self.sent: list[tuple[str, str]] = []

    def problem(self) -> str | None:
        return self._problem

    def send(self, title: str, body: str) -> None:
        if self.fail:
            raise subprocess.CalledProcessError(1, ["x"], b"", b"GDBus.Error: no server\n")
        self.sent.append((title, body))


def test_chain_skips_by_checking_first() -> None:
    a, b = FakeNotifier("plyer", "dbus-python is not installed"), FakeNotifier("notify-send")
    chain = notify.NotificationChain([a, b], env={})
    assert chain.send("T", "B") == "notify-send"
    assert b.sent == [("T", "B")] and a.sent == []
    assert chain.first_available() == "notify-send"


def test_chain_demotes_a_backend_that_fails_and_says_what_was_tried() -> None:
    a, b = FakeNotifier("notify-send", fail=True), FakeNotifier("gdbus", fail=True)
    chain = notify.NotificationChain([a, b], env={})
    with pytest.raises(notify.NotifyError) as err:
        chain.send("T", "B")
    assert "notify-send: exit code 1: GDBus.Error: no server" in err.value.message
    assert "gdbus: exit code 1" in err.value.message
    a.fail = False  # demoted for a while even if it would work now
    with pytest.raises(notify.NotifyError):
        chain.send("T", "B")
    assert dict(chain.problems())["notify-send"].startswith("failed earlier")


def test_a_demoted_backend_is_tried_again_later() -> None:
    # started at login before the notification server: it must not stay log-only for good
    clock = FakeClock()
    a = FakeNotifier("notify-send", fail=True)
    chain = notify.NotificationChain([a, notify.LogNotifier()], env={}, clock=clock)
    assert chain.send("T", "B") == "log"
    a.fail = False
    clock.now += 5
    assert chain.send("T", "B") == "log"
    clock.now += notify.RETRY_AFTER
    assert chain.send("T", "B") == "notify-send" and a.sent == [("T", "B")]


def test_chain_ends_in_the_log() -> None:
    chain = notify.NotificationChain([FakeNotifier("a", fail=True), notify.LogNotifier()],
                                     env={})
    assert chain.send("T", "B") == "log"


def test_forcing_a_notification_backend() -> None:
    a, b = FakeNotifier("plyer"), FakeNotifier("gdbus")
    chain = notify.NotificationChain([a, b], env={"LABROUTER_NOTIFY_BACKEND": "gdbus"})
    assert chain.send("T", "B") == "gdbus" and a.sent == []
    null = notify.NotificationChain([a, b], env={"LABROUTER_NOTIFY_BACKEND": "null"})
    assert null.send("T", "B") == "null"


def test_default_chains_per_os() -> None:
    names = {p: [n.name for n in notify.default_chain(p, env={})]
             for p in ("linux", "darwin", "win32")}
    assert names == {"linux": ["dbus", "plyer", "notify-send", "gdbus", "log"],
                     "darwin": ["plyer", "osascript", "log"],
                     "win32": ["plyer", "tray", "log"]}


def _spec_finder(present: set[str]) -> Callable[[str], object]:
    return lambda name: object() if name in present else None


@pytest.mark.parametrize("present,isdir,env,expect", [
    ({"plyer", "dbus"}, False, {"DBUS_SESSION_BUS_ADDRESS": "x"}, None),
    ({"plyer"}, False, {"DBUS_SESSION_BUS_ADDRESS": "x"}, "without checking its exit code"),
    ({"plyer", "dbus"}, True, {"DBUS_SESSION_BUS_ADDRESS": "x"}, "Flatpak"),
    ({"plyer", "dbus"}, False, {}, "no D-Bus session"),
    (set(), False, {}, "plyer is not installed"),
])
def test_plyer_preflight_on_linux(present: set[str], isdir: bool, env: dict[str, str],
                                  expect: str | None) -> None:
    n = notify.PlyerNotifier(platform="linux", env=env, find_spec=_spec_finder(present),
                             isdir=lambda _p: isdir)
    problem = n.problem()
    assert (problem is None) if expect is None else (expect in (problem or ""))


def test_plyer_preflight_on_macos_needs_pyobjus() -> None:
    n = notify.PlyerNotifier(platform="darwin", env={}, find_spec=_spec_finder({"plyer"}))
    assert "pyobjus" in (n.problem() or "")


def test_notify_send_checks_its_exit_code_with_a_timeout() -> None:
    calls: list[tuple[list[str], dict[str, Any]]] = []

    def run(args: list[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
        calls.append((args, kw))
        return subprocess.CompletedProcess(args, 0)

    n = notify.NotifySendNotifier(platform="linux", env={"DBUS_SESSION_BUS_ADDRESS": "x"},
                                  run=run, which=lambda _n: "/usr/bin/notify-send")
    assert n.problem() is None
    n.send("Title", "-starts with a dash")
    args, kw = calls[0]
    assert args[-3:] == ["--", "Title", "-starts with a dash"]
    assert kw["check"] is True and kw["timeout"] > 0


def test_osascript_escapes_and_checks() -> None:
    calls: list[list[str]] = []

    def run(args: list[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
        assert kw["check"] is True
        calls.append(args)
        return subprocess.CompletedProcess(args, 0)

    n = notify.OsaScriptNotifier(platform="darwin", run=run, which=lambda _n: "/x")
    n.send('a "title"', "body")
    assert calls[0][2] == 'display notification "body" with title "a \\"title\\""'


def test_tray_balloon_truncates_to_the_windows_limits() -> None:
    got: list[tuple[str, str]] = []
    n = notify.TrayBalloonNotifier(lambda title, body: got.append((title, body)),
                                   platform="win32")
    assert n.problem() is None
    n.send("t" * 100, "b" * 300)
    title, body = got[0]
    assert len(title) == 63 and len(body) == 255


# ------------------------------------------------------------------ hotkey


def test_default_hotkeys_per_os() -> None:
    assert hotkey.default_hotkey("linux") == "<ctrl>+<alt>+<space>"
    assert hotkey.default_hotkey("win32") == "<ctrl>+<alt>+<space>"
    assert hotkey.default_hotkey("darwin") == "<cmd>+<shift>+<space>"
    assert hotkey.xdotool_chord("<ctrl>+<alt>+<space>") == "ctrl+alt+space"
    assert hotkey.xdotool_chord("<cmd>+<shift>+k") == "super+shift+k"


def test_no_hotkey_on_wayland_says_what_to_do() -> None:
    why = hotkey.hotkey_problem({"WAYLAND_DISPLAY": "wayland-0"}, platform="linux")
    assert why is not None and "labrouter ask --selection" in why
    assert "DISPLAY" in (hotkey.hotkey_problem({}, platform="linux") or "")
    c = hotkey.choose_hotkey("<ctrl>+<alt>+<space>", {"XDG_SESSION_TYPE": "wayland"})
    assert c.name == "null" and "Wayland" in c.unavailable[0].reason


def test_null_hotkey_fires_its_callback() -> None:
    h = hotkey.NullHotkey()
    fired: list[int] = []
    h.start(lambda: fired.append(1))
    h.press()
    h.stop()
    h.press()
    assert fired == [1]


def test_macos_permission_checks_are_empty_elsewhere() -> None:
    assert hotkey.macos_permission_problems() == []


# ------------------------------------------------------------------ tray (pure)


def _server(up: bool = True, loaded: tuple[str, ...] = (), error: str = "") -> ServerState:
    return ServerState(id="ollama", url="http://127.0.0.1:11434", up=up,
                       models=(ModelInfo("qwen3:4b"), ModelInfo("qwen3-coder:30b")),
                       loaded=loaded, error=error)


def _peer(name: str, state: NodeState = NodeState.ALIVE, me: bool = False,
          paused: bool = False, up: bool = True, **kw: Any) -> Peer:
    return Peer(node_id=name, name=name, state=state, is_self=me, paused=paused,
                servers=(_server(up, **kw),))


@pytest.mark.parametrize("peers,expect", [
    ([], "offline"),
    ([_peer("me", me=True)], "ok"),
    ([_peer("me", me=True), _peer("gpu", NodeState.SUSPECT)], "degraded"),
    ([_peer("me", me=True), _peer("gpu", NodeState.DOWN)], "degraded"),
    ([_peer("me", me=True, up=False), _peer("gpu")], "degraded"),
    ([_peer("me", me=True, paused=True), _peer("gpu")], "paused"),
    ([_peer("me", me=True, up=False)], "offline"),
    ([_peer("gpu", NodeState.DOWN)], "offline"),
])
def test_cluster_state(peers: list[Peer], expect: str) -> None:
    assert tray.cluster_state(peers) == expect


def test_tooltip_fits_windows() -> None:
    t = tray.tooltip([_peer("me", me=True), _peer("gpu", NodeState.DOWN)])
    assert t == "labrouter: some machines down (1/2 machines ready)"
    assert len(tray.tooltip([_peer("x" * 200, me=True)], limit=20)) <= 20


def test_machine_lines_show_state_models_and_in_flight() -> None:
    p = Peer(node_id="g", name="gpu-box", servers=(_server(loaded=("qwen3-coder:30b",)),),
             in_flight=2)
    assert tray.machine_lines(p)[:4] == ["State: up", "Loaded: qwen3-coder:30b",
                                        "Models installed: qwen3-coder:30b, qwen3:4b",
                                        "Requests in flight: 2"]
    many = ServerState(id="o", url="http://127.0.0.1:1", up=True,
                       models=tuple(ModelInfo(f"m{i}") for i in range(9)))
    assert tray.machine_lines(Peer(node_id="m", name="m", servers=(many,)))[2] == \
        "Models installed: m0, m1, m2, m3, m4, m5 and 3 more"
    paused = Peer(node_id="g", name="g", paused=True, pause_reason="rented out")
    assert tray.machine_state(paused) == "paused (rented out)"
    down = _peer("d", up=False, error="connection refused")
    assert tray.machine_state(down) == "up, but no server answers (connection refused)"


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def actions(self) -> tray.TrayActions:
        def rec(name: str) -> Callable[..., None]:
            return lambda *a: self.calls.append((name, a[0] if a else None))

        return tray.TrayActions(ask_selection=rec("ask"), pause=rec("pause"),
                                resume=rec("resume"), copy_answer=rec("copy"),
                                toggle_autostart=rec("autostart"), open_config=rec("config"),
                                open_usage=rec("usage"), quit=rec("quit"))


def test_menu_lists_machines_and_the_actions() -> None:
    rec = Recorder()
    view = tray.TrayView(peers=(_peer("mac", me=True, loaded=("qwen3:4b",)),
                                _peer("gpu", NodeState.DOWN)),
                         autostart=True, hotkey="<ctrl>+<alt>+<space>")
    menu = tray.build_menu(view, rec.actions())
    texts = tray.menu_texts(menu)
    assert texts[0] == "labrouter: some machines down"
    assert "mac (this machine): up" in texts and "gpu: down" in texts
    assert "  Loaded: qwen3:4b" in texts
    assert "Ask about selection (<ctrl>+<alt>+<space>)" in texts
    assert tray.find_item(menu, "Start at login").checked is True
    for text in ("Open configuration", "Usage", "Quit labrouter"):
        item = tray.find_item(menu, text)
        assert item.action is not None
        item.action()
    assert [c[0] for c in rec.calls] == ["config", "usage", "quit"]


def test_pause_durations_and_resume() -> None:
    rec = Recorder()
    menu = tray.build_menu(tray.TrayView(peers=(_peer("me", me=True),)), rec.actions())
    pause = tray.find_item(menu, "Pause this machine")
    assert [i.text for i in pause.submenu] == ["For 15 minutes", "For 1 hour", "For 4 hours",
                                               "Until resumed"]
    for item in pause.submenu:
        assert item.action is not None
        item.action()
    assert rec.calls == [("pause", 900.0), ("pause", 3600.0), ("pause", 14400.0),
                         ("pause", None)]
    paused = Peer(node_id="me", name="me", is_self=True, paused=True, paused_until=None)
    menu = tray.build_menu(tray.TrayView(peers=(paused,)), rec.actions())
    item = tray.find_item(menu, "Resume this machine")
    assert item.action is not None
    item.action()
    assert rec.calls[-1] == ("resume", None)


def test_recent_answers_copy_on_click_and_autostart_unavailable() -> None:
    rec = Recorder()
    recent = (tray.RecentAnswer("what is 6*7", "42, obviously", "qwen3:4b on mac (quick)", 0),
              tray.RecentAnswer("", "a cat", "llava on gpu (vision)", 0))
    menu = tray.build_menu(tray.TrayView(peers=(), recent=recent, autostart=None),
                           rec.actions())
    sub = tray.find_item(menu, "Recent answers").submenu
    assert len(sub) == 2 and "what is 6*7" in sub[0].text and "(image)" in sub[1].text
    assert sub[1].action is not None
    sub[1].action()
    assert rec.calls == [("copy", 1)]
    assert tray.find_item(menu, "Start at login").enabled is False
    assert "No machines known yet" in tray.menu_texts(menu)


def test_null_tray_runs_setup_and_stops() -> None:
    t = tray.NullTray()
    ran: list[int] = []
    t.stop()
    t.run(lambda: ran.append(1))
    assert ran == [1]
    with pytest.raises(NotImplementedError):
        t.notify("a", "b")


def test_no_display_means_no_tray() -> None:
    c = tray.choose_tray({})
    assert c.name == "null" and "DISPLAY" in c.unavailable[0].reason


def test_importing_the_desktop_loads_no_desktop_library() -> None:
    import sys

    code = ("import sys, labrouter.desktop.tray, labrouter.desktop.hotkey, "
            "labrouter.desktop.selection, labrouter.desktop.notify, labrouter.desktop.clipboard, "
            "labrouter.desktop.keyboard, labrouter.app.desktop.app, "
            "labrouter.app.desktop_app, labrouter.app.doctor\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'pystray', 'pynput', 'plyer', 'pyperclip', 'PIL', 'Xlib'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(
                             Path(__file__).resolve().parents[1] / "src")})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_clipboard_that_cannot_put_an_image_back_is_not_touched() -> None:
    # Windows (pyperclip): copying over a screenshot would lose it for good
    class NoImages(clipboard.MemoryClipboard):
        restores_images = False

    cb = NoImages(text=None, image=b"\x89PNG screenshot")
    kb = keyboard.NullKeyboard()
    cap = _capture(cb, kb, use_primary=False).capture()
    assert cb.writes == [] and kb.copies == 0
    assert cap.image == b"\x89PNG screenshot" and cap.restored and not cap.empty


def test_pyperclip_keeps_an_image_when_there_is_no_text(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cb = clip_pyperclip.PyperclipClipboard.__new__(clip_pyperclip.PyperclipClipboard)
    monkeypatch.setattr(cb, "read_text", lambda: None)
    monkeypatch.setattr(cb, "read_image", lambda: b"\x89PNG")
    assert cb.save() == clipboard.Saved("image/png", b"\x89PNG")


@pytest.mark.parametrize("combo,platform,expect", [
    ("<ctrl>+<alt>+<space>", "linux", "Ctrl+Alt+Space"),
    ("<cmd>+<shift>+<space>", "darwin", "⇧⌘Space"),
    ("<ctrl>+<alt>+<space>", "darwin", "⌃⌥Space"),
    ("<cmd>+<alt>+k", "win32", "Win+Alt+K"),
    ("<ctrl>+<shift>+a", "linux", "Ctrl+Shift+A"),
])
def test_the_hotkey_is_written_as_people_write_it(combo: str, platform: str,
                                                  expect: str) -> None:
    assert hotkey.human_hotkey(combo, platform) == expect


# ------------------------------------------------------------------ the hotkey is consumed


def test_chords_parse_and_reject_what_is_not_one_key() -> None:
    assert hotkey.parse_chord("<ctrl>+<alt>+<space>") == hotkey.Chord(
        frozenset({"ctrl", "alt"}), "space")
    assert hotkey.parse_chord("<cmd_l>+<shift>+K") == hotkey.Chord(
        frozenset({"cmd", "shift"}), "k")
    with pytest.raises(ValueError, match="one key"):
        hotkey.parse_chord("<ctrl>+<alt>")
    with pytest.raises(ValueError, match="one key"):
        hotkey.parse_chord("<ctrl>+a+b")


def test_windows_swallows_exactly_the_chord() -> None:
    from labrouter.desktop.hotkey.chord import win32_swallow

    chord = hotkey.parse_chord("<ctrl>+<alt>+<space>")
    assert win32_swallow(chord, 0x20, frozenset({"ctrl", "alt"}))
    assert not win32_swallow(chord, 0x20, frozenset({"ctrl"}))  # Ctrl+Space: an IME's
    assert not win32_swallow(chord, 0x20, frozenset({"ctrl", "alt", "shift"}))
    assert not win32_swallow(chord, 0x41, frozenset({"ctrl", "alt"}))


def test_the_windows_hook_fires_once_and_suppresses_down_and_up() -> None:
    """pynput's filter with a fake listener: the modifiers pass, the chord's key is
    suppressed (pynput's suppress_event raises) and fires the hotkey on key-down only."""
    from labrouter.desktop.hotkey.pynput import PynputHotkey

    class Suppressed(Exception):
        pass

    class Listener:
        def suppress_event(self) -> None:
            raise Suppressed

    hk = PynputHotkey.__new__(PynputHotkey)
    hk.chord = hotkey.parse_chord("<ctrl>+<alt>+<space>")
    hk._win_held = set()
    fired: list[int] = []
    hk._fire = lambda: fired.append(1)
    hk._listener = Listener()

    def key(msg: int, vk: int) -> bool:
        return hk._win32_filter(msg, type("D", (), {"vkCode": vk})())

    assert key(0x100, 0xA2) and key(0x104, 0xA4)  # Ctrl, Alt down: passed on
    with pytest.raises(Suppressed):
        key(0x104, 0x20)  # Space down (WM_SYSKEYDOWN with Alt)
    with pytest.raises(Suppressed):
        key(0x105, 0x20)  # Space up
    assert fired == [1]
    assert key(0x101, 0xA2) and key(0x105, 0xA4)
    assert key(0x100, 0x20)  # Space alone: typed as usual
    assert fired == [1]


def test_the_macos_event_tap_swallows_exactly_the_chord() -> None:
    from labrouter.desktop.hotkey.chord import MAC_FLAGS, darwin_swallow

    chord = hotkey.parse_chord("<cmd>+<shift>+<space>")
    flags = MAC_FLAGS["cmd"] | MAC_FLAGS["shift"] | 0x100  # plus a device-dependent bit
    assert darwin_swallow(chord, 49, flags)
    assert not darwin_swallow(chord, 49, MAC_FLAGS["cmd"])  # Cmd+Space: Spotlight's
    assert not darwin_swallow(chord, 0, flags)


def test_on_x11_the_key_is_grabbed_never_only_listened_for(
        monkeypatch: pytest.MonkeyPatch) -> None:
    specs = hotkey.hotkey_specs("<ctrl>+<alt>+<space>", {"DISPLAY": ":9"})
    assert [s.name for s in specs] == ["x11", "pynput"]
    monkeypatch.setattr(hotkey.sys, "platform", "linux")
    probes = {s.name: s.probe() for s in specs}
    assert probes["x11"] is None or "python-xlib" in probes["x11"]
    assert "let it through" in (probes["pynput"] or "")


# ------------------------------------------------------------------ notifications as written


def test_markup_is_escaped_for_the_freedesktop_servers() -> None:
    calls: list[list[str]] = []

    def run(args: list[str], **kw: Any) -> subprocess.CompletedProcess[bytes]:
        calls.append(args)
        return subprocess.CompletedProcess(args, 0, b"", b"")

    env = {"DBUS_SESSION_BUS_ADDRESS": "unix:abstract=x"}
    notify.NotifySendNotifier(platform="linux", env=env, run=run,
                              which=lambda n: n).send("T", "List<int> xs = new List<int>(); a&b")
    assert calls[-1][-1] == "List&lt;int&gt; xs = new List&lt;int&gt;(); a&amp;b"
    notify.GdbusNotifier(platform="linux", env=env, run=run, which=lambda n: n).send(
        "T", "<br>")
    assert "'&lt;br&gt;'" in calls[-1]


def test_the_chain_shows_plainly_where_no_backend_can_replace() -> None:
    a = FakeNotifier("a")
    chain = notify.NotificationChain([a], env={})
    shown = chain.show("T", "B", replaces=notify.Shown("a", 3), actions=(("copy", "Copy"),))
    assert shown == notify.Shown("a", 0) and a.sent == [("T", "B")]


def test_a_plain_linux_install_grabs_the_hotkey_without_pynput(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """pip install on Linux brings python-xlib, not pynput: the X11 hotkey must not need it
    (without it the chord went through to the focused terminal as U+0080)."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("pynput") else real(name, *a))
    assert hotkey.hotkey_problem({"DISPLAY": ":0"}, platform="linux") is None
    assert "pynput" in (hotkey.hotkey_problem({}, platform="win32") or "")
