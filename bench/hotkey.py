"""Hotkey-to-request overhead under Xvfb: what labrouter adds between the key press and
the moment the request is ready to go (selection capture + classification + choice),
without the model.

Starts a private desktop (tests/desktop_env.py: Xvfb, D-Bus, dunst), a Tk window with
selected text and a fake Ollama on 127.0.0.1; then, with the real backends (the key
grabbed with XGrabKey, xclip, pynput's keyboard), presses the default chord 20 times with
xdotool and times each step. Two capture paths: ``primary`` (X11 PRIMARY, the Linux default) and
``copy`` (save clipboard, Ctrl+C, restore; what macOS and Windows do), with the hotkey's
modifiers held 150 ms like a person (the copy path must wait for their release).

Run: ``python bench/hotkey.py [--presses 20]`` (needs .ci/desktop-setup.sh). Prints the
figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.desktop_env import DesktopSession, skip_reason  # noqa: E402
from tests.fakes.ollama_server import FakeOllama  # noqa: E402

HOLD = 0.15  # seconds the modifiers stay down after the key, like a person


def bench(path: str, presses: int, session: DesktopSession, url: str) -> dict[str, list[float]]:
    from labrouter.ask import Asker, AskRequest
    from labrouter.core.config import ServerConfig, parse_config
    from labrouter.core.peers import ModelInfo, ServerState, static_peers
    from labrouter.desktop.clipboard.xclip import XclipClipboard
    from labrouter.desktop.hotkey import default_hotkey, xdotool_chord
    from labrouter.desktop.hotkey.x11 import X11GrabHotkey
    from labrouter.desktop.keyboard.pynput import PynputKeyboard
    from labrouter.desktop.selection import SelectionCapture

    cfg = parse_config("", hostname="benchbox")
    cfg = cfg.__class__(**{**cfg.__dict__, "servers": (ServerConfig(url=url, name="fake"),)})
    server = ServerState(id="fake", url=url, models=(ModelInfo("qwen3:4b"),
                                                     ModelInfo("qwen2.5-coder:7b")),
                         loaded=("qwen3:4b",))
    peers = static_peers("benchbox", [server])
    asker = Asker(cfg, lambda: peers)
    combo = default_hotkey()
    chord = xdotool_chord(combo).split("+")
    hk = X11GrabHotkey(combo, debounce=0.0)
    kb = PynputKeyboard(hk.modifiers_down)
    capture = SelectionCapture(XclipClipboard(), kb, use_primary=(path == "primary"))
    done = threading.Event()
    marks: dict[str, float] = {}
    result: dict[str, object] = {}

    def work() -> None:  # what the app's loop does after the hand-off
        t0 = time.perf_counter()
        cap = capture.capture()
        t1 = time.perf_counter()
        req = AskRequest(prompt=cap.text, bare=True, source="hotkey")
        c = asker.classify(req)
        cands = asker._candidates(req, c, c.route)  # what the Asker does before it asks
        t2 = time.perf_counter()
        marks.update(captured=t1, planned=t2, started=t0)
        result.update(text=cap.text, cands=cands)
        done.set()

    def on_press() -> None:  # pynput's thread: as the app, hand off at once
        marks["fired"] = time.perf_counter()
        threading.Thread(target=work).start()

    out: dict[str, list[float]] = {k: [] for k in ("press_to_fire", "capture", "plan",
                                                   "press_to_request", "release_to_request")}
    hk.start(on_press)
    try:
        for _ in range(presses):
            done.clear()
            session.xdotool("keydown", *chord[:-1])
            t_press = time.perf_counter()  # just before xdotool taps the key
            session.xdotool("key", chord[-1])
            time.sleep(HOLD)
            session.xdotool("keyup", *reversed(chord[:-1]))
            t_release = time.perf_counter()
            if not done.wait(5):
                raise RuntimeError("the hotkey did not fire, or the capture hung")
            assert str(result["text"]).startswith("def add"), result
            assert result["cands"], "no candidate"
            out["press_to_fire"].append(marks["fired"] - t_press)
            out["capture"].append(marks["captured"] - marks["started"])
            out["plan"].append(marks["planned"] - marks["captured"])
            out["press_to_request"].append(marks["planned"] - t_press)
            out["release_to_request"].append(max(0.0, marks["planned"] - t_release))
            time.sleep(0.1)
    finally:
        hk.stop()
        kb.close()
        import gc

        gc.collect()  # pynput's Controller closes its X connection when collected
    return out


# ------------------------------------------------------------------ the answer window


def bench_window(presses: int, session: DesktopSession, warm: bool) -> dict[str, list[float]]:
    """Press -> answer window visible, press -> first token painted in it, and Esc -> the
    request ended at the server, over ``presses`` presses of the real hotkey (XGrabKey),
    with the selection captured from PRIMARY as the app does. ``warm``: the window
    process comes from a WindowPool (started before the press), else it starts per press.
    """
    import asyncio

    from labrouter.ask import AskRequest
    from labrouter.desktop.answer.controller import AnswerSession, Hooks, WindowPool
    from labrouter.desktop.clipboard.xclip import XclipClipboard
    from labrouter.desktop.hotkey import default_hotkey, xdotool_chord
    from labrouter.desktop.hotkey.x11 import X11GrabHotkey
    from labrouter.desktop.keyboard.xtest import XtestKeyboard
    from labrouter.desktop.selection import SelectionCapture
    from tests.answer_window_env import CODE_ANSWER, WatchedOllama, make_asker

    models = ("qwen3:4b", "qwen2.5-coder:7b", "qwen3-coder:30b")
    combo = default_hotkey()
    chord = xdotool_chord(combo).split("+")
    out: dict[str, list[float]] = {k: [] for k in ("press_to_window", "press_to_first_token",
                                                   "esc_to_server_cancel")}

    async def run() -> None:
        loop = asyncio.get_running_loop()
        fired: asyncio.Queue[float] = asyncio.Queue()
        hk = X11GrabHotkey(combo, debounce=0.0)  # what the app uses on X11
        kb = XtestKeyboard()
        capture = SelectionCapture(XclipClipboard(), kb, use_primary=True)

        async def nothing(_t: str) -> None:
            return None

        # a slow answer (40 tokens/s, 150 ms to the first): still streaming at the Esc
        async with WatchedOllama(models=list(models), answer=CODE_ANSWER * 4,
                                 tokens_per_s=40, ttft=0.15) as srv:
            asker, peers = make_asker(srv.url, models)
            pool = WindowPool(env=session.env, delay=0.3) if warm else None
            if pool is not None:
                await pool.prepare()
            hk.start(lambda: loop.call_soon_threadsafe(fired.put_nowait, time.perf_counter()))
            try:
                for i in range(presses):
                    if pool is not None:  # the spare is started 0.3 s after a take and
                        await asyncio.sleep(1.2)  # needs ~0.6 s; people read in between
                    session.xdotool("mousemove", "300", "200")
                    session.xdotool("keydown", *chord[:-1])
                    t_press = time.perf_counter()
                    session.xdotool("key", chord[-1])
                    session.xdotool("keyup", *reversed(chord[:-1]))
                    t_fired = await asyncio.wait_for(fired.get(), 5)
                    cap = await asyncio.to_thread(capture.capture)
                    t_cap = time.perf_counter()
                    req = AskRequest(prompt=cap.text, bare=True, source="hotkey")
                    s = AnswerSession(asker, Hooks(nothing, nothing), peers=lambda: peers,
                                      env=session.env, clock=time.perf_counter)
                    window = await pool.take() if pool is not None else None
                    task = loop.create_task(s.run(req, window=window))
                    while not s.marks.painted:
                        await asyncio.sleep(0.002)
                        if task.done():
                            task.result()
                    out["press_to_window"].append(s.marks.shown - t_press)
                    if os.environ.get("BENCH_DEBUG"):
                        print(f"fired {1e3 * (t_fired - t_press):.0f} captured "
                              f"{1e3 * (t_cap - t_press):.0f} opened "
                              f"{1e3 * (s.marks.opened - t_press):.0f} shown "
                              f"{1e3 * (s.marks.shown - t_press):.0f} first text "
                              f"{1e3 * (s.marks.first_text - t_press):.0f} painted "
                              f"{1e3 * (s.marks.painted - t_press):.0f}")
                    out["press_to_first_token"].append(s.marks.painted - t_press)
                    c = await s.query()
                    x, y = c.controls["text"]
                    session.xdotool("mousemove", str(x), str(y), "click", "1")
                    await asyncio.sleep(0.15)
                    gone = len(srv.hung_up)
                    t_esc = time.monotonic()
                    session.xdotool("key", "Escape")
                    at = await srv.wait_hung_up(gone + 1, timeout=10)
                    out["esc_to_server_cancel"].append(at - t_esc)
                    assert await asyncio.wait_for(task, 10) == "cancelled", i
                    await asyncio.sleep(0.2)
            finally:
                hk.stop()
                kb.close()
                if pool is not None:
                    await pool.close()

    asyncio.run(run())
    return out


def window_main(presses: int) -> int:
    """``python bench/hotkey.py --window``: the answer window's figures under openbox."""
    from tests.answer_window_env import SELECTED, Target, answer_skip_reason, start_openbox

    reason = answer_skip_reason()
    if reason:
        print(f"cannot run: {reason}")
        return 2
    session = DesktopSession().start()
    try:
        os.environ.update({k: session.env[k] for k in ("DISPLAY", "DBUS_SESSION_BUS_ADDRESS")})
        start_openbox(session)
        session.xdotool("mousemove", "300", "200")
        target = Target(session, SELECTED)
        print(f"{presses} presses of {default_chord()} into an editor with selected code, "
              "under openbox; times in ms (median / max)")
        for warm in (False, True):
            res = bench_window(presses, session, warm)
            line = "  ".join(f"{k} {statistics.median(v) * 1000:6.1f} / {max(v) * 1000:6.1f}"
                             for k, v in res.items())
            print(f"{'warm' if warm else 'cold':5} {line}")
        target.close()
        time.sleep(0.5)
    finally:
        session.stop()
    return 0


def default_chord() -> str:
    from labrouter.desktop.hotkey import default_hotkey

    return default_hotkey()


def _own(session: DesktopSession, target: str, data: bytes) -> None:
    """Put ``data`` on CLIPBOARD as ``target`` through an xclip child the session ends."""
    import subprocess

    proc = subprocess.Popen(["xclip", "-selection", "clipboard", "-t", target, "-i"],
                            env=session.env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    proc.communicate(data, timeout=10)
    session._owners.append(proc.pid)
    time.sleep(0.1)


def _clipboard_bytes(session: DesktopSession, target: str) -> bytes:
    import subprocess

    return subprocess.run(["xclip", "-selection", "clipboard", "-o", "-t", target],
                          env=session.env, capture_output=True, timeout=10).stdout


def clipboard_bench(session: DesktopSession, presses: int) -> dict[str, int]:
    """Presses of the grabbed hotkey, each capturing the selection with the real X11
    backends (xclip, XTEST), with text and then a PNG on the clipboard, on both paths;
    returns, per case, how many presses left the clipboard byte-identical."""
    import io

    from PIL import Image

    from labrouter.desktop.clipboard.xclip import XclipClipboard
    from labrouter.desktop.hotkey import default_hotkey, xdotool_chord
    from labrouter.desktop.hotkey.x11 import X11GrabHotkey
    from labrouter.desktop.keyboard.xtest import XtestKeyboard
    from labrouter.desktop.selection import SelectionCapture

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buf, format="PNG")
    cases = {"text": ("UTF8_STRING", "the user's clipboard, ünïcödé".encode()),
             "png": ("image/png", buf.getvalue())}
    combo = default_hotkey()
    chord = xdotool_chord(combo)
    hk = X11GrabHotkey(combo, debounce=0.0)
    kb = XtestKeyboard()
    done = threading.Event()
    state: dict[str, Any] = {}

    def on_press() -> None:  # the hotkey's thread: hand off at once, as the app does
        threading.Thread(target=lambda: (state["capture"].capture(), done.set())).start()

    out: dict[str, int] = {}
    hk.start(on_press)
    try:
        for path in ("primary", "copy"):
            state["capture"] = SelectionCapture(XclipClipboard(), kb,
                                                use_primary=(path == "primary"))
            for name, (target, data) in cases.items():
                _own(session, target, data)
                same = 0
                for _ in range(presses):
                    done.clear()
                    session.press(chord, hold=HOLD)
                    if not done.wait(5):
                        raise RuntimeError("the hotkey did not fire, or the capture hung")
                    same += _clipboard_bytes(session, target) == data
                out[f"{path}/{name}"] = same
    finally:
        hk.stop()
        kb.close()
    return out


def xterm_bench(session: DesktopSession, presses: int, tmp: Path) -> tuple[int, int]:
    """Presses of the grabbed hotkey with xterm focused: (bytes the terminal's program
    received, presses the hotkey saw). The first is 0 when the chord is consumed."""
    from labrouter.desktop.hotkey import default_hotkey, xdotool_chord
    from labrouter.desktop.hotkey.x11 import X11GrabHotkey

    typed = tmp / "typed.bin"
    term = session.xterm_recording_input(typed)
    seen: list[int] = []
    hk = X11GrabHotkey(default_hotkey(), debounce=0.0)
    hk.start(lambda: seen.append(1))
    try:
        for _ in range(presses):
            session.press(xdotool_chord(default_hotkey()), hold=HOLD)
            time.sleep(0.1)
        time.sleep(0.5)
        return len(typed.read_bytes()), len(seen)
    finally:
        hk.stop()
        term.terminate()
        term.wait(5)


def consumed_main(presses: int) -> int:
    """``--consumed``: the clipboard over 50 presses per case, and 20 presses into xterm."""
    import tempfile

    reason = skip_reason()
    if reason:
        print(f"cannot run: {reason}")
        return 2
    session = DesktopSession().start()
    try:
        os.environ.update({k: session.env[k] for k in ("DISPLAY", "DBUS_SESSION_BUS_ADDRESS")})
        win = session.window_with_selection("def add(a, b):\n    return a - b")
        res = clipboard_bench(session, 50)
        for case, same in res.items():
            print(f"clipboard byte-identical after the press, {case:13}: {same}/50")
        win.terminate()
        win.wait(5)
        with tempfile.TemporaryDirectory() as tmp:
            typed, seen = xterm_bench(session, presses, Path(tmp))
        print(f"{presses} presses into a focused xterm: {seen} seen by labrouter, "
              f"{typed} bytes typed into the terminal")
    finally:
        session.stop()
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--presses", type=int, default=20)
    p.add_argument("--window", action="store_true", help="the answer window's figures")
    p.add_argument("--consumed", action="store_true",
                   help="the clipboard over 50 presses (text, PNG) and presses into xterm")
    args = p.parse_args()
    if args.window:
        return window_main(args.presses)
    if args.consumed:
        return consumed_main(args.presses)
    reason = skip_reason()
    if reason:
        print(f"cannot run: {reason}")
        return 2
    fake = FakeOllama(models=["qwen3:4b", "qwen2.5-coder:7b"])
    url, stop_fake = fake.start_in_thread()
    session = DesktopSession().start()
    try:
        os.environ.update({k: session.env[k] for k in ("DISPLAY", "DBUS_SESSION_BUS_ADDRESS")})
        win = session.window_with_selection(
            "def add(a, b):\n    return a - b  # why is this wrong?")
        session.set_clipboard("the user's clipboard")
        print(f"{args.presses} presses of {'<ctrl>+<alt>+<space>'} per path, modifiers held "
              f"{HOLD * 1000:.0f} ms; times in ms (median / max)")
        for path in ("primary", "copy"):
            res = bench(path, args.presses, session, url)
            line = "  ".join(f"{k} {statistics.median(v) * 1000:6.1f} / {max(v) * 1000:6.1f}"
                             for k, v in res.items())
            print(f"{path:8} {line}")
            assert session.get_clipboard() == "the user's clipboard"
        print("clipboard after all presses: unchanged")
        win.terminate()
        win.wait(5)
        time.sleep(0.5)  # let pynput's threads close their X connections first
    finally:
        session.stop()
        stop_fake()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
