"""The words of the desktop, as pure functions: which instruction goes in front of a
selection, how a failure reads to someone who is not an engineer, how long a request has
run. Tested without a desktop; imports only ``core``.
"""

from __future__ import annotations

import re

from ...core.errors import AllFailed, LabrouterError, NoCandidate

#: a selection that is itself a request: a question, or an order to the model
_REQUEST = re.compile(
    r"^\s*(what|why|how|when|where|who|which|whose|is|are|can|could|should|would|will|do|"
    r"does|did|explain|write|translate|summari[sz]e|fix|make|give|list|tell|show|describe|"
    r"compare|find|convert|create|generate|suggest|rewrite|help)\b", re.I)


def is_request(text: str) -> bool:
    """Whether the selected text asks something by itself (then no instruction goes in
    front of it: "Summarise this concisely:" before a question gets a summary of the
    question, not its answer)."""
    t = text.strip()
    if not t:
        return False
    last_line = t.splitlines()[-1].strip()
    return last_line.endswith("?") or bool(_REQUEST.match(t))


def instruction_for(text: str, classified_instruction: str, has_image: bool) -> str:
    """The instruction for a bare selection, from what the selection is (its
    classification's route), never from whichever route's model ends up serving it:
    nothing for a question or an order; the classified route's instruction otherwise
    (code: explained and checked; prose: summarised; an image alone: described)."""
    if is_request(text):
        return ""
    if not text.strip() and not has_image:
        return ""
    return classified_instruction


def elapsed_text(seconds: float) -> str:
    s = int(max(seconds, 0))
    return f"{s} s" if s < 60 else f"{s // 60} min {s % 60:02d} s"


def _plain_reason(reason: str) -> str:
    r = reason.lower()
    if any(w in r for w in ("cannot reach", "connection attempts failed", "connection refused",
                            "unreachable", "name or service not known", "connect")):
        return "could not be reached (is its model server running?)"
    if "timed out" in r or "timeout" in r or "too long" in r:
        return "took too long to answer"
    if "not found" in r or "no such model" in r or "pull" in r:
        return "does not have that model"
    if "busy" in r or "429" in r or "refus" in r or "paused" in r:
        return "was busy"
    if "weak" in r or "confused" in r or "short" in r:
        return "gave an answer too weak to keep"
    return "failed"


def plain_failure(exc: BaseException) -> str:
    """What went wrong, for a notification: what happened, each machine once, and what
    to do; no stack of "x: x: cannot reach y: ..." repeats."""
    if isinstance(exc, AllFailed):
        lines = ["No model could answer."]
        seen: set[str] = set()
        for who, why in exc.attempts:
            line = f"{who} {_plain_reason(why)}"
            if line not in seen:
                seen.add(line)
                lines.append(line)
        lines.append("Open the tray menu to see which machines are up.")
        return "\n".join(lines[:6])
    if isinstance(exc, NoCandidate):
        return ("No machine with a model for this is up right now. Start Ollama (or your "
                "model server) on one of your machines, then try again.")
    if isinstance(exc, LabrouterError):
        return exc.message[:1].upper() + exc.message[1:] + "."
    return "Something went wrong inside labrouter; the log has the details."
