"""Settling an unsure classification by asking the quick model.

The pure part (core/settle.py: when to ask, the question, the strict reading of the reply)
table by table; the Asker's part against a fake Ollama on 127.0.0.1 whose quick model
answers the routing question: asked and obeyed when the classifier is unsure, not asked
when it is sure, never for a forced route or an image, and a late, failed or junk reply
keeps the classifier's route.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from labrouter.app.local import probe_servers
from labrouter.ask import Asker, AskRequest
from labrouter.core.classify import Classification
from labrouter.core.config import parse_config
from labrouter.core.errors import ConfigError
from labrouter.core.peers import static_peers
from labrouter.core.policy import resolve_route
from labrouter.core.settle import (
    HEAD_CHARS,
    MEANINGS,
    TAIL_CHARS,
    clip,
    parse_reply,
    settle_choices,
    settle_question,
)
from tests.fakes import FakeModel
from tests.fakes.ollama_server import FakeOllama

QUESTION = "Which kind of request is this?"


def cls(route: str, conf: float, runner_up: str, *, image: bool = False,
        probs: dict[str, float] | None = None) -> Classification:
    if probs is None:
        probs = {route: conf, runner_up: 1 - conf}
    return Classification(route=route, scores=MappingProxyType({}), confidence=conf,
                          reasons=(), runner_up=runner_up, has_image=image,
                          probabilities=MappingProxyType(probs))


# ------------------------------------------------------------------ when to ask


@pytest.mark.parametrize(("c", "threshold", "forced", "want"), [
    (cls("quick", 0.52, "code"), 0.6, False, ("quick", "code")),
    (cls("code", 0.52, "quick"), 0.6, False, ("quick", "code")),  # fixed order
    (cls("reasoning", 0.45, "quick"), 0.6, False, ("quick", "reasoning")),
    (cls("quick", 0.65, "code"), 0.6, False, ()),  # sure enough
    (cls("quick", 0.6, "code"), 0.6, False, ()),  # at the threshold: sure enough
    (cls("quick", 0.52, "code"), 0.0, False, ()),  # off
    (cls("quick", 0.52, "code"), 0.6, True, ()),  # a route or model was asked for
    (cls("vision", 0.4, "quick", image=True), 0.6, False, ()),  # an image decides
    (cls("quick", 0.52, "code", probs={}), 0.6, False, ()),  # rules alone: not calibrated
    (cls("translate", 0.52, "quick"), 0.6, False, ()),  # a route of the user's
    (cls("quick", 0.52, ""), 0.6, False, ()),  # no second route
])
def test_when_to_ask(c: Classification, threshold: float, forced: bool,
                     want: tuple[str, ...]) -> None:
    assert settle_choices(c, threshold, forced=forced) == want


def test_a_route_the_config_lacks_is_not_offered() -> None:
    c = cls("quick", 0.5, "reasoning")
    assert settle_choices(c, 0.6, routes=("quick", "code", "vision")) == ()


# ------------------------------------------------------------------ the question


def test_the_question_lists_the_two_routes_with_their_meaning_and_the_prompt() -> None:
    (role0, system), (role1, user) = settle_question("undo my last commit", ("quick", "code"))
    assert (role0, role1) == ("system", "user")
    assert "one word" in system
    assert MEANINGS["quick"] in user and MEANINGS["code"] in user
    assert MEANINGS["reasoning"] not in user
    assert "undo my last commit" in user
    assert user.rstrip().endswith("quick or code.")


def test_a_long_prompt_is_clipped_to_its_head_and_tail() -> None:
    prompt = "H" * 5000 + "the question at the end?"
    shown = clip(prompt)
    assert len(shown) < HEAD_CHARS + TAIL_CHARS + 20
    assert shown.startswith("H" * 100) and shown.endswith("the question at the end?")
    assert clip("short") == "short"
    (_, _), (_, user) = settle_question(prompt, ("quick", "reasoning"))
    assert len(user) < 2500


@pytest.mark.parametrize("choices", [("quick",), ("quick", "translate"), ()])
def test_the_question_needs_two_known_routes(choices: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="choices"):
        settle_question("x", choices)


# ------------------------------------------------------------------ the reply


@pytest.mark.parametrize(("reply", "want"), [
    ("code", "code"),
    ("Code", "code"),
    (" code.\n", "code"),
    ("**quick**", "quick"),
    ('"quick"', "quick"),
    ("`code`", "code"),
    ("<think>\n\n</think>\n\ncode", "code"),  # a thinking model told not to think
    ("<think>the user wants", None),  # still thinking when its tokens ran out
    ("", None),
    ("   ", None),
    ("quick or code", None),
    ("The answer is code", None),
    ("- quick: a question of fact,", None),  # what SmolLM2-135M says: a copied line
    ("reasoning", None),  # a route not offered
    ("coding", None),
    ("codes", None),
])
def test_the_reply_is_read_strictly(reply: str, want: str | None) -> None:
    assert parse_reply(reply, ("quick", "code")) == want


# ------------------------------------------------------------------ config


def test_settling_is_off_by_default_and_configurable() -> None:
    assert parse_config("").classifier.settle_below == 0.0
    cfg = parse_config("[classifier]\nsettle_below = 0.6\nsettle_timeout = 0.8\n")
    assert (cfg.classifier.settle_below, cfg.classifier.settle_timeout) == (0.6, 0.8)


@pytest.mark.parametrize(("line", "message"), [
    ("settle_below = 1.5", "settle_below: expected 0 to 1"),
    ("settle_below = -0.1", "settle_below: expected 0 to 1"),
    ('settle_below = "yes"', "settle_below: expected a number"),
    ("settle_timeout = 0", "settle_timeout: expected 0.1 s to 30 s"),
    ("settle_timeout = true", "settle_timeout: expected a number"),
    ("settle = 0.5", "unknown key"),
])
def test_bad_settle_values_are_clear_errors(line: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        parse_config(f"[classifier]\n{line}\n", source="config.toml")
    assert "config.toml:2" in str(err.value)


def test_config_validate_names_a_bad_settle_value(tmp_path: Path) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text("[classifier]\nsettle_below = 5\n")
    out = subprocess.run([sys.executable, "-m", "labrouter", "--config", str(bad), "config",
                          "validate"], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, LABROUTER_HOME=str(tmp_path / "home")))
    assert out.returncode == 2
    assert f"{bad}:2: classifier.settle_below: expected 0 to 1" in out.stderr
    assert "Traceback" not in out.stderr


# ------------------------------------------------------------------ the Asker's part

QUICK, CODER = "qwen3:4b", "qwen2.5-coder:7b"


def config(url: str, below: float, timeout: float = 5.0) -> Any:
    return parse_config(f"""
[[servers]]
url = "{url}"
name = "lab-ollama"
[timeouts]
connect = 1.0
first_token = 5.0
gap = 2.0
total = 10.0
[routes.quick]
models = ["{QUICK}"]
[routes.code]
models = ["{CODER}"]
fallback = "quick"
[classifier]
settle_below = {below}
settle_timeout = {timeout}
""", hostname="lab")


async def asker_for(cfg: Any) -> Asker:
    peers = static_peers("lab", await probe_servers(cfg.servers))
    return Asker(cfg, lambda: peers)


def routing_questions(srv: FakeOllama) -> list[Any]:
    return [r for r in srv.requests_to("/api/chat")
            if QUESTION in str(r.body["messages"][-1]["content"])]


MODEL_OF = {"quick": QUICK, "code": CODER}
UNDO = "how do I undo my last commit"


def unsure(asker: Asker, prompt: str, below: float) -> str:
    """The test's premise: the shipped classifier is unsure of ``prompt``, between quick and
    code (in either order: the weights are retrained now and then). Returns the route the
    prompt goes to without settling."""
    c = asker.classify(AskRequest(prompt))
    assert {c.route, c.runner_up} == {"quick", "code"} and c.confidence < below, c
    return resolve_route(c, None, 0.0)[0]


def lab(quick_says: str) -> FakeOllama:
    return FakeOllama(models=[FakeModel(QUICK, answer=quick_says),
                              FakeModel(CODER, answer="git reset --soft HEAD~1")])


async def test_an_unsure_prompt_is_settled_by_the_quick_model() -> None:
    async with lab("code") as srv:
        asker = await asker_for(config(srv.url, 0.9))
        unsure(asker, "fix this", 0.9)
        result = await asker.ask(AskRequest("fix this"))
        asked = routing_questions(srv)
    assert len(asked) == 1 and asked[0].model == QUICK
    body = asked[0].body
    assert body["options"]["num_predict"] <= 8 and body["options"]["temperature"] == 0
    assert "fix this" in body["messages"][-1]["content"]
    # the quick model said code: the code model answered, and the record says why
    assert (result.model, result.classified_route) == (CODER, "code")
    assert any(f"route code settled by {QUICK}" in r for r in result.reasons), result.reasons


async def test_the_quick_model_can_confirm_the_classifier() -> None:
    async with lab("quick") as srv:
        asker = await asker_for(config(srv.url, 0.9))
        unsure(asker, "fix this", 0.9)
        result = await asker.ask(AskRequest("fix this"))
        assert len(routing_questions(srv)) == 1
    assert (result.model, result.classified_route) == (QUICK, "quick")
    assert any("route quick settled" in r for r in result.reasons)


async def test_a_sure_prompt_is_not_asked_about() -> None:
    async with lab("code") as srv:
        asker = await asker_for(config(srv.url, 0.5))
        sure = asker.classify(AskRequest("What is the capital of France?"))
        assert sure.confidence >= 0.5, sure
        quick = await asker.ask(AskRequest("What is the capital of France?"))
        code = await asker.ask(AskRequest(
            'Traceback (most recent call last):\n  File "a.py", line 1\n'
            "ZeroDivisionError: division by zero"))
        assert routing_questions(srv) == []
        assert srv.count("/api/chat", QUICK) == 1  # its own answer, nothing else
    assert (quick.model, code.model) == (QUICK, CODER)
    assert not any("settle" in r for r in quick.reasons + code.reasons)


async def test_off_by_default_nothing_is_asked() -> None:
    async with lab("code") as srv:
        asker = await asker_for(config(srv.url, 0.0))
        result = await asker.ask(AskRequest("fix this"))
        assert routing_questions(srv) == []
    assert result.model == QUICK


@pytest.mark.parametrize("req", [
    AskRequest("fix this", route="quick"),
    AskRequest("fix this", model=QUICK),
    AskRequest("fix this", image=b"\x89PNG\r\n\x1a\n"),
], ids=["route", "model", "image"])
async def test_a_forced_route_or_an_image_is_never_asked_about(req: AskRequest) -> None:
    async with lab("code") as srv:
        asker = await asker_for(config(srv.url, 1.0))
        result = await asker.ask(req)
        assert routing_questions(srv) == []
    assert result.model == QUICK  # no vision model: the image goes to quick, left out


async def test_a_late_answer_keeps_the_classifiers_route() -> None:
    async with lab("quick") as srv:
        asker = await asker_for(config(srv.url, 0.99, timeout=0.3))
        kept = unsure(asker, UNDO, 0.99)
        srv.set_fault("hang", QUICK, times=1)  # the routing question hangs
        result = await asker.ask(AskRequest(UNDO))
        assert len(routing_questions(srv)) == 1
    assert (result.model, result.classified_route) == (MODEL_OF[kept], kept)
    assert any("no answer within 0.3 s" in r for r in result.reasons), result.reasons


async def test_a_failed_answer_keeps_the_classifiers_route() -> None:
    async with lab("quick") as srv:
        asker = await asker_for(config(srv.url, 0.99))
        kept = unsure(asker, UNDO, 0.99)
        srv.set_fault("http500", QUICK, times=1)
        result = await asker.ask(AskRequest(UNDO))
    assert (result.model, result.classified_route) == (MODEL_OF[kept], kept)
    assert any("and failed" in r for r in result.reasons), result.reasons


@pytest.mark.parametrize("junk", ["I think it is quick", "code, probably", "reasoning"])
async def test_a_junk_answer_keeps_the_classifiers_route(junk: str) -> None:
    async with lab(junk) as srv:
        asker = await asker_for(config(srv.url, 0.99))
        kept = unsure(asker, UNDO, 0.99)
        result = await asker.ask(AskRequest(UNDO))
    assert (result.model, result.classified_route) == (MODEL_OF[kept], kept)
    assert any("not a route" in r for r in result.reasons), result.reasons


async def test_a_quick_model_not_in_memory_is_not_loaded_for_a_routing_question() -> None:
    srv = FakeOllama(models=[FakeModel(QUICK, answer="code"),
                             FakeModel(CODER, answer="git reset --soft HEAD~1")],
                     loaded=[CODER])
    async with srv:
        asker = await asker_for(config(srv.url, 0.99))
        kept = unsure(asker, UNDO, 0.99)
        result = await asker.ask(AskRequest(UNDO))
        assert routing_questions(srv) == []
    assert result.model == MODEL_OF[kept]


async def test_a_request_cancelled_while_settling_is_logged(tmp_path: Path) -> None:
    from labrouter.app.usagelog import UsageLog

    async with lab("quick") as srv:
        cfg = config(srv.url, 0.99)
        peers = static_peers("lab", await probe_servers(cfg.servers))
        log = UsageLog(tmp_path / "data")
        asker = Asker(cfg, lambda: peers, usage_log=log)
        srv.set_fault("hang", QUICK, times=1)
        task = asyncio.create_task(asker.ask(AskRequest(UNDO)))
        async with asyncio.timeout(10):
            while not routing_questions(srv):
                await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        records, _ = log.read(1)
    assert len(records) == 1 and records[0].finish_reason == "cancelled"
    assert srv.count("/api/chat", CODER) == 0


def test_settling_config_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "config.md").read_text()
    assert "settle_below" in doc and "settle_timeout" in doc
