"""What to do with a bare selection: explain, fix, summarise, translate or answer it.

Owns :data:`ACTIONS` (each with the instruction put before the selection) and
:func:`preselect`, which picks the action that fits what the classifier saw: code is
explained, a question is answered, prose is summarised. The answer window shows them as a
row with the preselected one marked; choosing another asks again.

Pure standard library plus ``core`` (the classification); no Tk, no daemon.
"""

from __future__ import annotations

import locale
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ...core.classify import Classification


@dataclass(frozen=True)
class SelectionAction:
    id: str
    label: str
    instruction: str  # "" asks the selection as it is


ACTIONS: tuple[SelectionAction, ...] = (
    SelectionAction("explain", "Explain", "Explain this and point out any mistakes:"),
    SelectionAction("fix", "Fix", "Fix the mistakes in this and give the corrected version, "
                                  "then say briefly what you changed:"),
    SelectionAction("summarise", "Summarise", "Summarise this concisely:"),
    SelectionAction("translate", "Translate", "Translate this into {language}:"),
    SelectionAction("answer", "Answer", ""),
)
BY_ID: Mapping[str, SelectionAction] = {a.id: a for a in ACTIONS}

_QUESTION = re.compile(
    r"(\?\s*$)|^\s*(who|what|when|where|why|how|which|is|are|can|could|should|does|do|"
    r"did|will|would|explain|write|give|list|tell|compare)\b", re.I)
_LANGUAGES = {"de": "German", "fr": "French", "es": "Spanish", "it": "Italian",
              "pt": "Portuguese", "nl": "Dutch", "sv": "Swedish", "da": "Danish",
              "nb": "Norwegian", "fi": "Finnish", "pl": "Polish", "cs": "Czech",
              "ru": "Russian", "uk": "Ukrainian", "tr": "Turkish", "el": "Greek",
              "ja": "Japanese", "zh": "Chinese", "ko": "Korean", "ar": "Arabic",
              "he": "Hebrew", "hi": "Hindi"}


def user_language(env: Mapping[str, str] | None = None) -> str:
    """The language of the user's locale, by name ("German"); English when unknown."""
    env = os.environ if env is None else env
    code = ""
    for key in ("LC_ALL", "LC_MESSAGES", "LANG"):
        if env.get(key):
            code = env[key]
            break
    if not code:
        try:
            code = locale.getlocale()[0] or ""
        except ValueError:
            code = ""
    return _LANGUAGES.get(code.split("_")[0].split(".")[0].lower(), "English")


def instruction_for(action_id: str, env: Mapping[str, str] | None = None) -> str | None:
    """The instruction for an action (None for "answer": the selection is the prompt)."""
    action = BY_ID.get(action_id)
    if action is None:
        raise ValueError(f"unknown action {action_id!r}; known: {', '.join(BY_ID)}")
    if not action.instruction:
        return None
    return action.instruction.format(language=user_language(env))


def action_of(instruction: str, c: Classification) -> str:
    """The action a request about a selection amounts to, when the desktop chose its
    instruction itself (from the route): none is an answer; otherwise by the route."""
    if not instruction.strip():
        return "answer"
    if c.route == "quick":
        return "summarise"
    if c.route == "reasoning":
        return "answer"
    return "explain"


def preselect(text: str, c: Classification) -> str:
    """The action that fits the selection as the classifier saw it."""
    if c.route == "code":
        return "explain"
    words = len(text.split())
    question = bool(_QUESTION.search(text.strip()[:300])) or bool(
        re.search(r"\?\s*$", text.strip()))
    if c.route in ("reasoning", "vision") or question:
        return "answer"
    if words >= 25:
        return "summarise"
    return "explain"
