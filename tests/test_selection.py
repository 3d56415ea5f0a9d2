"""Bare selections get the instruction that fits what they are (`core/selection.py`), and
the policy's use of the classifier's calibrated confidence (`core/policy.resolve_route`).

Prompts written for these tests, not taken from the evaluation data.
"""

from __future__ import annotations

import pytest

from labrouter.core.classify import Classification, classify
from labrouter.core.policy import CHEAPER_BELOW, resolve_route
from labrouter.core.selection import DEFAULT_INSTRUCTIONS, instruction_for, selection_kind

SELECTIONS = [
    ("How do I reverse a list in Python?", "question", ""),
    ("What year did the Berlin Wall fall?", "question", ""),
    ("Translate this into German: the meeting moved to Friday.", "request", ""),
    ("Write a function that checks whether a number is prime.", "request", ""),
    ("def mean(xs):\n    total = 0\n    for x in xs:\n        total += x\n"
     "    return total / len(xs)\n", "code", DEFAULT_INSTRUCTIONS["code"]),
    ("Traceback (most recent call last):\n  File \"app.py\", line 9, in <module>\n"
     "    main()\nKeyError: 'user'", "error", DEFAULT_INSTRUCTIONS["error"]),
    ("((12 - 4) * 3 + 18 / 6) - 7 * 2 =", "problem", DEFAULT_INSTRUCTIONS["problem"]),
    ("The council met on Tuesday to discuss the new cycle lanes. Residents raised concerns "
     "about parking, while shop owners argued that more cyclists would bring more trade. "
     "A decision is expected next month after a public consultation.\n\nThe consultation "
     "will run online and in the library.", "prose", DEFAULT_INSTRUCTIONS["prose"]),
]


@pytest.mark.parametrize("text,kind,instruction", SELECTIONS)
def test_instruction_follows_what_the_selection_is(text: str, kind: str,
                                                   instruction: str) -> None:
    c = classify(text)
    assert selection_kind(c, text) == kind, (text, c)
    assert instruction_for(c, text) == instruction


def test_configured_instruction_is_used_for_kinds_that_need_one() -> None:
    text = "Dear all, the office will be closed on Monday for maintenance. " * 5
    c = classify(text)
    assert instruction_for(c, text, "Give me the gist:") == "Give me the gist:"
    q = "Why is the sky blue?"
    assert instruction_for(classify(q), q, "Give me the gist:") == ""


def test_an_image_selection_is_described() -> None:
    c = classify("", image=True)
    assert instruction_for(c, "") == DEFAULT_INSTRUCTIONS["image"]


# --------------------------------------------------------------------------- the policy
def _c(route: str, confidence: float, runner_up: str, probabilities: bool = True,
       image: bool = False) -> Classification:
    probs = {route: confidence, runner_up: 1 - confidence} if probabilities else {}
    return Classification(route=route, scores={route: 1.0}, confidence=confidence,
                          reasons=(), runner_up=runner_up, has_image=image,
                          probabilities=probs)


@pytest.mark.parametrize(
    "c,expected",
    [
        (_c("reasoning", 0.45, "quick"), "quick"),
        (_c("code", 0.40, "reasoning"), "reasoning"),
        (_c("code", 0.40, "vision"), "quick"),
        (_c("code", CHEAPER_BELOW + 0.01, "quick"), "code"),  # sure enough
        (_c("quick", 0.30, "code"), "quick"),  # already the cheapest
        (_c("reasoning", 0.30, "code"), "reasoning"),  # the runner-up is dearer
        (_c("vision", 0.30, "quick", image=True), "vision"),
        (_c("code", 0.30, "quick", probabilities=False), "code"),  # rules: not calibrated
    ],
)
def test_low_confidence_on_an_expensive_route_goes_cheaper(c: Classification,
                                                           expected: str) -> None:
    route, why = resolve_route(c, None, 0.0)
    assert route == expected, why
    if expected != c.route:
        assert "cheaper" in why


def test_the_user_asking_for_a_route_wins_over_confidence() -> None:
    route, why = resolve_route(_c("code", 0.3, "quick"), None, 0.0, forced="code")
    assert route == "code" and "asked for" in why
