"""Capturing the user's selection (text, and an image on the clipboard) without losing
the clipboard.

Owns :class:`SelectionCapture`, which combines a :class:`~.clipboard.Clipboard` and a
:class:`~.keyboard.Keyboard` the way peer apps do (see ``../shared/research/desktop.md``
§1.8): PRIMARY first where it exists; else save the clipboard, put a sentinel on it, wait
for the modifiers to be released, simulate copy, poll for a change (bounded, retried once
with a longer wait), read, and put the previous content back in a ``finally``. A capture
that finds nothing returns an empty text: the caller notifies "nothing selected" and sends
no request. What is put back is the previous clipboard's raw bytes in one format
(:class:`~.clipboard.Saved`): text that is not UTF-8 and an image (a screenshot) survive on
X11 and Wayland; a second format of the same copy (the HTML next to the text) does not.
Where an image cannot be put back (Windows) the copy is not simulated at all and the image
is asked about alone, so that the screenshot is not lost.

``read_selection_for_cli()`` is the Wayland path of ``labrouter ask --selection``.

Threading: every method here blocks (subprocesses, sleeps up to about 1 s); call it from a
worker thread (the app uses ``asyncio.to_thread``), never from the tray's main thread, the
event loop itself or pynput's listener thread. Desktop libraries are imported lazily by
the backends.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .clipboard import Clipboard, Saved, choose_clipboard
from .keyboard import Keyboard

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ capture


@dataclass(frozen=True)
class Capture:
    """What the hotkey found: the selected text (may be empty) and a clipboard image."""

    text: str
    image: bytes | None = None
    method: str = "none"  # "primary" | "copy" | "none"
    restored: bool = True  # the user's clipboard text is what it was before
    duration: float = 0.0  # seconds spent capturing
    #: which selection PRIMARY was (its owner and the time it was taken, X11), "" where
    #: unknown: the same text with the same stamp was not selected again
    stamp: str = ""

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
                stamp_of = getattr(self.clipboard, "primary_stamp", None)
                stamp = stamp_of() if stamp_of is not None else ""
                return Capture(primary, image, "primary", True, self.clock() - start,
                               stamp or "")
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
