"""Settling an unsure classification by asking the quick model: the question and the reply.

Owns ``settle_choices`` (whether a classification is unsure enough to ask, and between
which routes), ``settle_question`` (the short routing question sent to the model: the
candidate routes with what each means, and the prompt, clipped) and ``parse_reply`` (the
strict reading of the model's one-word reply). Anything but one of the offered route names,
alone, is junk and means "keep the classifier's decision".

The asking itself (a live quick model, a tight deadline) is ``ask.py``'s; this module only
decides and reads. Standard library only: no sockets, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .classify import CODE, QUICK, REASONING, VISION, Classification

#: what each route means, in the words the model is shown; the order is the order the
#: choices are listed in (fixed, so that the classifier's ranking does not leak into it)
MEANINGS: dict[str, str] = {
    QUICK: "a question of fact, a definition, advice, chat, or writing, summarising, "
           "translating or rewriting text",
    CODE: "programming: writing, fixing or explaining code, shell commands, SQL, "
          "spreadsheet formulas, git and other software tools",
    REASONING: "maths, a word problem, a logic puzzle, probability, or anything that has "
               "to be worked out step by step",
    VISION: "a question about a picture, photo, screenshot or camera image",
}

#: how much of the prompt the model is shown: the head and the tail (a long prompt's
#: question is often at its end), so the question stays short and quick to read
HEAD_CHARS = 1200
TAIL_CHARS = 300

SYSTEM = ("You sort requests for a router. Reply with exactly one word, the name of the "
          "kind of request, and nothing else.")

_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_TRIM = " \t\r\n.,;:!?\"'`*_()[]<>{}"


def settle_choices(c: Classification, threshold: float, *, forced: bool = False,
                   routes: Sequence[str] = (QUICK, CODE, REASONING, VISION)
                   ) -> tuple[str, ...]:
    """The routes to ask the quick model to choose between, or () to keep the decision.

    Asked only when the calibrated confidence is below ``threshold``, no route was asked
    for (``forced``: a route or a model), no image is attached (an image decides), and the
    classifier's two best routes are both built-in and configured (``routes``): the
    choice is between those two, which hold the right route for most unsure prompts.
    """
    if forced or c.has_image or threshold <= 0 or c.confidence >= threshold:
        return ()
    if not c.probabilities:
        return ()  # the rules alone: no calibrated confidence to go by
    pair = {c.route, c.runner_up}
    if len(pair) != 2 or not pair <= MEANINGS.keys() or not pair <= set(routes):
        return ()
    return tuple(r for r in MEANINGS if r in pair)


def clip(prompt: str, head: int = HEAD_CHARS, tail: int = TAIL_CHARS) -> str:
    """The prompt as the model sees it: whole when short, else its head and its tail."""
    text = prompt.strip()
    if len(text) <= head + tail:
        return text
    return text[:head].rstrip() + "\n[...]\n" + text[-tail:].lstrip()


def settle_question(prompt: str, choices: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """The routing question as chat messages: (role, content) pairs."""
    if len(choices) < 2 or any(r not in MEANINGS for r in choices):
        raise ValueError(f"choices must be two or more of {', '.join(MEANINGS)}")
    kinds = "\n".join(f"- {r}: {MEANINGS[r]}" for r in choices)
    names = ", ".join(choices[:-1]) + " or " + choices[-1]
    user = (f"Which kind of request is this?\n{kinds}\n\n"
            f"Request:\n\"\"\"\n{clip(prompt)}\n\"\"\"\n\n"
            f"Answer with one word: {names}.")
    return (("system", SYSTEM), ("user", user))


def parse_reply(reply: str, choices: Sequence[str]) -> str | None:
    """The route the model named, or None when the reply is not one offered route name.

    Strict: case, surrounding punctuation, quotes and markdown are forgiven, and a closed
    ``<think>`` block is dropped; a sentence, two names, an unoffered route or an empty
    reply are junk (None), and the caller keeps the classifier's decision.
    """
    text = _THINK.sub(" ", reply)
    if "<think>" in text.lower():
        return None  # it was still thinking when the tokens ran out
    word = text.strip(_TRIM).lower()
    return word if word in choices else None
