"""A real, private desktop session for tests and benchmarks: Xvfb, a D-Bus session bus,
a notification server (dunst) watched by dbus-monitor, optionally a tray (trayer), and a
Tk window with selected text.

Owns :class:`DesktopSession` (start/stop, in that order, each waited for; every process
ended by its own PID or process group, newest first, Xvfb last) and the helpers to drive
and observe it: pressing a chord like a person (xdotool keydown/keyup), reading and
seeding PRIMARY and CLIPBOARD (xclip), reading back the Notify calls (dbus-monitor's log)
and dunst's history. See ``../shared/research/desktop-ci.md`` for why each step is so.

Nothing here touches the user's session: the bus has no service activation, ``XDG_*``,
``TMPDIR`` and ``HOME``-like dirs point into the run directory, and ``NO_AT_BRIDGE`` /
``GSETTINGS_BACKEND=memory`` keep GTK from starting accessibility buses.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REQUIRED = ("Xvfb", "xdotool", "xclip", "dbus-daemon", "dbus-monitor", "dunst", "trayer")

BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={bus}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""

TK_WINDOW = r"""
import sys, tkinter as tk
text = sys.argv[1]
root = tk.Tk()
root.title("labrouter-test-window")
root.geometry("600x200+100+300")
t = tk.Text(root, font=("Helvetica", 14))
t.pack(fill="both", expand=True)
t.insert("1.0", text)
def ready():
    root.focus_force()
    t.focus_force()
    t.tag_add("sel", "1.0", "end-1c")
    print("READY", flush=True)
root.after(300, ready)
root.mainloop()
"""


#: runs inside xterm: every byte the terminal sends to its program is appended to a file
#: (raw mode: nothing is line-buffered or interpreted), so a test reads exactly what a
#: key press typed into the terminal's input line
STDIN_RECORDER = r"""
import os, sys, termios, tty
out = sys.argv[1]
fd = sys.stdin.fileno()
tty.setraw(fd)
with open(out, "ab", buffering=0) as f:
    f.write(b"")
    os.rename(out, out)  # the file exists: the recorder is ready
    while True:
        data = os.read(fd, 1024)
        if not data:
            break
        f.write(data)
"""


def missing_tools() -> list[str]:
    return [t for t in REQUIRED if shutil.which(t) is None]


def skip_reason() -> str | None:
    """Why the real-desktop tests cannot run here, or None."""
    if not sys.platform.startswith("linux"):
        return "the real-desktop tests run on Linux only"
    missing = missing_tools()
    if missing:
        return (f"missing {', '.join(missing)}: run .ci/desktop-setup.sh (apt install xvfb "
                "xdotool xclip dbus dunst libnotify-bin trayer)")
    try:
        import tkinter  # noqa: F401
    except ImportError:
        return "Python has no tkinter (needed for the window with selected text)"
    return None


def wait_for(cond: Callable[[], bool], timeout: float, what: str, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(step)
    raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what}")


@dataclass
class Notification:
    app: str
    summary: str
    body: str


def parse_notify_calls(log_text: str) -> list[Notification]:
    """The Notify calls in a dbus-monitor log: app name, summary and body.

    dbus-monitor prints each argument on its own line, strings as ``string "..."``, with
    newlines of the value printed as they are; a call ends at the next message header.
    """
    out: list[Notification] = []
    blocks = re.split(r"^(?=method call |method return |signal |error )", log_text,
                      flags=re.M)
    for block in blocks:
        if not block.startswith("method call ") or "member=Notify" not in block.split("\n")[0]:
            continue
        args = re.findall(r'^   string "(.*?)"\n(?=   [a-z]|\Z)', block + "\n", re.S | re.M)
        if len(args) >= 4:
            # app_name, app_icon, summary, body (replaces_id is a uint32 between them)
            out.append(Notification(args[0], args[2], args[3]))
    return out


@dataclass
class DesktopSession:
    """Start with ``start()`` (or ``with``), read ``env`` for children, ``stop()`` always."""

    tray: bool = False
    size: str = "1280x800x24"
    run_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="lr-desk-")))
    env: dict[str, str] = field(default_factory=dict)
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    _owners: list[int] = field(default_factory=list)  # process groups of xclip owners

    # ------------------------------------------------------------ lifecycle

    def start(self) -> DesktopSession:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __enter__(self) -> DesktopSession:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _dirs(self) -> None:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DBUS_", "XDG_", "WAYLAND_")) and k != "DISPLAY"}
        for sub in ("runtime", "cache", "config", "data", "tmp"):
            (self.run_dir / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        env.update(XDG_RUNTIME_DIR=str(self.run_dir / "runtime"),
                   XDG_CACHE_HOME=str(self.run_dir / "cache"),
                   XDG_CONFIG_HOME=str(self.run_dir / "config"),
                   XDG_DATA_HOME=str(self.run_dir / "data"),
                   TMPDIR=str(self.run_dir / "tmp"), NO_AT_BRIDGE="1",
                   GSETTINGS_BACKEND="memory", XDG_SESSION_TYPE="x11")
        self.env = env

    def spawn(self, name: str, argv: list[str], stdout: int | None = None,
              env: Mapping[str, str] | None = None, **kw: object
              ) -> subprocess.Popen[bytes]:
        log = open(self.run_dir / f"{name}.log", "wb")  # noqa: SIM115 - kept by the child
        proc = subprocess.Popen(argv, env=dict(env or self.env),
                                stdout=stdout if stdout is not None else log,
                                stderr=log, start_new_session=True, **kw)  # type: ignore[call-overload]
        self.procs.append((name, proc))
        return proc

    def _start(self) -> None:
        self._dirs()
        rfd, wfd = os.pipe()
        xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(wfd), "-screen", "0", self.size,
                                 "-nolisten", "tcp"], pass_fds=(wfd,), env=self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        os.close(wfd)
        self.procs.append(("Xvfb", xvfb))
        number = b""
        deadline = time.monotonic() + 30
        while not number.endswith(b"\n") and time.monotonic() < deadline:
            chunk = os.read(rfd, 16)
            if not chunk:
                break
            number += chunk
        os.close(rfd)
        if not number.strip():
            raise RuntimeError("Xvfb did not report its display")
        self.env["DISPLAY"] = f":{number.decode().strip()}"
        wait_for(lambda: subprocess.run(["xdpyinfo"], env=self.env, capture_output=True)
                 .returncode == 0 if shutil.which("xdpyinfo") else True, 30, "Xvfb")

        bus = self.run_dir / "bus"
        conf = self.run_dir / "bus.conf"
        conf.write_text(BUS_CONF.format(bus=bus))
        self.spawn("dbus-daemon", ["dbus-daemon", f"--config-file={conf}", "--nofork",
                                   "--nopidfile"])
        wait_for(bus.exists, 30, "the D-Bus session bus")
        self.env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={bus}"

        self.monitor_log = self.run_dir / "monitor.log"
        self.spawn("dbus-monitor", ["dbus-monitor", "--session",
                                    "type='method_call',interface='org.freedesktop."
                                    "Notifications',member='Notify'"],
                   stdout=open(self.monitor_log, "wb"))  # noqa: SIM115
        wait_for(lambda: "NameLost" in self.monitor_log.read_text(errors="replace"), 30,
                 "dbus-monitor")
        dunstrc = self.run_dir / "dunstrc"
        dunstrc.write_text("[global]\n    history_length = 100\n    markup = full\n")
        self.spawn("dunst", ["dunst", "-config", str(dunstrc)])
        wait_for(self.notification_server_up, 30, "the notification server")
        if self.tray:
            self.spawn("trayer", ["trayer", "--edge", "top", "--align", "right",
                                  "--widthtype", "pixel", "--width", "200", "--heighttype",
                                  "pixel", "--height", "32", "--transparent", "false",
                                  "--SetDockType", "false"])
            wait_for(self.tray_up, 30, "the tray (trayer)")

    def notification_server_up(self) -> bool:
        out = subprocess.run(["dbus-send", "--session", "--print-reply",
                              "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus",
                              "org.freedesktop.DBus.NameHasOwner",
                              "string:org.freedesktop.Notifications"],
                             env=self.env, capture_output=True, text=True, timeout=5)
        return "boolean true" in out.stdout

    def tray_up(self) -> bool:
        from Xlib import X
        from Xlib import display as xdisplay

        d = xdisplay.Display(self.env["DISPLAY"])
        try:
            return d.get_selection_owner(d.intern_atom("_NET_SYSTEM_TRAY_S0")) != X.NONE
        finally:
            d.close()

    def stop(self) -> None:
        """End every process this session started, by its own process group, newest
        first, Xvfb last; and the xclip owners that our xclip calls forked."""
        for pgid in self._owners:
            _kill_group(pgid)
        self._owners.clear()
        xvfb = [p for n, p in self.procs if n == "Xvfb"]
        for name, proc in reversed(self.procs):
            if name != "Xvfb":
                _end(proc)
        for proc in xvfb:
            _end(proc)
        self.procs.clear()
        shutil.rmtree(self.run_dir, ignore_errors=True)

    # ------------------------------------------------------------ driving

    def window_with_selection(self, text: str) -> subprocess.Popen[bytes]:
        """A Tk window with ``text`` selected and focused (it owns PRIMARY)."""
        proc = self.spawn("tk", [sys.executable, "-c", TK_WINDOW, text],
                          stdout=subprocess.PIPE)
        assert proc.stdout is not None
        line = _readline(proc, 15)
        if b"READY" not in line:
            raise RuntimeError(f"the Tk window did not start: {line!r}")
        return proc

    def xterm_recording_input(self, out: Path) -> subprocess.Popen[bytes]:
        """An xterm whose program records every byte typed into it to ``out``; focused
        (the pointer rests on it: with no window manager, focus follows the pointer)."""
        proc = self.spawn("xterm", ["xterm", "-geometry", "80x10+50+100", "-title",
                                    "labrouter-test-xterm", "-e", sys.executable, "-c",
                                    STDIN_RECORDER, str(out)])
        wait_for(out.exists, 15, "the xterm's recorder")
        time.sleep(0.3)
        self.xdotool("mousemove", "200", "150")
        return proc

    def press(self, chord: str, hold: float = 0.15) -> None:
        """Press a chord like a person: modifiers down, key tapped, held, modifiers up."""
        parts = chord.split("+")
        mods, key = parts[:-1], parts[-1]
        if mods:
            self.xdotool("keydown", *mods)
        self.xdotool("key", key)
        time.sleep(hold)
        if mods:
            self.xdotool("keyup", *reversed(mods))

    def xdotool(self, *args: str) -> None:
        subprocess.run(["xdotool", *args], env=self.env, check=True, timeout=10)

    def set_clipboard(self, text: str, selection: str = "clipboard") -> None:
        """Own CLIPBOARD (or PRIMARY) with ``text`` through an xclip child we can end."""
        proc = subprocess.Popen(["xclip", "-selection", selection, "-i"], env=self.env,
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        proc.communicate(text.encode(), timeout=10)
        self._owners.append(proc.pid)  # its forked owner stays in this process group

    def get_clipboard(self, selection: str = "clipboard") -> str | None:
        out = subprocess.run(["xclip", "-selection", selection, "-o", "-t", "UTF8_STRING"],
                             env=self.env, capture_output=True, timeout=10)
        return out.stdout.decode() if out.returncode == 0 else None

    # ------------------------------------------------------------ observing

    def notify_calls(self) -> list[Notification]:
        return parse_notify_calls(self.monitor_log.read_text(errors="replace"))

    def wait_notification(self, pred: Callable[[Notification], bool], timeout: float,
                          since: int = 0) -> Notification:
        """The first Notify call after the first ``since`` ones that matches ``pred``."""
        found: list[Notification] = []

        def check() -> bool:
            found[:] = [n for n in self.notify_calls()[since:] if pred(n)]
            return bool(found)

        wait_for(check, timeout, "a matching notification")
        return found[0]

    def dunst_history(self) -> list[tuple[str, str]]:
        """(summary, body) of every notification dunst showed (closes the open ones)."""
        import json

        subprocess.run(["dunstctl", "close-all"], env=self.env, timeout=5, check=False)
        time.sleep(0.2)
        out = subprocess.run(["dunstctl", "history"], env=self.env, capture_output=True,
                             text=True, timeout=5)
        if out.returncode != 0:
            return []
        data = json.loads(out.stdout)["data"][0]
        return [(d["summary"]["data"], d["body"]["data"]) for d in reversed(data)]

    def labrouter_windows(self) -> list[dict[str, Any]]:
        """Every window labrouter shows (WM_CLASS "labrouter" or a labrouter menu), with its
        place on the screen, name and, for a menu level, the items it shows."""
        import json

        from Xlib import X, Xatom
        from Xlib import display as xdisplay

        d = xdisplay.Display(self.env["DISPLAY"])
        try:
            root = d.screen().root
            menu_atom = d.intern_atom("_LABROUTER_MENU")
            net_name = d.intern_atom("_NET_WM_NAME")
            out: list[dict[str, Any]] = []

            def walk(w: Any) -> None:
                for child in w.query_tree().children:
                    try:
                        cls = child.get_wm_class() or ("", "")
                        prop = child.get_full_property(menu_atom, X.AnyPropertyType)
                        attrs = child.get_attributes()
                    except Exception:
                        continue
                    if cls[0] == "labrouter" or prop is not None:
                        geo = child.get_geometry()
                        pos = root.translate_coords(child, 0, 0)
                        name = child.get_full_property(net_name, X.AnyPropertyType) or \
                            child.get_full_property(Xatom.WM_NAME, X.AnyPropertyType)
                        out.append({
                            "id": child.id, "x": pos.x, "y": pos.y, "w": geo.width,
                            "h": geo.height, "mapped": attrs.map_state == X.IsViewable,
                            "name": name.value.decode("utf-8", "replace") if name else "",
                            "menu": json.loads(prop.value) if prop is not None else None})
                    walk(child)

            walk(root)
            return out
        finally:
            d.close()

    def tray_icon(self) -> dict[str, Any] | None:
        return next((w for w in self.labrouter_windows() if w["menu"] is None
                     and w["name"].startswith("labrouter") and w["w"] <= 64), None)

    def open_menus(self) -> list[list[dict[str, Any]]]:
        return [w["menu"] for w in self.labrouter_windows()
                if w["menu"] is not None and w["mapped"]]

    def screenshot(self, path: Path, crop: tuple[int, int, int, int] | None = None) -> None:
        """A PNG of the root window (Pillow reads X directly; no ImageMagick needed)."""
        from PIL import ImageGrab

        img = ImageGrab.grab(xdisplay=self.env["DISPLAY"])
        if crop:
            img = img.crop(crop)
        img.save(path)


def _readline(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    import selectors

    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not sel.select(timeout):
            return b""
        return proc.stdout.readline()
    finally:
        sel.close()


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass


def _end(proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    if proc.poll() is None:
        _kill_group(proc.pid)  # each child was started in its own session: pgid == pid
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait(grace)
    else:
        _kill_group(proc.pid)  # its forked children (xclip owners) may live on
    for f in (proc.stdout, proc.stderr, proc.stdin):
        if f is not None:
            f.close()


# ------------------------------------------------------------------ docs/tray-menu.png

MENU_APP = r"""
import dataclasses, sys, threading, time
from labrouter.app.desktop.app import DesktopApp
from labrouter.app.desktop.parts import DesktopParts
from labrouter.app.settings import load_context
from labrouter.core.peers import ModelInfo, NodeState, Peer, ServerState
from labrouter.desktop.hotkey import NullHotkey
from labrouter.desktop.notify import LogNotifier, NotificationChain
from labrouter.desktop.clipboard import MemoryClipboard
from labrouter.desktop.keyboard import NullKeyboard
from labrouter.desktop.tray import RecentAnswer
from labrouter.desktop.tray.xembed import XembedTray
import asyncio

def server(name, models, loaded=(), up=True, flight=0):
    return ServerState(id="ollama", url="http://127.0.0.1:11434", up=up, in_flight=flight,
                       models=tuple(ModelInfo(m) for m in models), loaded=loaded)

class Daemon:
    loop = None
    control = None
    def snapshot(self):
        return [Peer("a", "mac-mini", is_self=True,
                     servers=(server("mac", ["qwen3:4b", "gemma3:4b"], ("qwen3:4b",)),)),
                Peer("b", "gpu-box", servers=(server("gpu", ["qwen3-coder:30b", "deepseek-r1:32b",
                     "qwen2.5vl:7b"], ("qwen3-coder:30b",), flight=1),), in_flight=1),
                Peer("c", "ubuntu-box", state=NodeState.DOWN,
                     servers=(server("u", ["llama3.2:3b"]),))]
    def pause(self, reason, until):
        pass
    def resume(self):
        pass
    def on_change(self, cb):
        pass
    def service_states(self):
        return []

async def ask(req, on_start=None, on_text=None):
    raise RuntimeError
loop = asyncio.new_event_loop()
threading.Thread(target=loop.run_forever, daemon=True).start()
d = Daemon(); d.loop = loop
tray = XembedTray()
parts = DesktopParts(tray, NullHotkey("<ctrl>+<alt>+<space>"), MemoryClipboard(), NullKeyboard(),
                     NotificationChain([LogNotifier()], env={}))
app = DesktopApp(load_context(None), d, ask, parts, wall=time.time)
app.recent.appendleft(RecentAnswer("def add(a, b): return a - b",
    "The function subtracts instead of adding: use a + b.", "qwen3-coder:30b on gpu-box (code)",
    time.time() - 120))
app.autostart_state = True
# a question running for 12 s: the menu shows it with its time and a Cancel item
from labrouter.app.desktop.app import Running
running = asyncio.run_coroutine_threadsafe(asyncio.sleep(3600), loop)
app.current = Running(1, None, time.monotonic() - 12, "qwen3-coder:30b on gpu-box (code)",
                      task=running)
app.busy_text = "Asking qwen3-coder:30b on gpu-box (code)…"
def ready():
    print("READY", tray.name, flush=True)
threading.Timer(1.5, ready).start()
threading.Timer(30, app.quit).start()
sys.exit(app.run())
"""


def tray_menu_screenshot(out: Path, python: str, open_submenu: bool = True) -> None:
    """Run a tray with a representative cluster on the X11 tray of our own (what a plain
    ``pip install`` gets), click it, open one machine's submenu and save a PNG of the
    menu. ``python -m tests.desktop_env screenshot docs/tray-menu.png``."""
    from PIL import Image

    with DesktopSession(tray=True) as s:
        env = dict(s.env, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"),
                   LABROUTER_HOME=str(s.run_dir / "home"))
        proc = s.spawn("menu-app", [python, "-c", MENU_APP], stdout=subprocess.PIPE, env=env)
        line = _readline(proc, 20)
        if b"READY xembed" not in line:
            raise RuntimeError(f"the tray did not start: {line!r}; see "
                               f"{s.run_dir / 'menu-app.log'}")
        wait_for(lambda: s.tray_icon() is not None, 10, "the tray icon")
        icon = s.tray_icon()
        assert icon is not None
        s.xdotool("mousemove", str(icon["x"] + icon["w"] // 2),
                  str(icon["y"] + icon["h"] // 2), "click", "1")
        wait_for(lambda: len(s.open_menus()) == 1, 5, "the menu")
        if open_submenu:
            (menu,) = s.open_menus()
            gpu = next(i for i in menu if i["text"].startswith("gpu-box"))
            s.xdotool("mousemove", str(gpu["x"] + 60), str(gpu["y"] + gpu["h"] // 2))
            wait_for(lambda: len(s.open_menus()) == 2, 5, "the submenu")
        time.sleep(0.3)
        full = s.run_dir / "full.png"
        s.screenshot(full)
        with Image.open(full) as im:
            box = _content_box(im.convert("RGB"))
            im.crop(box).save(out)


def _content_box(im: Any) -> tuple[int, int, int, int]:
    """The bounding box of everything that is not the black Xvfb root."""
    from PIL import ImageChops

    bg = im.getpixel((5, im.height - 5))
    from PIL import Image

    diff = ImageChops.difference(im, Image.new("RGB", im.size, bg))
    box = diff.getbbox() or (0, 0, im.width, im.height)
    pad = 6
    return (max(0, box[0] - pad), max(0, box[1] - pad), min(im.width, box[2] + pad),
            min(im.height, box[3] + pad))


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "screenshot":
        tray_menu_screenshot(Path(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3
                             else sys.executable)
        print(f"wrote {sys.argv[2]}")
    else:
        print("usage: python -m tests.desktop_env screenshot OUT.png [PYTHON]")
        raise SystemExit(2)
