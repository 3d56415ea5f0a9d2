"""What to ask about a bare selection: the instruction follows what the selection is.

Owns `selection_kind()` and `instruction_for()`. A bare selection (text sent by the hotkey
with no instruction) may be a question to answer, a request to carry out, code to explain,
an error to explain, a problem to solve, or prose to summarise; the route alone cannot tell
("How do I reverse a list in Python?" is on the code route and needs no "Explain this
code" in front of it). Pure functions, standard library only, used by the ask path.
"""

from __future__ import annotations

import re

from .classify import CODE, REASONING, VISION, Classification

QUESTION, REQUEST, CODE_KIND, ERROR, PROBLEM, PROSE, IMAGE = (
    "question", "request", "code", "error", "problem", "prose", "image",
)

# The instruction for each kind when the route has none configured. A question or a
# request is its own instruction: nothing is put in front of it.
DEFAULT_INSTRUCTIONS: dict[str, str] = {
    QUESTION: "",
    REQUEST: "",
    CODE_KIND: "Explain this code and point out any bugs:",
    ERROR: "Explain this error and how to fix it:",
    PROBLEM: "Work through this step by step:",
    PROSE: "Summarise this concisely:",
    IMAGE: "Describe this image:",
}

_QUESTION_START = re.compile(
    r"(?:who|what|when|where|why|how|which|whose|whom|is|are|was|were|do|does|did|can|could|"
    r"should|would|will|shall|may|might|has|have|had|am|isn't|aren't|don't|doesn't|"
    r"any idea|is there|are there)\b",
    re.IGNORECASE,
)
_REQUEST_START = re.compile(
    r"(?:please\s+|can you\s+|could you\s+|would you\s+)?(?:write|create|make|generate|"
    r"translate|summari[sz]e|rewrite|rephrase|paraphrase|explain|describe|list|give|tell|"
    r"suggest|draft|compose|fix|debug|refactor|implement|convert|find|solve|calculate|"
    r"compute|prove|show|compare|help|design|plan|edit|proofread|correct|improve|"
    r"classify|extract|name|define|outline)\b",
    re.IGNORECASE,
)
_ERROR_REASONS = ("a stack trace", "a compiler or runtime error")
_CODE_SHAPE_REASONS = (
    "fenced", "a Python def", "a class definition", "import/include", "JavaScript function",
    "fn/func", "C-style", "statements", "brackets and semicolons", "indented block",
    "SQL", "shell command line", "shell prompt", "Dockerfile", "YAML", "INI/TOML", "JSON",
    "a diff", "merge conflict", "HTML", "interactive session",
)
MAX_QUESTION_CHARS = 600


def selection_kind(c: Classification, text: str) -> str:
    """question | request | code | error | problem | prose | image."""
    if c.has_image:
        return IMAGE
    stripped = text.strip()
    reasons = " ".join(c.reasons)
    if any(r in reasons for r in _ERROR_REASONS) and not _has_code_shape(c, error_too=False):
        return ERROR
    if _has_code_shape(c):
        # Code with a question or request in words around it is that question or request.
        first = stripped.splitlines()[0] if stripped else ""
        if _REQUEST_START.match(first) or (first.endswith("?") and len(first) < 200):
            return QUESTION if first.endswith("?") else REQUEST
        return ERROR if any(r in reasons for r in _ERROR_REASONS) else CODE_KIND
    short = len(stripped) <= MAX_QUESTION_CHARS
    if short and (stripped.endswith("?") or _QUESTION_START.match(stripped)):
        return PROBLEM if c.route == REASONING and not stripped.endswith("?") else QUESTION
    if _REQUEST_START.match(stripped):
        return REQUEST
    if len(stripped.split()) <= 4 and not stripped.endswith((".", "!", ";", "}", ")")):
        return QUESTION  # a term or a name ("monad", "Treaty of Westphalia"): ask about it
    if c.route == REASONING:
        return PROBLEM
    if c.route == CODE:
        return CODE_KIND
    if c.route == VISION:
        return QUESTION
    return PROSE


def instruction_for(c: Classification, text: str, configured: str = "") -> str:
    """The instruction to put before a bare selection ("" for none).

    `configured` is the route's `instruction` from the config: it is used for the kinds that
    need an instruction (code, error, problem, prose, image); questions and requests get
    none whatever the route says, since the selection already says what it wants.
    """
    kind = selection_kind(c, text)
    if kind in (QUESTION, REQUEST):
        return ""
    if kind == ERROR:
        return DEFAULT_INSTRUCTIONS[ERROR]
    return configured or DEFAULT_INSTRUCTIONS[kind]


def _has_code_shape(c: Classification, error_too: bool = True) -> bool:
    reasons = " ".join(c.reasons)
    if any(r in reasons for r in _CODE_SHAPE_REASONS):
        return True
    return error_too and any(r in reasons for r in _ERROR_REASONS)
