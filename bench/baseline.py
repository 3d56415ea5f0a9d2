"""The seed article's keyword router, kept exactly as written, for the benchmarks only.

It is what labrouter's classifier is measured against (`bench/classifier.py`, `bench/day.py`);
nothing in the package uses it.
"""

from __future__ import annotations


def baseline_route(prompt: str) -> str:
    """The article's keyword router exactly as written (substring matching), for the
    benchmark only: it returns the route name instead of the article's model entry."""
    p = prompt.lower()
    if any(w in p for w in ["image", "screenshot", "picture", "see this", "what's on"]):
        return "vision"
    if any(
        w in p
        for w in [
            "function", "class", "debug", "refactor", "implement", "write code", "python",
            "javascript", "typescript", "api endpoint", "sql", "regex",
        ]
    ):
        return "code"
    if any(
        w in p
        for w in [
            "prove", "solve", "calculate", "math", "logic", "reason", "analyze", "compare",
            "evaluate",
        ]
    ):
        return "reasoning"
    return "quick"
