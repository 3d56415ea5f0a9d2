"""What the answer-window tests and ``bench/hotkey.py`` share: a desktop with a real window
manager (openbox) under Xvfb, an application with selected text that reports what it holds
(:data:`TARGET_APP`), a fake Ollama that notices when a client hangs up
(:class:`WatchedOllama`), and an Asker over it (:func:`make_asker`).

Every process is started through :class:`tests.desktop_env.DesktopSession` (ended by its
own id); nothing here talks to anything but 127.0.0.1 and the private X display.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from typing import Any

from aiohttp import web

from tests.desktop_env import DesktopSession, _readline, skip_reason, wait_for
from tests.fakes.ollama_server import FakeOllama

CODE_ANSWER = """The function subtracts where it should add, so `add(2, 3)` returns `-1` \
instead of `5`.

```python
def add(a, b):
    \"\"\"Return the sum of a and b.\"\"\"
    return a + b
```

Why it was wrong:
- `a - b` is **subtraction**; the name promises a sum.
- A quick test catches it: `assert add(2, 3) == 5`.
"""

SELECTED = "def add(a, b):\n    return a - b  # why is this wrong?"

#: an editor with selected text: a paste replaces the selection (as most applications do;
#: Tk's own text does not on X11), and every change is printed as a JSON line
TARGET_APP = r"""
import json, sys, tkinter as tk
root = tk.Tk()
root.title("target-editor")
root.geometry("560x180+60+80")
t = tk.Text(root, font=("DejaVu Sans Mono", 11))
t.pack(fill="both", expand=True)
t.insert("1.0", sys.argv[1])
def paste(_e):
    try:
        new = root.clipboard_get()
    except tk.TclError:
        return "break"
    if t.tag_ranges("sel"):
        t.delete("sel.first", "sel.last")
    t.insert("insert", new)
    print(json.dumps({"text": t.get("1.0", "end-1c")}), flush=True)
    return "break"
t.bind("<<Paste>>", paste)
t.bind("<Control-v>", paste)
def ready():
    root.focus_force()
    t.focus_force()
    t.tag_add("sel", "1.0", "end-1c")
    print(json.dumps({"ready": True}), flush=True)
root.after(300, ready)
root.mainloop()
"""


def answer_skip_reason() -> str | None:
    reason = skip_reason()
    if reason:
        return reason
    if shutil.which("openbox") is None:
        return "openbox is missing (apt install openbox): the window tests need a real WM"
    return None


def start_openbox(session: DesktopSession) -> None:
    """A real window manager, and wait until it manages the screen."""
    session.spawn("openbox", ["openbox", "--sm-disable"])

    def up() -> bool:
        from Xlib import display as xdisplay

        d = xdisplay.Display(session.env["DISPLAY"])
        try:
            root = d.screen().root
            prop = root.get_full_property(d.intern_atom("_NET_SUPPORTING_WM_CHECK"), 0)
            return prop is not None and bool(prop.value)
        finally:
            d.close()

    wait_for(up, 10, "openbox")


class Target:
    """The application with the selection (see TARGET_APP)."""

    def __init__(self, session: DesktopSession, text: str = SELECTED) -> None:
        self.proc = session.spawn("target", [sys.executable, "-c", TARGET_APP, text],
                                  stdout=subprocess.PIPE)
        line = _readline(self.proc, 15)
        if b"ready" not in line:
            raise RuntimeError(f"the target editor did not start: {line!r}")
        self.session = session
        self.window = self.focus()

    def focus(self) -> str:
        return subprocess.run(["xdotool", "getwindowfocus"], env=self.session.env,
                              capture_output=True, text=True, timeout=5).stdout.strip()

    def next_text(self, timeout: float = 10) -> str:
        line = _readline(self.proc, timeout)
        if not line:
            raise TimeoutError("the target editor reported nothing")
        return str(json.loads(line)["text"])

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


def focused_window(session: DesktopSession) -> str:
    return subprocess.run(["xdotool", "getwindowfocus"], env=session.env,
                          capture_output=True, text=True, timeout=5).stdout.strip()


class WatchedOllama(FakeOllama):
    """A fake Ollama that records when a chat request ends because the client went away
    (the answer window's Cancel must reach the server)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hung_up: list[float] = []  # monotonic times the server saw a client go
        self.finished = 0

    async def generation(self, request: web.Request, chat: bool) -> web.StreamResponse:
        try:
            resp = await super().generation(request, chat)
        except (asyncio.CancelledError, ConnectionResetError):
            self.hung_up.append(time.monotonic())
            raise
        self.finished += 1
        return resp

    async def wait_hung_up(self, count: int, timeout: float = 10) -> float:
        deadline = time.monotonic() + timeout
        while len(self.hung_up) < count:
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not see the client hang up")
            await asyncio.sleep(0.005)
        return self.hung_up[count - 1]


def make_asker(url: str, models: tuple[str, ...], node: str = "desk") -> Any:
    """An Asker over one fake server on this machine (as the daemon's, minus the cluster)."""
    from labrouter.ask import Asker
    from labrouter.core.config import ServerConfig, parse_config
    from labrouter.core.peers import ModelInfo, ServerState, static_peers

    cfg = parse_config("", hostname=node)
    cfg = replace(cfg, servers=(ServerConfig(url=url, name="fake"),))
    server = ServerState(id="fake", url=url, loaded=models,
                         models=tuple(ModelInfo(m, params_b=ModelInfo.guess_params(m))
                                      for m in models))
    peers = static_peers(node, [server])
    return Asker(cfg, lambda: peers), peers


# ------------------------------------------------------------------ docs/answer-window.png


def answer_window_screenshot(out: str, background: int = 0x3B4252) -> None:
    """The window with a streamed code answer over an editor, under openbox, as a PNG.
    ``python -m tests.answer_window_env screenshot docs/answer-window.png``."""
    from PIL import Image

    from labrouter.ask import AskRequest
    from labrouter.desktop.answer.controller import AnswerSession, Hooks

    async def nothing(_t: str) -> None:
        return None

    async def run(s: DesktopSession) -> None:
        async with WatchedOllama(models=["qwen3:4b", "qwen2.5-coder:7b", "qwen3-coder:30b",
                                         "deepseek-r1:32b", "llama3.3:70b"],
                                 answer=CODE_ANSWER, tokens_per_s=200, name="gpu-box") as srv:
            asker, peers = make_asker(srv.url, ("qwen3:4b", "qwen2.5-coder:7b",
                                                "qwen3-coder:30b", "llama3.3:70b"),
                                      node="gpu-box")
            session = AnswerSession(asker, Hooks(nothing, nothing), peers=lambda: peers,
                                    env=s.env)
            task = asyncio.get_running_loop().create_task(session.run(
                AskRequest(prompt=SELECTED, bare=True)))
            deadline = time.monotonic() + 20
            while (session.busy or not session.marks.painted) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.6)
            s.screenshot(s.run_dir / "full.png")
            await session.window.send(__import__(  # type: ignore[union-attr]
                "labrouter.desktop.answer.protocol", fromlist=["Close"]).Close())
            await asyncio.wait_for(task, 10)

    with DesktopSession() as s:
        start_openbox(s)
        from Xlib import display as xdisplay

        d = xdisplay.Display(s.env["DISPLAY"])
        root = d.screen().root
        root.change_attributes(background_pixel=background)
        root.clear_area(0, 0, 0, 0)
        d.sync()
        d.close()
        s.xdotool("mousemove", "300", "200")
        target = Target(s)
        asyncio.run(run(s))
        target.close()
        with Image.open(s.run_dir / "full.png") as im:
            im.convert("RGB").crop((40, 60, 940, 720)).save(out)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "screenshot":
        answer_window_screenshot(sys.argv[2])
        print(f"wrote {sys.argv[2]}")
    else:
        print("usage: python -m tests.answer_window_env screenshot OUT.png")
        raise SystemExit(2)
