"""Fake inference servers for tests and benchmarks: real HTTP on 127.0.0.1, real streaming.

This package owns the machinery the fakes share (``FakeServer``): the aiohttp server on an
ephemeral port, the configurable models (``FakeModel``), simulated speed (time to first
token, tokens/s, a cold-load penalty for models not in memory, parallel slots), faults
(``FAULTS``) per model or for every request, and a record of every request received, so a
test can assert which server answered and what it was sent.

The protocol-specific servers are ``ollama_server.FakeOllama`` (Ollama's native API) and
``openai_server.FakeOpenAI`` (the OpenAI-compatible API as llama.cpp's server speaks it).
Each runs three ways::

    async with FakeOllama(models=["qwen3:4b"], loaded=["qwen3:4b"]) as srv:  # in a test
        srv.url
    url, stop = FakeOllama(models=["qwen3:4b"]).start_in_thread()         # from sync code
    python -m tests.fakes.ollama_server --port 11500 --models qwen3:4b,llava:7b  # a process

Connection refused is not a fault mode of a running server: stop the server
(``await srv.stop()``; ``srv.url`` keeps pointing at the now closed port) or use
``unused_url()``.

Imports only the standard library and aiohttp, never labrouter, so the fakes can judge the
client from outside.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Self

from aiohttp import web

#: the faults a server can be told to produce, for one model or for every request ("*")
FAULTS: dict[str, str] = {
    "http500": "answer HTTP 500 with an error body",
    "not_found": "answer HTTP 404: model not found",
    "busy": "answer HTTP 503: server busy",
    "drop": "send a few chunks, then close the connection mid-stream",
    "hang": "accept the request and never answer (no headers)",
    "hang_first": "send the response headers, then nothing (no first token)",
    "hang_mid": "send a few chunks, then go silent without closing",
    "malformed": "send a line that is not JSON in the stream (or a non-JSON body)",
    "error_mid": "send a few chunks, then an error object in the stream",
}
ANY = "*"
CHUNKS_BEFORE_FAULT = 3  # tokens sent before a mid-stream fault


@dataclass
class FakeModel:
    """A model the fake server has installed, and how it behaves.

    ``None`` speeds take the server's defaults. ``parameter_size`` and ``size`` are derived
    from the name when not given (qwen3:4b -> "4B", about 0.6 GB per billion).
    """

    name: str
    size: int = 0
    parameter_size: str = ""
    family: str = ""
    families: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ("completion",)
    answer: str = ""
    tokens_per_s: float | None = None
    ttft: float | None = None
    load_time: float | None = None

    def __post_init__(self) -> None:
        if not self.parameter_size:
            m = re.search(r"(\d+(?:\.\d+)?)([bm])\b", self.name.split(":")[-1], re.I) or \
                re.search(r"(\d+(?:\.\d+)?)([bm])\b", self.name, re.I)
            self.parameter_size = f"{m.group(1)}{m.group(2).upper()}" if m else "7B"
        if not self.size:
            n = float(self.parameter_size[:-1] or 7)
            billions = n / 1000 if self.parameter_size.endswith("M") else n
            self.size = int(billions * 0.6e9) or 100_000_000
        if not self.family:
            self.family = self.name.split("/")[-1].split(":")[0] or "llama"
        if not self.families:
            self.families = (self.family,)
        self.families = tuple(self.families)
        self.capabilities = tuple(self.capabilities)

    @classmethod
    def coerce(cls, spec: str | FakeModel | Mapping[str, Any]) -> FakeModel:
        if isinstance(spec, FakeModel):
            return spec
        if isinstance(spec, str):
            return cls(spec)
        known = {f.name for f in fields(cls)}
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in spec.items()
                  if k in known}
        return cls(**kwargs)

    @property
    def vision(self) -> bool:
        return "vision" in self.capabilities


@dataclass
class Fault:
    kind: str
    times: int | None = None  # None: every request; n: the next n requests only


@dataclass
class Received:
    """One request the server received (the body parsed when it was JSON)."""

    method: str
    path: str
    model: str
    body: Any
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def unused_url(path: str = "") -> str:
    """A URL on 127.0.0.1 where nothing listens: connecting to it is refused."""
    return f"http://127.0.0.1:{free_port()}{path}"


def split_tokens(text: str) -> list[str]:
    """The answer in word-sized tokens that join back to the exact text."""
    tokens = re.findall(r"\s*\S+", text)
    tail = text[sum(len(t) for t in tokens):]
    if tail:
        tokens.append(tail)
    return tokens


def count_words(messages: Iterable[Mapping[str, Any]]) -> int:
    n = 0
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):  # OpenAI content parts
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        n += len(str(content or "").split())
    return max(n, 1)


class FakeServer:
    """The shared part of the fake servers. Subclasses add the routes of one protocol."""

    protocol = "fake"
    default_path = ""  # appended to the root URL to make ``url`` (e.g. "/v1")

    def __init__(self, models: Sequence[str | FakeModel | Mapping[str, Any]] = (),
                 loaded: Iterable[str] | None = None, *, name: str = "",
                 answer: str = "", tokens_per_s: float = 500.0, ttft: float = 0.0,
                 load_time: float = 0.0, parallel: int = 0,
                 faults: Mapping[str, str | Fault] | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.models: dict[str, FakeModel] = {}
        for spec in models:
            m = FakeModel.coerce(spec)
            self.models[m.name] = m
        #: names of models in memory; ``None`` given means every model starts loaded
        self.loaded: dict[str, float] = {}
        for n in (self.models if loaded is None else loaded):
            self.loaded[n] = time.time() + 300
        self.name = name or self.protocol
        self.answer = answer
        self.tokens_per_s = tokens_per_s
        self.ttft = ttft
        self.load_time = load_time
        self.parallel = parallel
        self.faults: dict[str, Fault] = {}
        for key, f in (faults or {}).items():
            self.set_fault(f if isinstance(f, str) else f.kind, key,
                           None if isinstance(f, str) else f.times)
        self.host = host
        self.port = port
        self.received: list[Received] = []
        #: the client (host, port) of every TCP connection a request came in on: its size
        #: is the number of connections the clients opened (keep-alive reuse shows as 1)
        self.connections: set[tuple[str, int]] = set()
        #: seconds spent loading or generating (for "GPU busy" figures in benchmarks)
        self.busy_time = 0.0
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._load_locks: dict[str, asyncio.Lock] = {}
        self._thread_loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------ lifecycle

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The URL a labrouter client is configured with for this server."""
        return self.root_url + self.default_path

    def routes(self, app: web.Application) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    async def start(self) -> Self:
        self._stopping = asyncio.Event()
        self._slots = asyncio.Semaphore(self.parallel) if self.parallel > 0 else None
        app = web.Application()
        self.routes(app)
        # handler_cancellation: a client that gives up on a hung request frees its handler
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                                     shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        """Stop listening; later connections are refused. ``url`` stays the same."""
        if self._stopping is not None:
            self._stopping.set()  # hung handlers return now
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start_in_thread(self) -> tuple[str, Callable[[], None]]:
        """Run this server on its own event loop in a daemon thread.

        Returns ``(url, stop)``; ``stop()`` is idempotent and waits for the thread. The
        server object itself stays usable from the calling thread for counters and faults.
        """
        ready = threading.Event()
        errors: list[BaseException] = []
        loop = asyncio.new_event_loop()
        self._thread_loop = loop

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:  # reported to the starting thread
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.stop())
            loop.close()

        thread = threading.Thread(target=run, name=f"fake-{self.protocol}", daemon=True)
        thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]

        def stop() -> None:
            if thread.is_alive():
                loop.call_soon_threadsafe(loop.stop)
                thread.join(10)

        return self.url, stop

    # ------------------------------------------------------------ faults and records

    def set_fault(self, kind: str | None, model: str = ANY, times: int | None = None) -> None:
        """Make requests for ``model`` (or every request, ``"*"``) fail as ``kind``.

        ``kind=None`` clears it; ``times`` limits the fault to the next n requests.
        """
        if kind is None:
            self.faults.pop(model, None)
            return
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(FAULTS)}")
        self.faults[model] = Fault(kind, times)

    def clear_faults(self) -> None:
        self.faults.clear()

    def take_fault(self, model: str) -> str | None:
        for key in (model, ANY):
            f = self.faults.get(key)
            if f is None:
                continue
            if f.times is not None:
                f.times -= 1
                if f.times <= 0:
                    del self.faults[key]
            return f.kind
        return None

    def count(self, path: str | None = None, model: str | None = None) -> int:
        """How many requests came in, optionally only to ``path`` and/or for ``model``."""
        return sum(1 for r in self.received
                   if (path is None or r.path == path) and (model is None or r.model == model))

    def requests_to(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def record(self, request: web.Request) -> tuple[Any, str]:
        """Record the request; returns its JSON body (or None) and its model."""
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            self.connections.add((str(peer[0]), int(peer[1])))
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
        model = str(body.get("model") or body.get("name") or "") if isinstance(body, dict) \
            else ""
        self.received.append(Received(request.method, request.path, model, body,
                                      dict(request.headers)))
        return body, model

    # ------------------------------------------------------------ behaviour

    def answer_for(self, model: str) -> str:
        m = self.models.get(model)
        return (m.answer if m and m.answer else self.answer) or \
            f"This is {model} on {self.name}, answering in a few words."

    def speed(self, model: str) -> tuple[float, float, float]:
        """(tokens/s, time to first token, cold-load time) for a model."""
        m = self.models.get(model)
        tps = m.tokens_per_s if m and m.tokens_per_s is not None else self.tokens_per_s
        ttft = m.ttft if m and m.ttft is not None else self.ttft
        load = m.load_time if m and m.load_time is not None else self.load_time
        return tps, ttft, load

    async def ensure_loaded(self, model: str, keep_alive: Any = None) -> float:
        """Simulate a cold load when the model is not in memory; returns the load time."""
        lock = self._load_locks.setdefault(model, asyncio.Lock())
        async with lock:
            spent = 0.0
            if model not in self.loaded:
                spent = self.speed(model)[2]
                if spent > 0:
                    await asyncio.sleep(spent)
            self.loaded[model] = time.time() + keep_alive_seconds(keep_alive)
            return spent

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """One of the server's parallel slots (like OLLAMA_NUM_PARALLEL); counts busy time."""
        if self._slots is not None:
            await self._slots.acquire()
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.busy_time += time.monotonic() - t0
            if self._slots is not None:
                self._slots.release()

    async def pace(self, tokens_per_s: float) -> None:
        if tokens_per_s > 0:
            await asyncio.sleep(1.0 / tokens_per_s)

    async def hang(self) -> None:
        """Say nothing until the server stops (or the client goes away)."""
        assert self._stopping is not None
        await self._stopping.wait()

    @staticmethod
    def drop(request: web.Request) -> None:
        """Cut the connection without finishing the response."""
        transport = request.transport
        if transport is not None:
            transport.abort()

    async def non_stream_fault(self, request: web.Request, fault: str,
                               error: Callable[[int, str], web.Response]) -> web.StreamResponse:
        """The fault modes for a request answered with one JSON document."""
        if fault in ("hang", "hang_first", "hang_mid"):
            await self.hang()
            raise web.HTTPServiceUnavailable()
        if fault == "drop":
            self.drop(request)
            return web.Response(status=500)  # never reaches the client
        if fault == "malformed":
            return web.Response(text='{"models": [truncated', content_type="application/json")
        if fault == "not_found":
            return error(404, "not found")
        if fault == "busy":
            return error(503, "server busy, please try again.  maximum pending requests "
                              "exceeded")
        return error(500, "an internal error the fake was told to produce")


def keep_alive_seconds(value: Any) -> float:
    """Ollama's keep_alive: "5m", "1h", seconds as a number, negative = forever, 0 = now."""
    if value is None:
        return 300.0
    if isinstance(value, int | float):
        return float("inf") if value < 0 else float(value)
    m = re.fullmatch(r"(-?\d+(?:\.\d+)?)(ms|s|m|h)?", str(value).strip())
    if not m:
        return 300.0
    n = float(m.group(1))
    if n < 0:
        return float("inf")
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def iso_time(t: float) -> str:
    if t == float("inf"):
        t = 253402300799  # the far future Ollama reports for a negative keep_alive
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


# ---------------------------------------------------------------- command line


def cli(cls: type[FakeServer], argv: Sequence[str] | None = None) -> None:
    """``python -m tests.fakes.<server> ...``: serve until SIGTERM or Ctrl-C.

    Prints the server's URL as the first line of stdout, so a parent process can read it.
    """
    p = argparse.ArgumentParser(prog=f"python -m tests.fakes.{cls.__module__.split('.')[-1]}",
                                description=cls.__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    p.add_argument("--name", default="")
    p.add_argument("--models", default="", help="comma-separated model names")
    p.add_argument("--loaded", default=None,
                   help="comma-separated names in memory at start (default: all models)")
    p.add_argument("--answer", default="")
    p.add_argument("--tokens-per-s", type=float, default=500.0)
    p.add_argument("--ttft", type=float, default=0.0, help="seconds to the first token")
    p.add_argument("--load-time", type=float, default=0.0,
                   help="seconds to load a model that is not in memory")
    p.add_argument("--parallel", type=int, default=0, help="slots; 0: unlimited")
    p.add_argument("--fault", action="append", default=[], metavar="[MODEL=]KIND",
                   help=f"kinds: {', '.join(FAULTS)}")
    p.add_argument("--config", default="",
                   help='JSON (or @file) with "models": [{name, answer, ttft, ...}] and any '
                        "of the options above")
    p.add_argument("--api-key", default="", help="(openai) require this bearer token")
    args = p.parse_args(argv)

    kwargs: dict[str, Any] = {}
    if args.config:
        text = Path(args.config[1:]).read_text() if args.config.startswith("@") \
            else args.config
        kwargs.update(json.loads(text))
    models: list[Any] = list(kwargs.pop("models", []))
    models += [m for m in args.models.split(",") if m]
    loaded = kwargs.pop("loaded", None)
    if args.loaded is not None:
        loaded = [m for m in args.loaded.split(",") if m]
    faults: dict[str, str] = dict(kwargs.pop("faults", {}))
    for f in args.fault:
        model, _, kind = f.rpartition("=")
        faults[model or ANY] = kind
    defaults = {"name": args.name, "answer": args.answer, "tokens_per_s": args.tokens_per_s,
                "ttft": args.ttft, "load_time": args.load_time, "parallel": args.parallel}
    for k, v in defaults.items():
        kwargs.setdefault(k, v)
    if args.api_key:
        kwargs["api_key"] = args.api_key
    server = cls(models, loaded, faults=faults, host=args.host, port=args.port, **kwargs)

    async def main() -> None:
        await server.start()
        print(server.url, flush=True)
        done = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, done.set)
        await done.wait()
        await server.stop()

    asyncio.run(main())
    sys.exit(0)
