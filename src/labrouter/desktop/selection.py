"""Capturing the user's selection (text, and an image on the clipboard) without losing
the clipboard.

Owns two small interfaces and their backends:

* :class:`Clipboard` (capability ``clipboard``): read and write the clipboard's text, read
  the X11/Wayland PRIMARY selection, read an image. Backends: ``xclip`` (X11), ``wl``
  (wl-clipboard on Wayland), ``pyperclip`` (macOS, Windows, other), ``null`` (in memory:
  headless and tests).
* :class:`Keyboard` (capability ``keyboard``): wait until the hotkey's modifiers are up,
  then simulate copy (Cmd+C on macOS, Ctrl+C elsewhere). Backends: ``pynput``, ``null``.

and :class:`SelectionCapture`, which combines them the way peer apps do (see
``../shared/research/desktop.md`` §1.8): PRIMARY first where it exists; else save the
clipboard, put a sentinel on it, wait for the modifiers to be released, simulate copy, poll
for a change (bounded, retried once with a longer wait), read, and put the previous content
back in a ``finally``. A capture that finds nothing returns an empty text: the caller
notifies "nothing selected" and sends no request. What is put back is the previous
clipboard's raw bytes in one format (:class:`Saved`): text that is not UTF-8 and an image
(a screenshot) survive on X11 and Wayland; a second format of the same copy (the HTML next
to the text) does not. pyperclip keeps text, and an image on macOS (osascript); where an
image cannot be put back (Windows) the copy is not simulated at all and the image is asked
about alone, so that the screenshot is not lost.

``read_selection_for_cli()`` is the Wayland path of ``labrouter ask --selection``.

Threading: every method here blocks (subprocesses, sleeps up to about 1 s); call it from a
worker thread (the app uses ``asyncio.to_thread``), never from the tray's main thread, the
event loop itself or pynput's listener thread. Desktop libraries are imported lazily.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .backends import BackendSpec, Choice, choose, has_x11, is_wayland

log = logging.getLogger(__name__)

_SUBPROCESS_TIMEOUT = 2.0


# ------------------------------------------------------------------ interfaces


@dataclass(frozen=True)
class Saved:
    """The clipboard's content in one format, byte for byte, to be put back later."""

    kind: str  # an X target / MIME type ("UTF8_STRING", "image/png"), or "text"
    data: bytes


class Clipboard(Protocol):
    """The system clipboard. ``None`` from a read means "no text there"."""

    name: str

    def save(self) -> Saved | None:
        """The content in its best format (text first, then an image), None when empty."""
        ...

    def put_back(self, saved: Saved | None) -> None:
        """Make the clipboard hold ``saved`` again (empty text for None)."""
        ...

    def read_text(self) -> str | None: ...

    def write_text(self, text: str) -> None: ...

    def read_primary(self) -> str | None:
        """The PRIMARY selection (X11/Wayland), ``None`` where there is no such thing."""
        ...

    def read_image(self) -> bytes | None:
        """A PNG when the clipboard holds an image, else ``None``."""
        ...

    @property
    def has_primary(self) -> bool: ...


class Keyboard(Protocol):
    """Simulated keystrokes."""

    name: str

    def wait_modifiers_released(self, timeout: float = 2.0) -> bool:
        """Block until no modifier is held (or ``timeout``); True when they were released."""
        ...

    def send_copy(self) -> None: ...


# ------------------------------------------------------------------ clipboards


@dataclass
class MemoryClipboard:
    """The null clipboard: an in-process value. Also the fake in tests."""

    text: str | None = None
    primary: str | None = None
    image: bytes | None = None
    supports_primary: bool = False
    writes: list[str] = field(default_factory=list)
    name: str = "null"

    def read_text(self) -> str | None:
        return self.text

    def write_text(self, text: str) -> None:
        self.writes.append(text)
        self.text = text
        self.image = None

    def save(self) -> Saved | None:
        text = self.read_text()
        if text is not None:
            return Saved("text", text.encode("utf-8", "surrogatepass"))
        return Saved("image/png", self.image) if self.image is not None else None

    def put_back(self, saved: Saved | None) -> None:
        if saved is not None and saved.kind == "image/png":
            self.writes.append("<image>")
            self.text, self.image = None, saved.data
            return
        self.write_text(saved.data.decode("utf-8", "surrogatepass") if saved else "")

    def read_primary(self) -> str | None:
        return self.primary if self.supports_primary else None

    def read_image(self) -> bytes | None:
        return self.image

    @property
    def has_primary(self) -> bool:
        return self.supports_primary


def _run(args: list[str], input_: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(args, input=input_, capture_output=True, timeout=_SUBPROCESS_TIMEOUT,
                          check=False)


# Which one format of the previous clipboard is kept, best first: text as the owner offers
# it (so bytes that are not UTF-8 come back unchanged), then a screenshot.
X11_FORMATS = ("UTF8_STRING", "image/png", "text/plain;charset=utf-8", "STRING", "TEXT",
               "text/plain")
WAYLAND_FORMATS = ("text/plain;charset=utf-8", "UTF8_STRING", "image/png", "text/plain",
                   "STRING", "TEXT")


def _best_format(offered: list[str], preference: tuple[str, ...]) -> str | None:
    return next((kind for kind in preference if kind in offered), None)


class XclipClipboard:
    """X11 through the ``xclip`` tool (what pyperclip uses there too).

    Writing forks an ``xclip`` child that owns the selection until someone else takes it;
    its output is sent to /dev/null so that we never wait for it.
    """

    name = "xclip"
    has_primary = True

    def __init__(self, binary: str = "xclip") -> None:
        self.binary = binary

    def _read(self, selection: str, target: str = "UTF8_STRING") -> bytes | None:
        try:
            proc = _run([self.binary, "-selection", selection, "-o", "-t", target])
        except (OSError, subprocess.SubprocessError) as exc:
            log.debug("xclip read %s failed: %s", selection, exc)
            return None
        return proc.stdout if proc.returncode == 0 else None

    def read_text(self) -> str | None:
        data = self._read("clipboard")
        return None if data is None else data.decode("utf-8", "replace")

    def read_primary(self) -> str | None:
        data = self._read("primary")
        return None if data is None else data.decode("utf-8", "replace")

    def write_text(self, text: str) -> None:
        subprocess.run([self.binary, "-selection", "clipboard", "-i"],
                       input=text.encode("utf-8"), stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=_SUBPROCESS_TIMEOUT, check=False)

    def read_image(self) -> bytes | None:
        targets = self._read("clipboard", "TARGETS")
        if not targets or b"image/png" not in targets.split():
            return None
        return self._read("clipboard", "image/png")

    def save(self) -> Saved | None:
        targets = self._read("clipboard", "TARGETS")
        offered = targets.decode("latin-1").split() if targets else []
        kind = _best_format(offered, X11_FORMATS)
        if kind is None:
            return None
        data = self._read("clipboard", kind)
        return None if data is None else Saved(kind, data)

    def put_back(self, saved: Saved | None) -> None:
        kind, data = (saved.kind, saved.data) if saved else ("UTF8_STRING", b"")
        if kind == "text":
            kind = "UTF8_STRING"
        subprocess.run([self.binary, "-selection", "clipboard", "-t", kind, "-i"],
                       input=data, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=_SUBPROCESS_TIMEOUT, check=False)


class WlClipboard:
    """Wayland through wl-clipboard (``wl-paste``, ``wl-copy``)."""

    name = "wl"
    has_primary = True

    def _paste(self, *extra: str) -> bytes | None:
        try:
            proc = _run(["wl-paste", "--no-newline", *extra])
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout if proc.returncode == 0 else None

    def read_text(self) -> str | None:
        data = self._paste()
        return None if data is None else data.decode("utf-8", "replace")

    def read_primary(self) -> str | None:
        data = self._paste("--primary")
        return None if data is None else data.decode("utf-8", "replace")

    def write_text(self, text: str) -> None:
        subprocess.run(["wl-copy"], input=text.encode("utf-8"), stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=_SUBPROCESS_TIMEOUT, check=False)

    def read_image(self) -> bytes | None:
        try:
            types = _run(["wl-paste", "--list-types"])
        except (OSError, subprocess.SubprocessError):
            return None
        if types.returncode != 0 or b"image/png" not in types.stdout.split():
            return None
        return self._paste("--type", "image/png")

    def save(self) -> Saved | None:
        try:
            types = _run(["wl-paste", "--list-types"])
        except (OSError, subprocess.SubprocessError):
            return None
        offered = types.stdout.decode("latin-1").split("\n") if types.returncode == 0 else []
        kind = _best_format([t.strip() for t in offered], WAYLAND_FORMATS)
        if kind is None:
            return None
        # no --no-newline here: the bytes must come back exactly as they were
        try:
            proc = _run(["wl-paste", "--type", kind])
        except (OSError, subprocess.SubprocessError):
            return None
        return Saved(kind, proc.stdout) if proc.returncode == 0 else None

    def put_back(self, saved: Saved | None) -> None:
        kind, data = (saved.kind, saved.data) if saved else ("text/plain;charset=utf-8", b"")
        if kind == "text":
            kind = "text/plain;charset=utf-8"
        subprocess.run(["wl-copy", "--type", kind], input=data, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=_SUBPROCESS_TIMEOUT, check=False)


class PyperclipClipboard:
    """pyperclip for text (macOS: AppKit/pbcopy; Windows: the Win32 clipboard);
    Pillow's ImageGrab for images where the OS supports it."""

    name = "pyperclip"

    def __init__(self) -> None:
        import pyperclip

        self._pc = pyperclip

    @property
    def has_primary(self) -> bool:
        return False

    def read_text(self) -> str | None:
        for attempt in range(3):  # Windows: OpenClipboard is busy while another app holds it
            try:
                text = self._pc.paste()
                return text if text else None
            except self._pc.PyperclipException as exc:
                log.debug("clipboard read failed (attempt %d): %s", attempt + 1, exc)
                time.sleep(0.05 * (attempt + 1))
        return None

    def write_text(self, text: str) -> None:
        for attempt in range(3):
            try:
                self._pc.copy(text)
                return
            except self._pc.PyperclipException as exc:
                log.debug("clipboard write failed (attempt %d): %s", attempt + 1, exc)
                time.sleep(0.05 * (attempt + 1))

    def read_primary(self) -> str | None:
        return None

    @property
    def restores_images(self) -> bool:
        return sys.platform == "darwin"  # through osascript; Windows: not yet

    def save(self) -> Saved | None:
        text = self.read_text()
        if text is not None:
            return Saved("text", text.encode("utf-8", "surrogatepass"))
        image = self.read_image()  # a screenshot: kept so that it is not lost
        return Saved("image/png", image) if image is not None else None

    def put_back(self, saved: Saved | None) -> None:
        if saved is not None and saved.kind == "image/png":
            if not self.restores_images:
                raise NotImplementedError("cannot put an image back on this clipboard")
            import tempfile

            with tempfile.NamedTemporaryFile(suffix=".png") as f:
                f.write(saved.data)
                f.flush()
                script = f'set the clipboard to (read (POSIX file "{f.name}") as «class PNGf»)'
                subprocess.run(["osascript", "-e", script], capture_output=True,
                               timeout=_SUBPROCESS_TIMEOUT, check=True)
            return
        self.write_text(saved.data.decode("utf-8", "surrogatepass") if saved else "")

    def read_image(self) -> bytes | None:
        if sys.platform not in ("darwin", "win32"):
            return None
        try:
            from PIL import Image, ImageGrab

            img = ImageGrab.grabclipboard()
        except Exception as exc:  # Pillow raises various errors per OS
            log.debug("no image on the clipboard: %s", exc)
            return None
        if not isinstance(img, Image.Image):
            return None
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        return buf.getvalue()


def clipboard_specs(env: Mapping[str, str] | None = None) -> list[BackendSpec[Clipboard]]:
    env = os.environ if env is None else env

    def xclip_probe() -> str | None:
        if not sys.platform.startswith("linux"):
            return "only on Linux"
        if not has_x11(env):
            return "no X11 display (DISPLAY is not set)"
        if not shutil.which("xclip"):
            return "the xclip program is not installed (apt install xclip)"
        return None

    def wl_probe() -> str | None:
        if not sys.platform.startswith("linux"):
            return "only on Linux"
        if not is_wayland(env) or not env.get("WAYLAND_DISPLAY"):
            return "not a Wayland session"
        if not (shutil.which("wl-paste") and shutil.which("wl-copy")):
            return "wl-clipboard is not installed (apt install wl-clipboard)"
        return None

    def pyperclip_probe() -> str | None:
        import importlib.util

        if importlib.util.find_spec("pyperclip") is None:
            return "pyperclip is not installed"
        if sys.platform.startswith("linux") and not (shutil.which("xclip") or
                                                     shutil.which("xsel")):
            return "pyperclip needs xclip or xsel on Linux"
        return None

    # on a Wayland session with XWayland both DISPLAY and WAYLAND_DISPLAY are set: wl first
    specs: list[BackendSpec[Clipboard]] = []
    if is_wayland(env):
        specs.append(BackendSpec("wl", wl_probe, WlClipboard))
    specs.append(BackendSpec("xclip", xclip_probe, XclipClipboard))
    if not is_wayland(env):
        specs.append(BackendSpec("wl", wl_probe, WlClipboard))
    specs.append(BackendSpec("pyperclip", pyperclip_probe, PyperclipClipboard))
    return specs


def choose_clipboard(env: Mapping[str, str] | None = None) -> Choice[Clipboard]:
    return choose("clipboard", clipboard_specs(env),
                  BackendSpec("null", lambda: None, MemoryClipboard), env)


# ------------------------------------------------------------------ keyboards


@dataclass
class NullKeyboard:
    """No keystrokes at all. ``on_copy`` lets a test play the focused application."""

    on_copy: Callable[[], None] | None = None
    copies: int = 0
    name: str = "null"

    def wait_modifiers_released(self, timeout: float = 2.0) -> bool:  # noqa: ARG002
        return True

    def send_copy(self) -> None:
        self.copies += 1
        if self.on_copy is not None:
            self.on_copy()


_X11_MODIFIERS = ("Control_L", "Control_R", "Alt_L", "Alt_R", "Shift_L", "Shift_R",
                  "Super_L", "Super_R", "Meta_L", "Meta_R", "ISO_Level3_Shift")


class PynputKeyboard:
    """Copy through pynput's Controller.

    Waiting for the modifiers matters: the hotkey fires while its Ctrl+Alt are still down,
    and a Ctrl+C sent then arrives as Ctrl+Alt+C (pynput #261). On X11 the real key state
    is read with XQueryKeymap; elsewhere ``modifiers_down`` (given by the hotkey listener,
    which sees every key) is polled, and what is still held at the timeout is released.
    """

    name = "pynput"

    def __init__(self, modifiers_down: Callable[[], bool] | None = None,
                 platform: str | None = None) -> None:
        from pynput import keyboard

        self._kb = keyboard
        self._ctl: Any = keyboard.Controller()
        self.platform = platform or sys.platform
        self.modifiers_down = modifiers_down
        self._xdisplay = None
        self._xcodes: list[int] = []
        if self.platform.startswith("linux") and os.environ.get("DISPLAY"):
            try:
                from Xlib import XK
                from Xlib import display as xdisplay

                self._xdisplay = xdisplay.Display()
                for name in _X11_MODIFIERS:
                    code = self._xdisplay.keysym_to_keycode(XK.string_to_keysym(name))
                    if code:
                        self._xcodes.append(code)
            except Exception as exc:
                log.debug("XQueryKeymap unavailable: %s", exc)
                self._xdisplay = None

    def _held(self) -> bool:
        if self._xdisplay is not None:
            km = self._xdisplay.query_keymap()
            return any(km[c // 8] & (1 << (c % 8)) for c in self._xcodes)
        if self.modifiers_down is not None:
            return self.modifiers_down()
        return False

    def wait_modifiers_released(self, timeout: float = 2.0) -> bool:
        deadline = time.monotonic() + timeout
        while self._held():
            if time.monotonic() >= deadline:
                if self._xdisplay is None:  # release what the OS still thinks is held
                    k = self._kb.Key
                    for key in (k.ctrl, k.alt, k.shift, k.cmd):
                        try:
                            self._ctl.release(key)
                        except Exception:
                            pass
                return False
            time.sleep(0.01)
        return True

    def send_copy(self) -> None:
        mod = self._kb.Key.cmd if self.platform == "darwin" else self._kb.Key.ctrl
        with self._ctl.pressed(mod):
            self._ctl.tap("c")

    def close(self) -> None:
        """Release the X connections (ours and the Controller's) while X is still there."""
        if self._xdisplay is not None:
            self._xdisplay.close()
            self._xdisplay = None
        self._ctl = None


def keyboard_specs(env: Mapping[str, str] | None = None,
                   modifiers_down: Callable[[], bool] | None = None
                   ) -> list[BackendSpec[Keyboard]]:
    env = os.environ if env is None else env

    def probe() -> str | None:
        import importlib.util

        if importlib.util.find_spec("pynput") is None:
            return "pynput is not installed"
        if sys.platform.startswith("linux"):
            if is_wayland(env):
                return "Wayland: pynput cannot send keys to other applications"
            if not env.get("DISPLAY"):
                return "no X11 display (DISPLAY is not set)"
        if sys.platform == "darwin":
            from .hotkey import macos_permission_problems

            problems = [p for p in macos_permission_problems() if "Accessibility" in p]
            if problems:
                return problems[0]
        return None

    return [BackendSpec("pynput", probe, lambda: PynputKeyboard(modifiers_down))]


def choose_keyboard(env: Mapping[str, str] | None = None,
                    modifiers_down: Callable[[], bool] | None = None) -> Choice[Keyboard]:
    return choose("keyboard", keyboard_specs(env, modifiers_down),
                  BackendSpec("null", lambda: None, NullKeyboard), env)


# ------------------------------------------------------------------ capture


@dataclass(frozen=True)
class Capture:
    """What the hotkey found: the selected text (may be empty) and a clipboard image."""

    text: str
    image: bytes | None = None
    method: str = "none"  # "primary" | "copy" | "none"
    restored: bool = True  # the user's clipboard text is what it was before
    duration: float = 0.0  # seconds spent capturing

    @property
    def empty(self) -> bool:
        return not self.text.strip() and self.image is None


class SelectionCapture:
    """The capture sequence; see the module docstring. Blocking; one call at a time."""

    def __init__(self, clipboard: Clipboard, keyboard: Keyboard, *, use_primary: bool = True,
                 waits: tuple[float, ...] = (0.25, 0.5), poll: float = 0.02,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clipboard = clipboard
        self.keyboard = keyboard
        self.use_primary = use_primary
        self.waits = waits  # how long to wait for the clipboard to change, per attempt
        self.poll = poll
        self.sleep = sleep
        self.clock = clock

    def capture(self) -> Capture:
        start = self.clock()
        image = self.clipboard.read_image()
        if self.use_primary and self.clipboard.has_primary:
            primary = self.clipboard.read_primary()
            if primary and primary.strip():
                return Capture(primary, image, "primary", True, self.clock() - start)
        text, restored = self._copy_selection()
        method = "copy" if text.strip() else "none"
        return Capture(text, image, method, restored, self.clock() - start)

    def _copy_selection(self) -> tuple[str, bool]:
        """Ctrl+C/Cmd+C with the clipboard saved and restored; ("", ...) when nothing."""
        saved = self.clipboard.save()
        if saved is not None and saved.kind == "image/png" and not getattr(
                self.clipboard, "restores_images", True):
            # the screenshot could not be put back: keep it, and ask about it alone
            log.info("an image is on the clipboard and %s cannot restore one: not copying",
                     self.clipboard.name)
            return "", True
        sentinel = f"labrouter-capture-{uuid.uuid4().hex}"
        captured = ""
        try:
            self.clipboard.write_text(sentinel)
            # xclip/wl-copy return before their forked child owns the clipboard: until the
            # sentinel is visible, the old content would be mistaken for the selection
            if self._wait_for(lambda: self.clipboard.read_text() == sentinel):
                self.keyboard.wait_modifiers_released()
                for wait in self.waits:
                    self.keyboard.send_copy()
                    got = self._poll_change(sentinel, wait)
                    if got is not None:
                        captured = got
                        break
            else:
                log.warning("the clipboard did not take our marker; not copying")
        finally:
            restored = self._restore(saved)
        return captured, restored

    def _poll_change(self, sentinel: str, wait: float) -> str | None:
        deadline = self.clock() + wait
        while True:
            now_text = self.clipboard.read_text()
            if now_text is not None and now_text != sentinel:
                return now_text
            if self.clock() >= deadline:
                return None
            self.sleep(self.poll)

    def _wait_for(self, cond: Callable[[], bool]) -> bool:
        deadline = self.clock() + self.waits[-1]
        while not cond():
            if self.clock() >= deadline:
                return False
            self.sleep(self.poll)
        return True

    def _restore(self, saved: Saved | None) -> bool:
        try:
            self.clipboard.put_back(saved)
            # compared byte for byte, waiting for the new owner as above
            if saved is None:  # it was empty: our empty text stands for that
                return self._wait_for(lambda: not self.clipboard.read_text())
            return self._wait_for(lambda: self.clipboard.save() == saved)
        except Exception:
            log.warning("could not put the previous clipboard back", exc_info=True)
            return False


# ------------------------------------------------------------------ CLI


def read_selection_for_cli(env: Mapping[str, str] | None = None) -> str:
    """The current selection for `labrouter ask --selection` (no keystrokes, no restore).

    Wayland: ``wl-paste --primary``, then the clipboard; X11: PRIMARY, then CLIPBOARD;
    elsewhere the clipboard. Returns "" when there is nothing.
    """
    env = os.environ if env is None else env
    choice = choose_clipboard(env)
    cb = choice.backend
    if cb.has_primary:
        primary = cb.read_primary()
        if primary and primary.strip():
            return primary
    return cb.read_text() or ""
