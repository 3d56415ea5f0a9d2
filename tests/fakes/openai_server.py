"""A spec-faithful fake of the OpenAI-compatible API as llama.cpp's server speaks it.

Owns ``FakeOpenAI``: ``GET /health``, ``GET /v1/models``, ``POST /v1/chat/completions``
streamed as server-sent events (a role chunk, one chunk per token, a chunk with
``finish_reason``, a usage chunk with empty ``choices`` when
``stream_options.include_usage`` is set, then ``data: [DONE]``) or as one JSON object.
Errors are ``{"error": {"message", "type", "code"}}``; an API key, when given, is required
as ``Authorization: Bearer``. Speed and faults come from ``FakeServer``.

``url`` is the base URL with ``/v1``, as labrouter's config takes it.
Run as a process: ``python -m tests.fakes.openai_server --port 0 --models smollm2``.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiohttp import web

from . import CHUNKS_BEFORE_FAULT, FakeModel, FakeServer, cli, count_words, split_tokens


class FakeOpenAI(FakeServer):
    """A fake OpenAI-compatible server on 127.0.0.1 (SSE streaming)."""

    protocol = "openai"
    default_path = "/v1"

    def __init__(self, models: Sequence[str | FakeModel | Mapping[str, Any]] = (),
                 loaded: Iterable[str] | None = None, *, api_key: str = "",
                 **kwargs: Any) -> None:
        super().__init__(models, loaded, **kwargs)
        self.api_key = api_key

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/health", self.health)
        app.router.add_get("/v1/models", self.list_models)
        app.router.add_post("/v1/chat/completions", self.chat)

    @staticmethod
    def error(status: int, message: str, type_: str = "") -> web.Response:
        kind = type_ or {401: "authentication_error", 404: "not_found_error",
                         429: "rate_limit_error", 503: "unavailable_error"}.get(
                             status, "server_error")
        return web.json_response({"error": {"code": status, "message": message,
                                            "type": kind}}, status=status)

    def unauthorized(self, request: web.Request) -> web.Response | None:
        if self.api_key and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self.error(401, "Invalid API Key", "authentication_error")
        return None

    async def health(self, request: web.Request) -> web.StreamResponse:
        await self.record(request)
        fault = self.take_fault("")
        if fault is not None:
            return await self.non_stream_fault(request, fault, self.error)
        return web.json_response({"status": "ok"})

    async def list_models(self, request: web.Request) -> web.StreamResponse:
        await self.record(request)
        denied = self.unauthorized(request)
        if denied is not None:
            return denied
        fault = self.take_fault("")
        if fault is not None:
            return await self.non_stream_fault(request, fault, self.error)
        data = [{"id": m.name, "object": "model", "created": 1_760_000_000,
                 "owned_by": "fake"} for m in self.models.values()]
        return web.json_response({"object": "list", "data": data})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body, model = await self.record(request)
        denied = self.unauthorized(request)
        if denied is not None:
            return denied
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return self.error(400, "'messages' is required", "invalid_request_error")
        fault = self.take_fault(model)
        if fault in ("http500", "not_found", "busy"):
            return await self.non_stream_fault(request, fault, self.error)
        if fault == "hang":
            await self.hang()
            raise web.HTTPServiceUnavailable()
        if model not in self.models:
            return self.error(404, f"The model `{model}` does not exist",
                              "invalid_request_error")
        cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        stream = bool(body.get("stream"))
        usage_wanted = bool((body.get("stream_options") or {}).get("include_usage"))
        async with self.slot():
            await self.ensure_loaded(model)
            tps, ttft, _ = self.speed(model)
            tokens = split_tokens(self.answer_for(model))
            reason = "stop"
            limit = body.get("max_tokens") or body.get("max_completion_tokens")
            if isinstance(limit, int) and 0 <= limit < len(tokens):
                tokens, reason = tokens[:limit], "length"
            usage = {"prompt_tokens": count_words(body["messages"]),
                     "completion_tokens": len(tokens)}
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            if not stream:
                if fault is not None:
                    return await self.non_stream_fault(request, fault, self.error)
                if ttft > 0:
                    await asyncio.sleep(ttft)
                for _ in tokens:
                    await self.pace(tps)
                return web.json_response({
                    "id": cid, "object": "chat.completion", "created": int(time.time()),
                    "model": model,
                    "choices": [{"index": 0, "finish_reason": reason,
                                 "message": {"role": "assistant",
                                             "content": "".join(tokens)}}],
                    "usage": usage,
                })
            # llama.cpp's server sends its headers before the first token is ready
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            if fault == "hang_first":
                await self.hang()
                return resp
            if ttft > 0:
                await asyncio.sleep(ttft)

            async def event(choices: list[dict[str, Any]], **extra: Any) -> None:
                obj = {"id": cid, "object": "chat.completion.chunk",
                       "created": int(time.time()), "model": model, "choices": choices,
                       **extra}
                await resp.write(b"data: " + json.dumps(obj).encode() + b"\n\n")

            await event([{"index": 0, "delta": {"role": "assistant", "content": None},
                          "finish_reason": None}])
            for i, tok in enumerate(tokens):
                if i == CHUNKS_BEFORE_FAULT and fault is not None:
                    return await self.mid_stream_fault(request, resp, fault)
                if i:
                    await self.pace(tps)
                await event([{"index": 0, "delta": {"content": tok}, "finish_reason": None}])
            if fault is not None:
                return await self.mid_stream_fault(request, resp, fault)
            await event([{"index": 0, "delta": {}, "finish_reason": reason}])
            if usage_wanted:
                await event([], usage=usage)
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            return resp

    async def mid_stream_fault(self, request: web.Request, resp: web.StreamResponse,
                               fault: str) -> web.StreamResponse:
        if fault == "drop":
            self.drop(request)
        elif fault == "hang_mid":
            await self.hang()
        elif fault == "malformed":
            await resp.write(b'data: {"choices": [{"delta": {"content": "oo\n\n')
            await self.hang()  # the client must give up by itself on the bad event
        else:
            err = {"error": {"code": 500, "message": "an error the fake was told to produce "
                             "mid-stream", "type": "server_error"}}
            await resp.write(b"data: " + json.dumps(err).encode() + b"\n\n")
            await resp.write_eof()
        return resp


if __name__ == "__main__":
    cli(FakeOpenAI)
