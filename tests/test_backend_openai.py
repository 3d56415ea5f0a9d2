"""OpenAIBackend against the fake OpenAI-compatible server: real HTTP, real SSE.

Covers model listing (with configured models), streaming with usage, images as data URLs,
the API key header from the environment, SSE framing corner cases, and every fault mode
ending in the right error type within its (short) timeout.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from labrouter.backends import ChatChunk, ChatMessage, ChatOptions, OpenAIBackend, make_backend
from labrouter.core.config import ServerConfig, TimeoutConfig
from labrouter.core.errors import (
    BackendError,
    BackendTimeout,
    ModelNotFound,
    ProtocolError,
    Refused,
    ServerFailure,
    Unreachable,
)
from labrouter.core.peers import ModelInfo, ServerState
from tests.fakes import FakeModel, unused_url
from tests.fakes.ollama_server import FakeOllama
from tests.fakes.openai_server import FakeOpenAI

FAST = TimeoutConfig(connect=0.3, first_token=0.3, gap=0.3, total=3.0)
GUARD = 5.0
USER = [ChatMessage("user", "say hello")]
MODELS = [FakeModel("smollm2", answer="Hello there, friend."),
          FakeModel("qwen2.5vl:7b", capabilities=("completion", "vision"))]


@pytest.fixture
async def srv() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(models=MODELS, name="gpu-pc") as s:
        yield s


@pytest.fixture
async def backend(srv: FakeOpenAI) -> AsyncIterator[OpenAIBackend]:
    b = OpenAIBackend(srv.url, FAST, name="gpu-pc")
    yield b
    await b.aclose()


async def collect(backend: OpenAIBackend, model: str = "smollm2",
                  messages: list[ChatMessage] | None = None,
                  options: ChatOptions | None = None) -> list[ChatChunk]:
    async with asyncio.timeout(GUARD):
        return [c async for c in backend.chat(model, messages or USER, options)]


# ---------------------------------------------------------------- models


async def test_url_ends_in_v1(srv: FakeOpenAI) -> None:
    assert srv.url.endswith("/v1")


async def test_list_models(backend: OpenAIBackend) -> None:
    models = await backend.list_models()
    assert [m.name for m in models] == ["smollm2", "qwen2.5vl:7b"]
    assert models[1] == ModelInfo("qwen2.5vl:7b", params_b=7.0, vision=True)
    assert await backend.show("qwen2.5vl:7b") == models[1]
    assert await backend.loaded_models() == []
    assert await backend.version() == "openai-compatible"
    await backend.unload("smollm2")  # a no-op, and no request


async def test_configured_models_are_added(srv: FakeOpenAI) -> None:
    b = OpenAIBackend(srv.url, FAST, models=["gpt-4o-mini", "smollm2"])
    try:
        assert [m.name for m in await b.list_models()] == ["smollm2", "qwen2.5vl:7b",
                                                            "gpt-4o-mini"]
    finally:
        await b.aclose()


async def test_configured_models_stand_in_when_the_server_cannot_list() -> None:
    async with FakeOllama(models=["x"]) as other:  # has no /v1/models: 404
        b = OpenAIBackend(other.url + "/v1", FAST, models=["cloud-model"])
        try:
            assert [m.name for m in await b.list_models()] == ["cloud-model"]
        finally:
            await b.aclose()


async def test_show_unknown_model_guesses_from_the_name(backend: OpenAIBackend) -> None:
    assert await backend.show("llama3.2-vision:11b") == ModelInfo(
        "llama3.2-vision:11b", params_b=11.0, vision=True)


# ---------------------------------------------------------------- chat


async def test_chat_streams_and_reports_usage(srv: FakeOpenAI, backend: OpenAIBackend) -> None:
    chunks = await collect(backend)
    *parts, last = chunks
    assert "".join(c.text for c in chunks) == "Hello there, friend."
    assert [c.text for c in parts] == ["Hello", " there,", " friend."]
    assert last.done and last.done_reason == "stop"
    assert last.prompt_tokens == 2 and last.completion_tokens == 3
    body = srv.requests_to("/v1/chat/completions")[-1].body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


async def test_chunks_arrive_before_the_answer_ends(srv: FakeOpenAI,
                                                   backend: OpenAIBackend) -> None:
    srv.models["smollm2"].answer = "one two three four five six"
    srv.set_fault("hang_mid", "smollm2")
    seen: list[str] = []
    with pytest.raises(BackendTimeout, match="timeouts.gap"):
        async with asyncio.timeout(GUARD):
            async for c in backend.chat("smollm2", USER):
                seen.append(c.text)
    assert "".join(seen) == "one two three"


async def test_options_and_max_tokens(srv: FakeOpenAI, backend: OpenAIBackend) -> None:
    opts = ChatOptions(temperature=0.0, seed=1, max_tokens=2, keep_alive="5m",
                       extra={"top_p": 0.9})
    chunks = await collect(backend, options=opts)
    assert chunks[-1].done_reason == "length" and chunks[-1].completion_tokens == 2
    body = srv.requests_to("/v1/chat/completions")[-1].body
    assert (body["temperature"], body["seed"], body["max_tokens"], body["top_p"]) == \
        (0.0, 1, 2, 0.9)
    assert "keep_alive" not in body  # an Ollama-only option


async def test_images_go_as_data_urls(srv: FakeOpenAI, backend: OpenAIBackend) -> None:
    jpeg = base64.b64encode(b"\xff\xd8\xff\xe0" + b"\0" * 20).decode()
    msgs = [ChatMessage("user", "what is in the picture?", images=(jpeg,))]
    assert (await collect(backend, "qwen2.5vl:7b", msgs))[-1].done
    body = srv.requests_to("/v1/chat/completions")[-1].body
    assert body["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "what is in the picture?"},
        {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{jpeg}"}},
    ]}]


async def test_api_key_from_the_environment(srv: FakeOpenAI) -> None:
    srv.api_key = "sk-test-123"
    cfg = ServerConfig(url=srv.url, kind="openai", name="cloud", api_key_env="LAB_KEY")
    b = make_backend(cfg, FAST, env={"LAB_KEY": "sk-test-123"})
    try:
        assert (await collect(b))[-1].done  # type: ignore[arg-type]
        assert srv.received[-1].headers["Authorization"] == "Bearer sk-test-123"
    finally:
        await b.aclose()


async def test_wrong_or_missing_api_key_is_refused(srv: FakeOpenAI) -> None:
    srv.api_key = "sk-right"
    for env in ({"LAB_KEY": "sk-wrong"}, {}):
        b = make_backend(ServerState(id="cloud", url=srv.url, kind="openai",
                                     api_key_env="LAB_KEY"), FAST, env=env)
        try:
            with pytest.raises(Refused, match="401") as info:
                await collect(b)  # type: ignore[arg-type]
            assert "$LAB_KEY" in info.value.hint
            with pytest.raises(Refused):
                await b.list_models()
        finally:
            await b.aclose()
    assert all("Authorization" not in r.headers for r in srv.received[-2:])  # no key: none sent


# ---------------------------------------------------------------- faults

FAULT_ERRORS: list[tuple[str, type[BackendError], str]] = [
    ("http500", ServerFailure, "HTTP 500"),
    ("not_found", ModelNotFound, "not found"),
    ("busy", Refused, "busy"),
    ("drop", ServerFailure, "dropped the connection"),
    ("hang", BackendTimeout, "timeouts.first_token"),
    ("hang_first", BackendTimeout, "timeouts.first_token"),
    ("hang_mid", BackendTimeout, "timeouts.gap"),
    ("malformed", ProtocolError, "not JSON"),
    ("error_mid", ServerFailure, "failed in the middle"),
]


@pytest.mark.parametrize(("fault", "error", "text"), FAULT_ERRORS,
                         ids=[f[0] for f in FAULT_ERRORS])
async def test_chat_fault(srv: FakeOpenAI, backend: OpenAIBackend, fault: str,
                          error: type[BackendError], text: str) -> None:
    srv.set_fault(fault, "smollm2")
    with pytest.raises(error, match=text) as info:
        await collect(backend)
    assert "gpu-pc" in info.value.message and info.value.hint


async def test_unknown_model(backend: OpenAIBackend) -> None:
    with pytest.raises(ModelNotFound, match="does not exist"):
        await collect(backend, "gpt-9")


async def test_stopped_server_is_unreachable(srv: FakeOpenAI, backend: OpenAIBackend) -> None:
    await srv.stop()
    with pytest.raises(Unreachable):
        await collect(backend)


async def test_nothing_listening_is_unreachable() -> None:
    b = OpenAIBackend(unused_url("/v1"), FAST)
    try:
        with pytest.raises(Unreachable):
            await b.list_models()
    finally:
        await b.aclose()


async def test_probe_hang_times_out(srv: FakeOpenAI, backend: OpenAIBackend) -> None:
    srv.set_fault("hang")
    with pytest.raises(BackendTimeout, match="timeouts.first_token"):
        async with asyncio.timeout(GUARD):
            await backend.list_models()


# ---------------------------------------------------------------- SSE framing


async def raw_server(body: bytes) -> tuple[web.AppRunner, str]:
    """A server that answers chat/completions with exactly ``body`` as an SSE stream."""

    async def chat(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(body)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/v1"


def ev(content: str | None = None, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    obj = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


@pytest.mark.parametrize(("body", "text", "outcome"), [
    # comments (keep-alive pings) and event:/id: fields are skipped
    (b": ping\n\n" + b"event: message\nid: 1\n" + ev("Hi") + ev(None, "stop")
     + b'data: {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 1}}\n\n'
     + b"data: [DONE]\n\n", "Hi", "done"),
    # CRLF line ends
    ((ev("a") + ev(" b", "stop") + b"data: [DONE]\n\n").replace(b"\n", b"\r\n"), "a b",
     "done"),
    # no [DONE], but the choice finished: the answer is complete
    (ev("ok") + ev(None, "stop"), "ok", "done"),
    # [DONE] as the last line without its blank line
    (ev("x") + b"data: [DONE]", "x", "done"),
    # the stream ends in the middle of the answer
    (ev("half"), "half", ServerFailure),
    # choices of the wrong type
    (b'data: {"choices": "nope"}\n\n', "", ProtocolError),
])
async def test_sse_framing(body: bytes, text: str, outcome: object) -> None:
    runner, url = await raw_server(body)
    b = OpenAIBackend(url, FAST)
    seen: list[ChatChunk] = []
    try:
        if outcome == "done":
            seen = await collect(b)
            assert seen[-1].done
        else:
            assert isinstance(outcome, type)
            with pytest.raises(outcome):
                async for c in b.chat("m", USER):
                    seen.append(c)
        assert "".join(c.text for c in seen) == text
    finally:
        await b.aclose()
        await runner.cleanup()


async def test_usage_counts_from_the_usage_event() -> None:
    body = (ev("Hi") + ev(None, "stop") + b'data: {"choices": [], "usage": '
            b'{"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5}}\n\n'
            b"data: [DONE]\n\n")
    runner, url = await raw_server(body)
    b = OpenAIBackend(url, FAST)
    try:
        last = (await collect(b))[-1]
        assert (last.prompt_tokens, last.completion_tokens, last.done_reason) == (4, 1, "stop")
    finally:
        await b.aclose()
        await runner.cleanup()


async def test_fake_as_a_process() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_server", "--port", "0", "--models",
         "smollm2", "--api-key", "k", "--answer", "fixed answer"],
        cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = (await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)).strip()
        assert url.endswith("/v1")
        b = OpenAIBackend(url, TimeoutConfig(connect=1, first_token=2, gap=2, total=5),
                          api_key="k")
        try:
            assert "".join(c.text for c in await collect(b)) == "fixed answer"
        finally:
            await b.aclose()
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


async def test_fifty_chats_use_one_connection(srv: FakeOpenAI, backend: OpenAIBackend) -> None:
    # each stream is read past [DONE] to its end, so httpx keeps the connection
    for _ in range(50):
        chunks = await collect(backend)
        assert chunks[-1].done
    assert srv.count("/v1/chat/completions") == 50
    assert len(srv.connections) == 1
