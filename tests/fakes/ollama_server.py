"""A spec-faithful fake of Ollama's native API, for tests and benchmarks.

Owns ``FakeOllama``: ``GET /`` ("Ollama is running"), ``/api/version``, ``/api/tags``,
``/api/ps``, ``POST /api/show``, streaming ``/api/chat`` and ``/api/generate`` (NDJSON, the
final object with ``done: true``, ``done_reason`` and the metrics), loading with an empty
request and unloading with ``keep_alive: 0``. Shapes follow Ollama's docs/api.md: headers go
out with the first token (after any cold load, as Ollama does), errors are
``{"error": "..."}`` with Ollama's status codes, and mid-stream failures are an error line
after the 200. Speed and faults come from ``FakeServer`` (see ``tests/fakes/__init__.py``).

Run as a process: ``python -m tests.fakes.ollama_server --port 0 --models qwen3:4b,llava:7b``
(prints the URL, serves until SIGTERM).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from . import (
    CHUNKS_BEFORE_FAULT,
    FakeServer,
    cli,
    count_words,
    digest,
    iso_time,
    split_tokens,
)

VERSION = "0.12.6"


class FakeOllama(FakeServer):
    """A fake Ollama server on 127.0.0.1 (native API, NDJSON streaming)."""

    protocol = "ollama"

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/", self.root)
        app.router.add_get("/api/version", self.version)
        app.router.add_get("/api/tags", self.tags)
        app.router.add_get("/api/ps", self.ps)
        app.router.add_post("/api/show", self.show)
        app.router.add_post("/api/chat", self.chat)
        app.router.add_post("/api/generate", self.generate)

    # ------------------------------------------------------------ helpers

    @staticmethod
    def error(status: int, message: str) -> web.Response:
        return web.json_response({"error": message}, status=status)

    def not_found(self, model: str) -> web.Response:
        return self.error(404, f'model "{model}" not found, try pulling it first')

    async def global_fault(self, request: web.Request) -> web.StreamResponse | None:
        """Faults set for every request ("*") also hit the cheap endpoints."""
        await self.record(request)
        fault = self.take_fault("")
        if fault is None:
            return None
        return await self.non_stream_fault(request, fault, self.error)

    def details(self, name: str) -> dict[str, Any]:
        m = self.models[name]
        return {"parent_model": "", "format": "gguf", "family": m.family,
                "families": list(m.families), "parameter_size": m.parameter_size,
                "quantization_level": "Q4_K_M"}

    # ------------------------------------------------------------ cheap endpoints

    async def root(self, request: web.Request) -> web.StreamResponse:
        return await self.global_fault(request) or web.Response(text="Ollama is running")

    async def version(self, request: web.Request) -> web.StreamResponse:
        return await self.global_fault(request) or web.json_response({"version": VERSION})

    async def tags(self, request: web.Request) -> web.StreamResponse:
        fault = await self.global_fault(request)
        if fault is not None:
            return fault
        models = [{
            "name": m.name, "model": m.name,
            "modified_at": "2026-10-01T12:00:00.000000Z",
            "size": m.size, "digest": digest(m.name), "details": self.details(m.name),
        } for m in self.models.values()]
        return web.json_response({"models": models})

    async def ps(self, request: web.Request) -> web.StreamResponse:
        fault = await self.global_fault(request)
        if fault is not None:
            return fault
        now = time.time()
        for name, until in list(self.loaded.items()):
            if until <= now:
                del self.loaded[name]  # keep_alive ran out
        models = [{
            "name": name, "model": name,
            "size": self.models[name].size if name in self.models else 0,
            "digest": digest(name),
            "details": self.details(name) if name in self.models else {},
            "expires_at": iso_time(until),
            "size_vram": self.models[name].size if name in self.models else 0,
            "context_length": 4096,
        } for name, until in self.loaded.items()]
        return web.json_response({"models": models})

    async def show(self, request: web.Request) -> web.StreamResponse:
        body, model = await self.record(request)
        fault = self.take_fault(model)
        if fault is not None:
            return await self.non_stream_fault(request, fault, self.error)
        if model not in self.models:
            return self.error(404, f"model '{model}' not found")
        m = self.models[model]
        n = float(m.parameter_size[:-1] or 0)
        count = int(n * (1e6 if m.parameter_size.endswith("M") else 1e9))
        return web.json_response({
            "license": "", "modelfile": f"FROM {model}\n", "parameters": "",
            "template": "{{ .Prompt }}", "details": self.details(model),
            "model_info": {"general.architecture": m.family,
                           "general.parameter_count": count},
            "capabilities": list(m.capabilities),
            "modified_at": "2026-10-01T12:00:00.000000Z",
        })

    # ------------------------------------------------------------ generation

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self.generation(request, chat=True)

    async def generate(self, request: web.Request) -> web.StreamResponse:
        return await self.generation(request, chat=False)

    async def generation(self, request: web.Request, chat: bool) -> web.StreamResponse:
        body, model = await self.record(request)
        if not isinstance(body, dict) or not model:
            return self.error(400, "model is required")
        fault = self.take_fault(model)
        if fault in ("http500", "not_found", "busy"):
            return await self.non_stream_fault(request, fault, self.error)
        if fault == "hang":
            await self.hang()
            raise web.HTTPServiceUnavailable()
        if model not in self.models:
            return self.not_found(model)
        keep_alive = body.get("keep_alive")
        messages = body.get("messages") or []
        prompt = body.get("prompt") or ""
        empty = not messages if chat else not prompt
        if empty and keep_alive in (0, "0", "0s", "0m"):
            self.loaded.pop(model, None)
            return web.json_response(self.final(model, chat, "unload", 0, 0, 0.0, 0.0))
        t0 = time.monotonic()
        options = body.get("options") or {}
        async with self.slot():
            load = await self.ensure_loaded(model, keep_alive)
            if empty:
                return web.json_response(self.final(model, chat, "load", 0, 0, load,
                                                    time.monotonic() - t0))
            tps, ttft, _ = self.speed(model)
            if ttft > 0:
                await asyncio.sleep(ttft)
            tokens = split_tokens(self.answer_for(model))
            reason = "stop"
            limit = options.get("num_predict")
            if isinstance(limit, int) and 0 <= limit < len(tokens):
                tokens, reason = tokens[:limit], "length"
            prompt_count = count_words(messages) if chat else count_words([{"content": prompt}])
            stream = body.get("stream", True) is not False
            if not stream:
                if fault is not None:
                    return await self.non_stream_fault(request, fault, self.error)
                for _ in tokens:
                    await self.pace(tps)
                final = self.final(model, chat, reason, prompt_count, len(tokens), load,
                                   time.monotonic() - t0)
                key = "message" if chat else "response"
                text = "".join(tokens)
                final[key] = {"role": "assistant", "content": text} if chat else text
                return web.json_response(final)
            resp = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            if fault == "hang_first":
                await self.hang()
                return resp
            for i, tok in enumerate(tokens):
                if i == CHUNKS_BEFORE_FAULT and fault in ("drop", "hang_mid", "malformed",
                                                           "error_mid"):
                    return await self.mid_stream_fault(request, resp, fault)
                if i:
                    await self.pace(tps)
                await resp.write(self.line(self.chunk(model, chat, tok)))
            if fault in ("drop", "hang_mid", "malformed", "error_mid"):
                return await self.mid_stream_fault(request, resp, fault)
            await resp.write(self.line(self.final(model, chat, reason, prompt_count,
                                                  len(tokens), load, time.monotonic() - t0)))
            if keep_alive in (0, "0", "0s", "0m"):
                self.loaded.pop(model, None)
            await resp.write_eof()
            return resp

    async def mid_stream_fault(self, request: web.Request, resp: web.StreamResponse,
                               fault: str) -> web.StreamResponse:
        if fault == "drop":
            self.drop(request)
        elif fault == "hang_mid":
            await self.hang()
        elif fault == "malformed":
            await resp.write(b'{"model": "x", "message": {"content": "oops"\n')
            await self.hang()  # the client must give up by itself on the bad line
        else:
            await resp.write(self.line({"error": "an error the fake was told to produce "
                                                 "mid-stream"}))
            await resp.write_eof()
        return resp

    @staticmethod
    def line(obj: dict[str, Any]) -> bytes:
        return json.dumps(obj).encode() + b"\n"

    @staticmethod
    def chunk(model: str, chat: bool, text: str) -> dict[str, Any]:
        out: dict[str, Any] = {"model": model, "created_at": iso_time(time.time())}
        if chat:
            out["message"] = {"role": "assistant", "content": text}
        else:
            out["response"] = text
        out["done"] = False
        return out

    def final(self, model: str, chat: bool, reason: str, prompt_count: int, eval_count: int,
              load: float, total: float) -> dict[str, Any]:
        out = self.chunk(model, chat, "")
        out.update(done=True, done_reason=reason)
        if reason in ("load", "unload"):
            return out
        out.update(total_duration=int(total * 1e9), load_duration=int(load * 1e9))
        # omitempty, as Ollama: a zero count is absent
        if prompt_count:
            out.update(prompt_eval_count=prompt_count, prompt_eval_duration=1_000_000)
        if eval_count:
            out.update(eval_count=eval_count,
                       eval_duration=max(int((total - load) * 1e9), 1))
        return out


if __name__ == "__main__":
    cli(FakeOllama)
