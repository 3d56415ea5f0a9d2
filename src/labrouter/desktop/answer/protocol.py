"""The messages between the daemon side and the answer window's process: one JSON
object per line, ``{"type": ..., ...}``, UTF-8.

Owns the message dataclasses, :func:`encode` and :func:`decode`. The parent (the
controller, on the daemon's loop) sends :data:`ToWindow` messages on the child's stdin;
the window sends :data:`FromWindow` messages on its stdout. Unknown types and malformed
lines raise :class:`ProtocolError` with a message that says what was wrong, so both sides
can log and skip a bad line rather than die on it.

Pure standard library; imported by both sides, so it must not import tkinter or anything
from the daemon (``ask``, ``app``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

# ------------------------------------------------------------------ parent -> window


@dataclass(frozen=True)
class ActionChoice:
    """One button of the action row (explain, fix, ...)."""

    id: str
    label: str


@dataclass(frozen=True)
class Open:
    """Show the window (at once) for a new question."""

    type: ClassVar[str] = "open"
    status: str  # "Asking qwen3-coder:30b on gpu-box (code)…" or "Choosing a model…"
    question: str  # the selection, for the one-line preview
    actions: tuple[ActionChoice, ...] = ()  # empty: no action row (a typed question)
    action: str = ""  # the preselected action's id
    title: str = "labrouter"


@dataclass(frozen=True)
class Status:
    """The header line: who answers now ("Asking X on Y (code)…", "X failed; asking Y")."""

    type: ClassVar[str] = "status"
    text: str
    busy: bool = True  # a request is running (the elapsed time counts)


@dataclass(frozen=True)
class Reset:
    """Drop the current turn's answer text (a fallover restarts it, a retry replaces it);
    ``everything``: the whole conversation (another action starts it over)."""

    type: ClassVar[str] = "reset"
    everything: bool = False


@dataclass(frozen=True)
class Text:
    """More of the answer, as it streams."""

    type: ClassVar[str] = "text"
    text: str


@dataclass(frozen=True)
class Turn:
    """A follow-up question begins a new turn below the previous answer."""

    type: ClassVar[str] = "turn"
    question: str


@dataclass(frozen=True)
class Done:
    """The answer is complete (or cut short: ``note`` says why)."""

    type: ClassVar[str] = "done"
    status: str  # "qwen3-coder:30b on gpu-box · code · 5.2 s"
    note: str = ""  # "Cut off at 1024 tokens." / "Cancelled." / ""
    stronger: str = ""  # the model Retry would ask; "" disables Retry


@dataclass(frozen=True)
class Error:
    """The request failed; the text says so in plain words."""

    type: ClassVar[str] = "error"
    text: str
    stronger: str = ""


@dataclass(frozen=True)
class Query:
    """Ask the window what it shows (tests and the benchmark read it back)."""

    type: ClassVar[str] = "query"


@dataclass(frozen=True)
class Close:
    """Close the window (the parent is done with it)."""

    type: ClassVar[str] = "close"


# ------------------------------------------------------------------ window -> parent


@dataclass(frozen=True)
class Shown:
    """The window is mapped on screen (``window`` is the X window id where there is one)."""

    type: ClassVar[str] = "shown"
    window: int = 0


@dataclass(frozen=True)
class Painted:
    """The first text of a turn is on screen (for the benchmark's first-token figure)."""

    type: ClassVar[str] = "painted"
    chars: int = 0


@dataclass(frozen=True)
class CopyAnswer:
    type: ClassVar[str] = "copy"


@dataclass(frozen=True)
class ReplaceSelection:
    """Paste the answer over the selection. The window has already hidden itself, so
    the application that holds the selection has the focus back."""

    type: ClassVar[str] = "replace"


@dataclass(frozen=True)
class Retry:
    """Ask the same question again on the stronger model named in Done/Error."""

    type: ClassVar[str] = "retry"


@dataclass(frozen=True)
class Cancel:
    """Stop the running request (the window stays open)."""

    type: ClassVar[str] = "cancel"


@dataclass(frozen=True)
class FollowUp:
    type: ClassVar[str] = "followup"
    text: str


@dataclass(frozen=True)
class Action:
    """Ask again about the selection with another action (explain, fix, ...)."""

    type: ClassVar[str] = "action"
    id: str


@dataclass(frozen=True)
class Closed:
    """The window is gone (Esc, the close button, or the window manager): cancel."""

    type: ClassVar[str] = "closed"
    reason: str = "closed"


@dataclass(frozen=True)
class Contents:
    """The answer to Query: the text shown, the header, whether the window has the
    keyboard, and where its controls are (screen coordinates of their centres)."""

    type: ClassVar[str] = "contents"
    text: str = ""
    status: str = ""
    focused: bool = False
    controls: dict[str, list[int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Failed:
    """The window could not start (no display, Tk broken); the parent falls back."""

    type: ClassVar[str] = "failed"
    text: str


ToWindow = Open | Status | Reset | Text | Turn | Done | Error | Query | Close
FromWindow = (Shown | Painted | CopyAnswer | ReplaceSelection | Retry | Cancel | FollowUp
              | Action | Closed | Contents | Failed)
Message = ToWindow | FromWindow

_TYPES: dict[str, type[Any]] = {
    cls.type: cls for cls in (Open, Status, Reset, Text, Turn, Done, Error, Query, Close,
                              Shown, Painted, CopyAnswer, ReplaceSelection, Retry, Cancel,
                              FollowUp, Action, Closed, Contents, Failed)}


class ProtocolError(ValueError):
    """A line that is not a message of this protocol."""


def encode(msg: Message) -> bytes:
    """One line of JSON (``ensure_ascii`` keeps a lone surrogate from breaking UTF-8)."""
    body = {"type": msg.type, **asdict(msg)}
    return json.dumps(body, ensure_ascii=True, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes | str) -> Message:
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise ProtocolError(f"not JSON: {str(line)[:80]!r}") from exc
    if not isinstance(obj, dict):
        raise ProtocolError(f"not an object: {str(line)[:80]!r}")
    cls = _TYPES.get(obj.get("type"))  # type: ignore[arg-type]
    if cls is None:
        raise ProtocolError(f"unknown message type {obj.get('type')!r}")
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in obj:
            continue
        value = obj[f.name]
        if f.name == "actions":
            if not isinstance(value, list) or not all(
                    isinstance(a, dict) and isinstance(a.get("id"), str)
                    and isinstance(a.get("label"), str) for a in value):
                raise ProtocolError("actions must be a list of {id, label}")
            value = tuple(ActionChoice(a["id"], a["label"]) for a in value)
        elif f.name == "controls":
            if not isinstance(value, dict) or not all(
                    isinstance(v, list) and len(v) == 2 and all(isinstance(n, int) for n in v)
                    for v in value.values()):
                raise ProtocolError("controls must map names to [x, y]")
        elif not isinstance(value, _FIELD_TYPES.get(f.type if isinstance(f.type, str) else "",
                                                     object)):
            raise ProtocolError(f"{obj['type']}.{f.name}: wrong type {type(value).__name__}")
        kwargs[f.name] = value
    try:
        return cls(**kwargs)  # type: ignore[no-any-return]
    except TypeError as exc:
        raise ProtocolError(f"{obj['type']}: {exc}") from exc


# the annotations are strings (``from __future__ import annotations``)
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "str": str, "bool": bool, "int": int}

