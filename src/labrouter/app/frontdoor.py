"""The local front door: the Ollama and OpenAI APIs on 127.0.0.1, backed by the router.

Owns the aiohttp application that lets other programs (Open WebUI, editors, scripts, curl)
use the whole cluster through one address: the Ollama API (``/api/chat``, ``/api/generate``,
``/api/tags``, ``/api/ps``, ``/api/show``, ``/api/version``) and the OpenAI API
(``/v1/chat/completions``, ``/v1/models``), streaming and not. The model ``auto`` goes
through the classifier and router, ``auto:<route>`` forces a route, and any other name is
routed to the best live machine that has that model; all of it through ``Asker.stream`` with
``source="api:<path>"``, so usage is logged like hotkey requests.

The front door has no authentication of its own (like Ollama), so it listens on loopback
only unless the user allows the LAN explicitly, and it refuses requests whose ``Host`` or
``Origin`` is not local (a web page's DNS-rebinding or cross-site request must not spend
the cluster's models or the cloud budget). Images are taken only from base64 data; a
remote image URL is refused, never fetched.

Must not import desktop packages. Runs on the daemon's event loop.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web
from yarl import URL

from .. import __version__
from ..ask import AskEvent, AskRequest, AskResult, Done, Started, Text
from ..backends.base import ChatMessage, ChatOptions
from ..core.config import Config
from ..core.errors import AllFailed, ConfigError, LabrouterError, NoCandidate
from ..core.peers import ModelInfo, Peer
from ..relay.server import Site

log = logging.getLogger(__name__)

#: what /api/version answers: clients such as Open WebUI compare it with the minimum
#: Ollama version they need, so it is a recent Ollama release, not labrouter's version
OLLAMA_COMPAT_VERSION = "0.12.0"
AUTO = "auto"
MAX_BODY = 64 * 1024 * 1024  # a prompt with a few base64 images
_LOCAL_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


class AskerLike(Protocol):
    def stream(self, req: AskRequest) -> AsyncGenerator[AskEvent, None]: ...


class BadRequest(Exception):
    """The client's request cannot be served as given (HTTP 400/404)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def is_loopback(host: str) -> bool:
    if host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_of(text: str, with_scheme: bool = False) -> str:
    """The host part of a Host header or an Origin; "" when it cannot be parsed."""
    try:
        return URL(text if with_scheme else f"http://{text}").host or ""
    except (ValueError, TypeError):
        return ""


def check_bind(bind: str, allow_lan: bool) -> None:
    """Refuse a non-loopback bind unless the user allowed the LAN explicitly."""
    if is_loopback(bind) or allow_lan:
        return
    raise ConfigError(
        f"[api] bind = {bind!r} would let anyone on the network use your models without a "
        "password",
        hint="Keep bind = \"127.0.0.1\", or set allow_lan = true under [api] if you really "
             "want the front door on the network.")


# ------------------------------------------------------------------ requests


@dataclass(frozen=True)
class Parsed:
    """A client's chat request in labrouter's terms."""

    model: str  # as the client named it
    route: str | None
    concrete: str | None
    prompt: str
    history: tuple[ChatMessage, ...]
    image: bytes | None
    options: ChatOptions
    stream: bool
    extra: Mapping[str, Any] = field(default_factory=dict)

    def ask_request(self, source: str) -> AskRequest:
        return AskRequest(prompt=self.prompt, image=self.image, route=self.route,
                          model=self.concrete, source=source,
                          options=self.options, messages=self.history)


def _b64(data: str) -> bytes:
    if data.startswith("data:"):
        head, _, data = data.partition(",")
        if ";base64" not in head:
            raise BadRequest("an image data URL must be base64")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("an image is not valid base64") from None


def _split_model(name: Any, routes: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
    if not isinstance(name, str) or not name.strip():
        raise BadRequest("model is required (use \"auto\" to let labrouter choose)")
    name = name.strip()
    base, _, tag = name.partition(":")
    if base == AUTO:
        if not tag or tag == "latest":
            return name, None, None
        if tag not in routes:
            raise BadRequest(f"no route {tag!r}; routes: {', '.join(routes)}", 404)
        return name, tag, None
    return name, None, name


def _conversation(messages: list[tuple[str, str, tuple[bytes, ...]]]
                  ) -> tuple[str, tuple[ChatMessage, ...], bytes | None]:
    """Split a chat into (last user prompt, earlier messages, image).

    System messages stay where the client put them, as system messages; the classifier
    sees only the last user message, which is what the client is asking now.
    """
    if not messages or messages[-1][0] != "user":
        raise BadRequest("the last message must come from the user")
    _role, prompt, images = messages[-1]
    image = images[-1] if images else None
    if image is None:  # a follow-up question about an image sent earlier
        for _r, _c, imgs in reversed(messages[:-1]):
            if imgs:
                image = imgs[-1]
                break
    history = tuple(ChatMessage(r if r in ("system", "user", "assistant") else "user", c)
                    for r, c, _ in messages[:-1])
    return prompt, history, image


def _ollama_options(body: Mapping[str, Any]) -> ChatOptions:
    opts = body.get("options") or {}
    if not isinstance(opts, dict):
        raise BadRequest("options must be an object")
    extra = {k: v for k, v in opts.items() if k not in ("temperature", "seed", "num_predict")}
    keep_alive = body.get("keep_alive")
    return ChatOptions(temperature=opts.get("temperature"), seed=opts.get("seed"),
                       max_tokens=opts.get("num_predict"),
                       keep_alive=str(keep_alive) if keep_alive is not None else None,
                       extra=extra)


def parse_ollama_chat(body: Mapping[str, Any], routes: Mapping[str, Any]) -> Parsed:
    model, route, concrete = _split_model(body.get("model"), routes)
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise BadRequest("messages must be a non-empty list")
    msgs = []
    for m in raw:
        if not isinstance(m, dict) or not isinstance(m.get("content", ""), str):
            raise BadRequest("each message needs a role and a string content")
        imgs = tuple(_b64(i) for i in (m.get("images") or []) if isinstance(i, str))
        msgs.append((str(m.get("role", "user")), m.get("content") or "", imgs))
    prompt, history, image = _conversation(msgs)
    return Parsed(model, route, concrete, prompt, history, image,
                  _ollama_options(body), bool(body.get("stream", True)))


def parse_ollama_generate(body: Mapping[str, Any], routes: Mapping[str, Any]) -> Parsed:
    model, route, concrete = _split_model(body.get("model"), routes)
    prompt = body.get("prompt") or ""
    if not isinstance(prompt, str) or not prompt.strip():
        raise BadRequest("prompt is required (labrouter does not load models on request)")
    system = body.get("system")
    imgs = [_b64(i) for i in (body.get("images") or []) if isinstance(i, str)]
    history = (ChatMessage("system", system),) if isinstance(system, str) and system else ()
    return Parsed(model, route, concrete, prompt, history, imgs[-1] if imgs else None,
                  _ollama_options(body), bool(body.get("stream", True)))


def parse_openai_chat(body: Mapping[str, Any], routes: Mapping[str, Any]) -> Parsed:
    model, route, concrete = _split_model(body.get("model"), routes)
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise BadRequest("messages must be a non-empty list")
    msgs = []
    for m in raw:
        if not isinstance(m, dict):
            raise BadRequest("each message must be an object")
        content = m.get("content")
        texts: list[str] = []
        imgs: list[bytes] = []
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for part in content:
                kind = part.get("type") if isinstance(part, dict) else None
                if kind == "text":
                    texts.append(str(part.get("text", "")))
                elif kind == "image_url":
                    url = part.get("image_url")
                    url = url.get("url") if isinstance(url, dict) else url
                    if not isinstance(url, str) or not url.startswith("data:"):
                        # fetching would send traffic the user did not ask labrouter to send
                        raise BadRequest("only base64 data: URLs are accepted for images")
                    imgs.append(_b64(url))
        elif content is not None:
            raise BadRequest("message content must be a string or a list of parts")
        role = str(m.get("role", "user"))
        msgs.append(("system" if role == "developer" else role, "\n".join(texts),
                     tuple(imgs)))
    prompt, history, image = _conversation(msgs)
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    options = ChatOptions(temperature=body.get("temperature"), seed=body.get("seed"),
                          max_tokens=max_tokens)
    stream_opts = body.get("stream_options") or {}
    return Parsed(model, route, concrete, prompt, history, image, options,
                  bool(body.get("stream", False)),
                  extra={"include_usage": bool(isinstance(stream_opts, dict)
                                               and stream_opts.get("include_usage"))})


# ------------------------------------------------------------------ one exchange


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


def _now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


# ------------------------------------------------------------------ the app


class FrontDoor:
    """The aiohttp application of the front door."""

    def __init__(self, asker: AskerLike, peers: Callable[[], list[Peer]], config: Config,
                 allow_lan: bool = False) -> None:
        self.asker = asker
        self.peers = peers
        self.config = config
        self.allow_lan = allow_lan

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._guard])
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
        return app

    # ------------------------------------------------------------ guard

    @web.middleware
    async def _guard(self, request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
        if not self.allow_lan:
            host = _host_of(request.host or "")
            origin = request.headers.get("Origin")
            bad_origin = bool(origin) and origin != "null" and not is_loopback(
                _host_of(origin or "", with_scheme=True))
            if not is_loopback(host) or bad_origin:
                # a web page (DNS rebinding, cross-site POST) must not use the front door
                return web.json_response({"error": "forbidden: not a local client"},
                                         status=403)
        return await handler(request)

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
        return {"name": name, "model": name, "modified_at": _now_iso(),
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
        return _openai_error(404, f"The model '{name}' does not exist", "model_not_found")

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
            return _openai_error(400, "the request body must be a JSON object",
                                 "invalid_request_error")
        try:
            p = parse_openai_chat(body, self.config.routes)
        except BadRequest as exc:
            return _openai_error(exc.status, exc.message,
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


# ------------------------------------------------------------------ dialects


class Dialect(Protocol):
    """How one API writes an answer; the streaming itself is ``FrontDoor._serve``'s."""

    content_type: str  # of a streamed answer

    def first(self, model: str) -> bytes: ...  # before the first piece ("" for none)

    def piece(self, model: str, text: str) -> bytes: ...

    def last(self, res: AskResult) -> bytes: ...  # the end of a streamed answer

    def stream_error(self, message: str) -> bytes: ...  # a failure after text was sent

    def whole(self, res: AskResult) -> web.Response: ...  # a non-streamed answer

    def error(self, status: int, message: str, code: str | None) -> web.Response: ...


class OllamaDialect:
    """Ollama's /api/chat (``chat``) and /api/generate: NDJSON lines."""

    content_type = "application/x-ndjson"

    def __init__(self, chat: bool) -> None:
        self.chat = chat

    def _line(self, model: str, text: str, done: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"model": model, "created_at": _now_iso()}
        if self.chat:
            out["message"] = {"role": "assistant", "content": text}
        else:
            out["response"] = text
        out["done"] = done
        return out

    def _final(self, res: AskResult, text: str) -> dict[str, Any]:
        out = self._line(res.model, text, True)
        out.update({"done_reason": res.finish_reason,
                    "total_duration": int(res.duration * 1e9), "load_duration": 0,
                    "prompt_eval_count": res.prompt_tokens,
                    "eval_count": res.completion_tokens,
                    "eval_duration": int(max(0.0, res.duration - res.ttft) * 1e9)})
        if not self.chat:
            out["context"] = []
        return out

    def first(self, model: str) -> bytes:
        return b""

    def piece(self, model: str, text: str) -> bytes:
        return _ndjson(self._line(model, text, False))

    def last(self, res: AskResult) -> bytes:
        return _ndjson(self._final(res, ""))

    def stream_error(self, message: str) -> bytes:
        return _ndjson({"error": message})

    def whole(self, res: AskResult) -> web.Response:
        return web.json_response(self._final(res, res.answer))

    def error(self, status: int, message: str, code: str | None) -> web.Response:
        return web.json_response({"error": message}, status=status)


#: the finish reasons OpenAI's API defines; any other reason a server gave is "stop"
OPENAI_FINISH = frozenset({"stop", "length", "content_filter", "tool_calls", "function_call"})


class OpenAIDialect:
    """OpenAI's /v1/chat/completions: server-sent events."""

    content_type = "text/event-stream"

    def __init__(self, include_usage: bool) -> None:
        self.include_usage = include_usage
        self.cid = "chatcmpl-" + uuid.uuid4().hex[:24]
        self.created = int(time.time())

    def _chunk(self, model: str, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        return {"id": self.cid, "object": "chat.completion.chunk", "created": self.created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    @staticmethod
    def _usage(res: AskResult) -> dict[str, int]:
        return {"prompt_tokens": res.prompt_tokens, "completion_tokens": res.completion_tokens,
                "total_tokens": res.prompt_tokens + res.completion_tokens}

    @staticmethod
    def finish(res: AskResult) -> str:
        return res.finish_reason if res.finish_reason in OPENAI_FINISH else "stop"

    def first(self, model: str) -> bytes:
        return _sse(self._chunk(model, {"role": "assistant", "content": ""}, None))

    def piece(self, model: str, text: str) -> bytes:
        return _sse(self._chunk(model, {"content": text}, None))

    def last(self, res: AskResult) -> bytes:
        out = _sse(self._chunk(res.model, {}, self.finish(res)))
        if self.include_usage:
            out += _sse({"id": self.cid, "object": "chat.completion.chunk",
                         "created": self.created, "model": res.model, "choices": [],
                         "usage": self._usage(res)})
        return out + b"data: [DONE]\n\n"

    def stream_error(self, message: str) -> bytes:
        return _sse({"error": {"message": message, "type": "server_error", "code": None}})

    def whole(self, res: AskResult) -> web.Response:
        return web.json_response({
            "id": self.cid, "object": "chat.completion", "created": self.created,
            "model": res.model,
            "choices": [{"index": 0, "finish_reason": self.finish(res),
                         "message": {"role": "assistant", "content": res.answer}}],
            "usage": self._usage(res)})

    def error(self, status: int, message: str, code: str | None) -> web.Response:
        return _openai_error(status, message, code)


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


def _openai_error(status: int, message: str, code: str | None) -> web.Response:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return web.json_response({"error": {"message": message, "type": kind, "param": None,
                                        "code": code}}, status=status)


def _ndjson(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode() + b"\n"


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"


class FrontDoorSite(Site):
    """Runs a ``FrontDoor`` on ``bind:port`` inside the current event loop."""

    def __init__(self, door: FrontDoor, bind: str, port: int) -> None:
        check_bind(bind, door.allow_lan)
        super().__init__(door.app(), bind, port)
        self.door = door
        self.bind = bind
