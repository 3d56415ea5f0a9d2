"""OllamaBackend against the fake Ollama server: real HTTP on 127.0.0.1, real streaming.

Covers the probes, streaming chunk by chunk, token counts, images and options on the wire,
unloading, the cold-load penalty, and every fault mode ending in the right error type
within its (short) timeout. Also starts the fake in a thread and as a process.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from labrouter.backends import ChatChunk, ChatMessage, ChatOptions, OllamaBackend, make_backend
from labrouter.core.config import ServerConfig, TimeoutConfig
from labrouter.core.errors import (
    BackendError,
    BackendTimeout,
    ConfigError,
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
GUARD = 5.0  # a test that takes longer than this has hung: fail it instead of waiting
ROOT = Path(__file__).resolve().parents[1]

MODELS = [
    FakeModel("qwen3:4b", answer="The quick brown fox jumps over the lazy dog."),
    FakeModel("llava:7b", families=("llama", "clip"), capabilities=("completion", "vision")),
    FakeModel("gemma3:12b", family="gemma3", capabilities=("completion", "vision")),
    FakeModel("qwen3-coder:30b", parameter_size="30.5B"),
]
USER = [ChatMessage("user", "hello there")]


@pytest.fixture
async def srv() -> AsyncIterator[FakeOllama]:
    async with FakeOllama(models=MODELS, loaded=["qwen3:4b"], name="mac-mini") as s:
        yield s


@pytest.fixture
async def backend(srv: FakeOllama) -> AsyncIterator[OllamaBackend]:
    b = OllamaBackend(srv.url, FAST, name="mac-mini")
    yield b
    await b.aclose()


async def collect(backend: OllamaBackend, model: str = "qwen3:4b",
                  messages: list[ChatMessage] | None = None,
                  options: ChatOptions | None = None) -> list[ChatChunk]:
    async with asyncio.timeout(GUARD):
        return [c async for c in backend.chat(model, messages or USER, options)]


# ---------------------------------------------------------------- probes


async def test_version(backend: OllamaBackend) -> None:
    assert await backend.version() == "0.12.6"


async def test_list_models_reads_size_params_family_and_vision(backend: OllamaBackend) -> None:
    models = {m.name: m for m in await backend.list_models()}
    assert set(models) == {"qwen3:4b", "llava:7b", "gemma3:12b", "qwen3-coder:30b"}
    assert models["qwen3:4b"] == ModelInfo("qwen3:4b", size=models["qwen3:4b"].size,
                                           params_b=4.0, vision=False, family="qwen3")
    assert models["qwen3:4b"].size > 0
    assert models["llava:7b"].vision  # families contain "clip"
    assert models["qwen3-coder:30b"].params_b == 30.5  # details.parameter_size wins
    assert not models["gemma3:12b"].vision  # only /api/show's capabilities say so


async def test_show_reads_capabilities(backend: OllamaBackend) -> None:
    info = await backend.show("gemma3:12b")
    assert info.vision and info.params_b == 12.0 and info.family == "gemma3"
    assert not (await backend.show("qwen3:4b")).vision


async def test_show_unknown_model(backend: OllamaBackend) -> None:
    with pytest.raises(ModelNotFound, match="nope:1b"):
        await backend.show("nope:1b")


async def test_loaded_models_and_unload(srv: FakeOllama, backend: OllamaBackend) -> None:
    assert await backend.loaded_models() == ["qwen3:4b"]
    await backend.unload("qwen3:4b")
    assert await backend.loaded_models() == []
    body = srv.requests_to("/api/generate")[-1].body
    assert body == {"model": "qwen3:4b", "keep_alive": 0, "stream": False}


# ---------------------------------------------------------------- chat


async def test_chat_streams_the_answer_and_counts_tokens(srv: FakeOllama,
                                                        backend: OllamaBackend) -> None:
    chunks = await collect(backend)
    *parts, last = chunks
    assert "".join(c.text for c in chunks) == "The quick brown fox jumps over the lazy dog."
    assert len(parts) == 9 and all(not c.done and c.text for c in parts)  # one per token
    assert last.done and last.done_reason == "stop"
    assert last.prompt_tokens == 2 and last.completion_tokens == 9
    assert srv.count("/api/chat", model="qwen3:4b") == 1


async def test_chunks_arrive_before_the_answer_ends(srv: FakeOllama,
                                                   backend: OllamaBackend) -> None:
    # The server sends three tokens and then stalls: a client that buffered the body would
    # see nothing at all before its timeout.
    srv.set_fault("hang_mid", "qwen3:4b")
    seen: list[str] = []
    with pytest.raises(BackendTimeout, match="timeouts.gap"):
        async with asyncio.timeout(GUARD):
            async for c in backend.chat("qwen3:4b", USER):
                seen.append(c.text)
    assert "".join(seen) == "The quick brown"


async def test_chat_sends_images_options_and_keep_alive(srv: FakeOllama,
                                                       backend: OllamaBackend) -> None:
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
    messages = [ChatMessage("system", "be brief"),
                ChatMessage("user", "what is this?", images=(png,))]
    opts = ChatOptions(temperature=0.0, seed=7, max_tokens=3, keep_alive="10m",
                       extra={"num_ctx": 4096})
    chunks = await collect(backend, "llava:7b", messages, opts)
    assert chunks[-1].done_reason == "length" and chunks[-1].completion_tokens == 3
    body = srv.requests_to("/api/chat")[-1].body
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "what is this?", "images": [png]},
    ]
    assert body["options"] == {"temperature": 0.0, "seed": 7, "num_predict": 3,
                               "num_ctx": 4096}
    assert body["keep_alive"] == "10m" and body["stream"] is True


async def test_cold_model_is_loaded_first(srv: FakeOllama, backend: OllamaBackend) -> None:
    srv.load_time = 0.05
    assert "llava:7b" not in await backend.loaded_models()
    chunks = await collect(backend, "llava:7b")
    assert chunks[-1].done
    assert "llava:7b" in await backend.loaded_models()


async def test_cold_load_slower_than_first_token_timeout(srv: FakeOllama,
                                                        backend: OllamaBackend) -> None:
    srv.load_time = 1.0  # Ollama sends no headers while it loads
    with pytest.raises(BackendTimeout, match="timeouts.first_token"):
        await collect(backend, "llava:7b")


async def test_breaking_off_a_stream_releases_it(srv: FakeOllama,
                                                backend: OllamaBackend) -> None:
    srv.tokens_per_s = 50
    stream = backend.chat("qwen3:4b", USER)
    first = await anext(stream)  # type: ignore[call-overload]
    await stream.aclose()  # type: ignore[attr-defined]
    assert first.text == "The"
    assert (await collect(backend))[-1].done  # the client is still usable


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
@pytest.mark.parametrize("scope", ["model", "global"])
async def test_chat_fault(srv: FakeOllama, backend: OllamaBackend, fault: str,
                          error: type[BackendError], text: str, scope: str) -> None:
    srv.set_fault(fault, "qwen3:4b" if scope == "model" else "*")
    with pytest.raises(error, match=text) as info:
        await collect(backend)
    assert "mac-mini" in info.value.message  # says which server
    assert info.value.hint  # and what to do


async def test_fault_for_one_model_leaves_others_alone(srv: FakeOllama,
                                                      backend: OllamaBackend) -> None:
    srv.set_fault("http500", "qwen3:4b")
    assert (await collect(backend, "llava:7b"))[-1].done
    with pytest.raises(ServerFailure):
        await collect(backend, "qwen3:4b")


async def test_fault_for_the_next_request_only(srv: FakeOllama, backend: OllamaBackend) -> None:
    srv.set_fault("drop", "qwen3:4b", times=1)
    with pytest.raises(ServerFailure):
        await collect(backend)
    assert (await collect(backend))[-1].done
    assert srv.count("/api/chat") == 2


async def test_unknown_model(backend: OllamaBackend) -> None:
    with pytest.raises(ModelNotFound, match="try pulling it first") as info:
        await collect(backend, "nope:1b")
    assert "ollama pull nope:1b" in info.value.hint


@pytest.mark.parametrize(("fault", "error"), [
    ("http500", ServerFailure), ("busy", Refused), ("hang", BackendTimeout),
    ("malformed", ProtocolError), ("drop", ServerFailure), ("not_found", ProtocolError),
])
async def test_probe_fault(srv: FakeOllama, backend: OllamaBackend, fault: str,
                           error: type[BackendError]) -> None:
    srv.set_fault(fault)
    for probe in (backend.version, backend.list_models, backend.loaded_models):
        with pytest.raises(error):
            async with asyncio.timeout(GUARD):
                await probe()


async def test_stopped_server_is_unreachable(srv: FakeOllama, backend: OllamaBackend) -> None:
    assert await backend.version()
    await srv.stop()
    with pytest.raises(Unreachable, match="cannot reach mac-mini"):
        await collect(backend)
    with pytest.raises(Unreachable):
        await backend.list_models()


async def test_nothing_listening_is_unreachable() -> None:
    b = OllamaBackend(unused_url(), FAST)
    try:
        with pytest.raises(Unreachable) as info:
            await b.version()
        assert "running" in info.value.hint
    finally:
        await b.aclose()


async def test_total_timeout_bounds_a_slow_stream(srv: FakeOllama) -> None:
    srv.tokens_per_s = 10  # 0.1 s per token: never a gap, but 9 tokens take 0.8 s
    b = OllamaBackend(srv.url, TimeoutConfig(connect=0.3, first_token=0.3, gap=0.3, total=0.4))
    try:
        with pytest.raises(BackendTimeout, match="timeouts.total"):
            await collect(b)
    finally:
        await b.aclose()


async def test_an_openai_server_is_not_an_ollama_server() -> None:
    async with FakeOpenAI(models=["smollm2"]) as other:
        b = OllamaBackend(other.root_url, FAST)
        try:
            with pytest.raises(ProtocolError, match="404"):
                await b.list_models()
        finally:
            await b.aclose()


async def test_httpx_errors_never_escape(srv: FakeOllama) -> None:
    # A transport that fails with a bare httpx error must still end as a BackendError.
    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset by peer", request=request)

    b = OllamaBackend(srv.url, FAST, transport=httpx.MockTransport(boom))
    try:
        with pytest.raises(BackendError):
            await b.version()
    finally:
        await b.aclose()


# ---------------------------------------------------------------- make_backend


async def test_make_backend_from_config_and_state(srv: FakeOllama) -> None:
    for server in (ServerConfig(url=srv.url, kind="ollama", name="box"),
                   ServerState(id="box", url=srv.url, kind="ollama")):
        b = make_backend(server, FAST)
        try:
            assert isinstance(b, OllamaBackend) and b.kind == "ollama"
            assert await b.version() == "0.12.6"
        finally:
            await b.aclose()


def test_make_backend_unknown_kind() -> None:
    with pytest.raises(ConfigError, match="unknown kind"):
        make_backend(ServerConfig(url="http://127.0.0.1:1", kind="tgi"), FAST)


# ---------------------------------------------------------------- other ways to run the fake


async def test_fake_in_a_thread() -> None:
    fake = FakeOllama(models=["qwen3:4b"])
    url, stop = fake.start_in_thread()
    b = OllamaBackend(url, FAST)
    try:
        assert (await collect(b))[-1].done
        assert fake.count("/api/chat") == 1
    finally:
        await b.aclose()
        stop()
        stop()  # idempotent


async def test_fake_as_a_process() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.ollama_server", "--port", "0",
         "--models", "qwen3:4b,llava:7b", "--loaded", "qwen3:4b", "--fault", "llava:7b=busy"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
        b = OllamaBackend(url.strip(), TimeoutConfig(connect=1, first_token=2, gap=2, total=5))
        try:
            assert [m.name for m in await b.list_models()] == ["qwen3:4b", "llava:7b"]
            assert await b.loaded_models() == ["qwen3:4b"]
            with pytest.raises(Refused):
                await collect(b, "llava:7b")
        finally:
            await b.aclose()
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


async def test_a_stopped_fake_can_start_again_on_its_port(srv: FakeOllama,
                                                         backend: OllamaBackend) -> None:
    port = srv.port
    await srv.stop()
    with pytest.raises(Unreachable):
        await backend.version()
    await srv.start()
    assert srv.port == port
    assert await backend.version() == "0.12.6"


async def test_speed_per_model(srv: FakeOllama, backend: OllamaBackend) -> None:
    srv.models["qwen3-coder:30b"].ttft = 1.0  # a slow big model next to a fast small one
    srv.loaded["qwen3-coder:30b"] = float("inf")
    with pytest.raises(BackendTimeout, match="timeouts.first_token"):
        await collect(backend, "qwen3-coder:30b")
    assert (await collect(backend, "qwen3:4b"))[-1].done


async def test_fifty_chats_use_one_connection(srv: FakeOllama, backend: OllamaBackend) -> None:
    # each stream is read to its end, so httpx keeps the connection for the next chat
    for _ in range(50):
        chunks = await collect(backend)
        assert chunks[-1].done
    await backend.list_models()
    assert srv.count("/api/chat") == 50
    assert len(srv.connections) == 1


async def test_a_plain_http_client_builds_no_tls_context(srv: FakeOllama) -> None:
    import httpcore

    from labrouter.backends._http import PlainHTTPTransport, make_client

    client = make_client(srv.url, FAST)
    try:
        transport = client._transport
        assert isinstance(transport, PlainHTTPTransport)
        assert isinstance(transport._pool, httpcore.AsyncConnectionPool)
        assert transport._pool._ssl_context is None  # built only if https is ever used
        assert (await client.get("/api/version")).status_code == 200
    finally:
        await client.aclose()
    tls = make_client("https://api.example.invalid/v1", FAST)
    assert not isinstance(tls._transport, PlainHTTPTransport)  # a cloud server verifies
    await tls.aclose()


async def test_a_kept_connection_the_server_closed_is_replaced() -> None:
    # a server that answers one request per connection and closes the connection when the
    # next request comes on it (as llama.cpp does with a connection it timed out just then)
    conns = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal conns
        conns += 1
        await reader.readuntil(b"\r\n\r\n")
        body = b'{"version": "0.12.6"}'
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        try:
            await reader.readuntil(b"\r\n\r\n")  # the next request on this connection
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()  # ... is never answered

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    b = OllamaBackend(f"http://127.0.0.1:{port}", FAST)
    try:
        async with asyncio.timeout(GUARD):
            assert [await b.version() for _ in range(3)] == ["0.12.6"] * 3
    finally:
        await b.aclose()
        server.close()
    assert conns >= 3
