"""The front door's aiohttp application over the router.

Owns ``FrontDoor`` (the routes: model lists, show, version, and the chat endpoints, all of
which go through ``_serve``, the one streaming path, in the client's dialect), ``Exchange``
(one ``Asker.stream`` as the text a client is sent) and ``FrontDoorSite``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web

from ... import __version__
from ...ask import AskEvent, AskRequest, AskResult, Done, FellOver, Started, Text
from ...core.config import Config
from ...core.errors import AllFailed, LabrouterError, NoCandidate
from ...core.peers import ModelInfo, Peer
from ...relay.server import Site
from . import guard
from .access import check_bind
from .dialects import Dialect, OllamaDialect, OpenAIDialect, now_iso, openai_error
from .requests import (
    AUTO,
    BadRequest,
    Parsed,
    parse_ollama_chat,
    parse_ollama_generate,
    parse_openai_chat,
)

log = logging.getLogger(__name__)

#: what /api/version answers: clients such as Open WebUI compare it with the minimum
#: Ollama version they need, so it is a recent Ollama release, not labrouter's version
OLLAMA_COMPAT_VERSION = "0.12.0"
MAX_BODY = 64 * 1024 * 1024  # a prompt with a few base64 images


class AskerLike(Protocol):
    def stream(self, req: AskRequest) -> AsyncGenerator[AskEvent, None]: ...


class Exchange:
    """One ask's events as the text a client is sent.

    When the Asker restarts on another candidate after text was already sent (mid-stream
    failure, or escalation of a weak answer), the client cannot take back what it got, so
    a short note separates the first attempt from the new answer.
    """

    def __init__(self, asker: AskerLike, req: AskRequest, requested: str) -> None:
        self.events = asker.stream(req)
        self.model = requested  # the model of the candidate last started
        self.sent_text = False
        self.result: AskResult | None = None

    async def pieces(self) -> AsyncIterator[str]:
        """The text to send; ``result`` is set when it ends. Raises LabrouterError."""
        async for event in self.events:
            if isinstance(event, Started):
                if self.sent_text:
                    yield (f"\n\n[labrouter: the answer continues from "
                           f"{event.candidate.label}]\n\n")
                    self.sent_text = False
                self.model = event.candidate.model
            elif isinstance(event, Text):
                self.sent_text = True
                yield event.text
            elif isinstance(event, FellOver) and event.continued:
                self.sent_text = False  # the next model continues the text sent: no note
            elif isinstance(event, Done):
                self.result = event.result

    async def collect(self) -> AskResult:
        async for _text in self.pieces():
            pass
        assert self.result is not None  # the stream ends with Done or raises
        return self.result

    async def aclose(self) -> None:
        """Stops the ask (the server stops generating) unless it is done."""
        await self.events.aclose()


class FrontDoor:
    """The aiohttp application of the front door."""

    def __init__(self, asker: AskerLike, peers: Callable[[], list[Peer]], config: Config,
                 allow_lan: bool = False) -> None:
        self.asker = asker
        self.peers = peers
        self.config = config
        self.allow_lan = allow_lan
        #: extra GET pages (path -> handler), e.g. the usage page; added before app()
        self.pages: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] = {}

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        guard.install(app, allow_lan=self.allow_lan, max_body=MAX_BODY,
                      allowed_origins=self.config.api.allowed_origins)
        r = app.router
        r.add_get("/", self._root)
        r.add_get("/api/version", self._version)
        r.add_get("/api/tags", self._tags)
        r.add_get("/api/ps", self._ps)
        r.add_post("/api/show", self._show)
        r.add_post("/api/chat", self._ollama_chat)
        r.add_post("/api/generate", self._ollama_generate)
        r.add_get("/v1/models", self._openai_models)
        r.add_get("/v1/models/{model:.+}", self._openai_model)
        r.add_post("/v1/chat/completions", self._openai_chat)
        for path, page in self.pages.items():
            r.add_get(path, page)
        return app

    # ------------------------------------------------------------ model lists

    def _cluster_models(self) -> list[tuple[ModelInfo, Peer, bool]]:
        """(model, first node that has it, loaded anywhere) for every model that is up."""
        seen: dict[str, tuple[ModelInfo, Peer, bool]] = {}
        for peer in self.peers():
            if not peer.routable:
                continue
            for server in peer.servers:
                if not server.up:
                    continue
                for m in server.models:
                    loaded = m.name in server.loaded
                    if m.name in seen:
                        old = seen[m.name]
                        seen[m.name] = (old[0], old[1], old[2] or loaded)
                    else:
                        seen[m.name] = (m, peer, loaded)
        return sorted(seen.values(), key=lambda t: t[0].name)

    def _auto_names(self) -> list[str]:
        return [AUTO, *(f"{AUTO}:{r}" for r in self.config.routes)]

    @staticmethod
    def _details(m: ModelInfo | None) -> dict[str, Any]:
        family = m.family if m else "labrouter"
        size = f"{m.params_b:g}B" if m and m.params_b else ""
        return {"parent_model": "", "format": "gguf" if m else "", "family": family,
                "families": [family] if family else [], "parameter_size": size,
                "quantization_level": ""}

    @staticmethod
    def _digest(name: str) -> str:
        # not the model's real digest (peers do not announce it); stable per name
        return hashlib.sha256(name.encode()).hexdigest()

    def _tag(self, name: str, m: ModelInfo | None) -> dict[str, Any]:
        return {"name": name, "model": name, "modified_at": now_iso(),
                "size": m.size if m else 0, "digest": self._digest(name),
                "details": self._details(m)}

    async def _root(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="Ollama is running")

    async def _version(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"version": OLLAMA_COMPAT_VERSION, "labrouter": __version__})

    async def _tags(self, request: web.Request) -> web.StreamResponse:
        models = [self._tag(n, None) for n in self._auto_names()]
        models += [self._tag(m.name, m) for m, _p, _l in self._cluster_models()]
        return web.json_response({"models": models})

    async def _ps(self, request: web.Request) -> web.StreamResponse:
        out = []
        expires = datetime.fromtimestamp(time.time() + 300, UTC).isoformat()
        for m, _p, loaded in self._cluster_models():
            if loaded:
                out.append({**self._tag(m.name, m), "expires_at": expires,
                            "size_vram": m.size})
        return web.json_response({"models": out})

    async def _show(self, request: web.Request) -> web.StreamResponse:
        body = await self._json(request)
        if isinstance(body, web.Response):
            return body
        name = body.get("model") or body.get("name")
        if name in self._auto_names():
            caps = ["completion", "vision"]
            return web.json_response({"modelfile": "", "parameters": "", "template": "",
                                      "details": self._details(None), "model_info": {},
                                      "capabilities": caps})
        for m, _p, _l in self._cluster_models():
            if m.name == name:
                caps = ["completion", "vision"] if m.vision else ["completion"]
                return web.json_response({"modelfile": "", "parameters": "", "template": "",
                                          "details": self._details(m), "model_info": {},
                                          "capabilities": caps})
        return web.json_response({"error": f"model '{name}' not found"}, status=404)

    async def _openai_models(self, request: web.Request) -> web.StreamResponse:
        created = int(time.time())
        data = [{"id": n, "object": "model", "created": created, "owned_by": "labrouter"}
                for n in self._auto_names()]
        data += [{"id": m.name, "object": "model", "created": created, "owned_by": p.name}
                 for m, p, _l in self._cluster_models()]
        return web.json_response({"object": "list", "data": data})

    async def _openai_model(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["model"]
        created = int(time.time())
        if name in self._auto_names():
            return web.json_response({"id": name, "object": "model", "created": created,
                                      "owned_by": "labrouter"})
        for m, p, _l in self._cluster_models():
            if m.name == name:
                return web.json_response({"id": name, "object": "model", "created": created,
                                          "owned_by": p.name})
        return openai_error(404, f"The model '{name}' does not exist", "model_not_found")

    # ------------------------------------------------------------ chat

    @staticmethod
    async def _json(request: web.Request) -> dict[str, Any] | web.Response:
        try:
            body = await request.json(loads=json.loads)
        except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested deep
            body = None
        if not isinstance(body, dict):
            return web.json_response({"error": "the request body must be a JSON object"},
                                     status=400)
        return body

    async def _ollama_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._ollama(request, parse_ollama_chat, chat=True)

    async def _ollama_generate(self, request: web.Request) -> web.StreamResponse:
        return await self._ollama(request, parse_ollama_generate, chat=False)

    async def _ollama(self, request: web.Request,
                      parse: Callable[[Mapping[str, Any], Mapping[str, Any]], Parsed],
                      chat: bool) -> web.StreamResponse:
        body = await self._json(request)
        if isinstance(body, web.Response):
            return body
        try:
            p = parse(body, self.config.routes)
        except BadRequest as exc:
            return web.json_response({"error": exc.message}, status=exc.status)
        return await self._serve(request, p, OllamaDialect(chat))

    async def _openai_chat(self, request: web.Request) -> web.StreamResponse:
        body = await self._json(request)
        if isinstance(body, web.Response):
            return openai_error(400, "the request body must be a JSON object",
                                 "invalid_request_error")
        try:
            p = parse_openai_chat(body, self.config.routes)
        except BadRequest as exc:
            return openai_error(exc.status, exc.message,
                                 "model_not_found" if exc.status == 404 else None)
        return await self._serve(request, p,
                                 OpenAIDialect(bool(p.extra.get("include_usage"))))

    async def _serve(self, request: web.Request, p: Parsed,
                     dialect: Dialect) -> web.StreamResponse:
        """The one streaming path: ask, and write the answer in the client's dialect."""
        ex = Exchange(self.asker, p.ask_request(f"api:{request.path}"), p.model)
        try:
            if not p.stream:
                return dialect.whole(await ex.collect())
            resp: web.StreamResponse | None = None
            try:
                async for text in ex.pieces():
                    if resp is None:  # headers only once there is something to say
                        resp = await self._open(request, dialect, ex.model)
                    await resp.write(dialect.piece(ex.model, text))
            except LabrouterError as exc:
                if resp is None:
                    raise
                await resp.write(dialect.stream_error(_message(exc)))
                await resp.write_eof()
                return resp
            assert ex.result is not None
            if resp is None:
                resp = await self._open(request, dialect, ex.model)
            await resp.write(dialect.last(ex.result))
            await resp.write_eof()
            return resp
        except LabrouterError as exc:
            status, code = _status(exc, p)
            return dialect.error(status, _message(exc), code)
        except ConnectionResetError:
            return _gone(request)
        finally:
            await ex.aclose()

    @staticmethod
    async def _open(request: web.Request, dialect: Dialect, model: str) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": dialect.content_type,
                                           "Cache-Control": "no-cache"})
        await resp.prepare(request)
        await resp.write(dialect.first(model))
        return resp


def _gone(request: web.Request) -> web.Response:
    # the client hung up mid-answer; the ask is cancelled in the handler's finally
    log.debug("front door: %s went away mid-answer", request.remote)
    return web.Response(status=499)


def _status(exc: LabrouterError, p: Parsed) -> tuple[int, str | None]:
    if isinstance(exc, NoCandidate):
        # a concrete model nobody has is the client's "model not found"; for auto, nothing
        # is up at all, which is the service being unavailable
        return (404, "model_not_found") if p.concrete else (503, "no_candidate")
    if isinstance(exc, AllFailed):
        return 502, "all_failed"
    return 500, None


def _message(exc: LabrouterError) -> str:
    text = exc.message
    if isinstance(exc, AllFailed) and exc.attempts:
        text += ": " + "; ".join(reason for _label, reason in exc.attempts)
    return text + (f" ({exc.hint})" if exc.hint else "")


class FrontDoorSite(Site):
    """Runs a ``FrontDoor`` on ``bind:port`` inside the current event loop."""

    def __init__(self, door: FrontDoor, bind: str, port: int) -> None:
        check_bind(bind, door.allow_lan)
        super().__init__(door.app(), bind, port)
        self.door = door
        self.bind = bind
