"""The client for OpenAI-compatible servers (llama.cpp's llama-server, LM Studio, vLLM, clouds).

Owns ``OpenAIBackend``: ``GET {url}/models`` and streaming ``POST {url}/chat/completions``
(server-sent events ending in ``data: [DONE]``, usage through ``stream_options``), where
``url`` is the base URL up to and including ``/v1``, as OpenAI's own clients take it.
The API key comes from the environment variable the config names and is sent as a bearer
token; it is never logged. Images go as base64 ``data:`` URLs (the only kind Ollama's and
llama.cpp's OpenAI endpoints accept). Errors are translated in ``_http``.

Must not import desktop packages or anything in ``app/``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import AsyncIterator, Iterable
from typing import Any

import httpx

from ..core.config import TimeoutConfig
from ..core.errors import ProtocolError, ServerFailure
from ..core.peers import ModelInfo
from ._http import Deadlines, HttpSide, expect, got_token, make_client
from .base import ChatChunk, ChatMessage, ChatOptions
from .ollama import vision_from_name

log = logging.getLogger(__name__)

_IMAGE_MAGIC = (
    (b"\x89PNG", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"RIFF", "image/webp"),
    (b"BM", "image/bmp"),
)


def image_data_url(b64: str) -> str:
    """A data URL for a base64 image, with the media type read from its first bytes."""
    try:
        head = base64.b64decode(b64[:24] + "=" * (-len(b64[:24]) % 4))
    except (binascii.Error, ValueError):
        head = b""
    mime = next((m for magic, m in _IMAGE_MAGIC if head.startswith(magic)), "image/png")
    return f"data:{mime};base64,{b64}"


class OpenAIBackend:
    """One OpenAI-compatible server. ``url`` ends in /v1 (e.g. http://host:8080/v1)."""

    kind = "openai"

    def __init__(self, url: str, timeouts: TimeoutConfig | None = None, *, name: str = "",
                 api_key: str = "", api_key_env: str = "", models: Iterable[str] = (),
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self.name = name or re.sub(r"^https?://", "", self.url)
        self.timeouts = timeouts or TimeoutConfig()
        self.api_key_env = api_key_env
        self.configured_models = tuple(models)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = make_client(self.url, self.timeouts, headers=headers,
                                   transport=transport)
        self._http = HttpSide(self.name, self.timeouts, self._client)
        self._known: dict[str, ModelInfo] = {}

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.url!r})"

    # ------------------------------------------------------------ probes

    async def version(self) -> str:
        """There is no version endpoint in this API: a cheap /models call proves liveness."""
        await self._models_raw()
        return "openai-compatible"

    async def list_models(self) -> list[ModelInfo]:
        try:
            entries = await self._models_raw()
        except ProtocolError:
            # some servers cannot list their models; the config's list stands in for them
            if not self.configured_models:
                raise
            entries = []
        out: dict[str, ModelInfo] = {}
        for e in entries:
            info = self._model_info(e)
            out[info.name] = info
        for name in self.configured_models:
            out.setdefault(name, self._guess(name))
        self._known.update(out)
        return list(out.values())

    async def loaded_models(self) -> list[str]:
        return []  # the API has no notion of models in memory

    async def show(self, model: str) -> ModelInfo:
        """What is known of the model (from /models when listed), without a request."""
        return self._known.get(model) or self._guess(model)

    # ------------------------------------------------------------ chat

    async def chat(self, model: str, messages: list[ChatMessage],
                   options: ChatOptions | None = None) -> AsyncIterator[ChatChunk]:
        """Stream an answer over SSE; the last chunk has done=True and the usage counts."""
        opts = options or ChatOptions()
        what = f"chat with {model}"
        body = self._chat_body(model, messages, opts)
        dl = Deadlines.begin(self.timeouts)
        response = await self._http.open_stream("/chat/completions", body, what, dl,
                                                model=model, api_key_env=self.api_key_env)
        usage: dict[str, Any] = {}
        finish = ""
        data_lines: list[str] = []
        lines = self._http.lines(response, what, dl)
        try:
            async for line in lines:
                if line.startswith(":"):
                    continue  # an SSE comment: a keep-alive ping
                if line.strip():
                    field, _sep, value = line.partition(":")
                    if field == "data":
                        data_lines.append(value[1:] if value.startswith(" ") else value)
                    continue  # event:, id:, retry: carry nothing for us
                if not data_lines:
                    continue
                payload = "\n".join(data_lines)
                data_lines = []
                if payload.strip() == "[DONE]":
                    await self._http.drain(lines)  # keeps the connection for the next chat
                    yield self._done(usage, finish)
                    return
                event = self._parse_event(payload, what)
                text, reason, thinking = self._delta(event, what)
                if isinstance(event.get("usage"), dict):
                    usage = event["usage"]
                if reason:
                    finish = reason
                if text or thinking:
                    # reasoning tokens show the server is alive, but are not answer text
                    got_token(dl)
                if text:
                    yield ChatChunk(text=text)
                elif thinking:
                    yield ChatChunk()  # alive, thinking: the caller's deadlines see it
            if data_lines and "".join(data_lines).strip() == "[DONE]":
                yield self._done(usage, finish)
                return
            if finish:
                # the stream ended cleanly after the last choice finished but without [DONE]:
                # some servers skip it; the answer is complete
                yield self._done(usage, finish)
                return
            raise ServerFailure(
                f"{self.name} ended {what} before the answer was complete (no [DONE])",
                hint="The server may have crashed or restarted; try again, or check its log.",
            )
        finally:
            await response.aclose()

    def _chat_body(self, model: str, messages: list[ChatMessage],
                   opts: ChatOptions) -> dict[str, Any]:
        msgs: list[dict[str, Any]] = []
        for m in messages:
            if m.images:
                parts: list[dict[str, Any]] = [{"type": "text", "text": m.content}]
                parts.extend({"type": "image_url", "image_url": {"url": image_data_url(img)}}
                             for img in m.images)
                msgs.append({"role": m.role, "content": parts})
            else:
                msgs.append({"role": m.role, "content": m.content})
        body: dict[str, Any] = {
            "model": model,
            "messages": msgs,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if opts.temperature is not None:
            body["temperature"] = opts.temperature
        if opts.seed is not None:
            body["seed"] = opts.seed
        if opts.max_tokens is not None:
            body["max_tokens"] = opts.max_tokens
        body.update(opts.extra)
        return body

    def _parse_event(self, payload: str, what: str) -> dict[str, Any]:
        try:
            event = json.loads(payload)
        except ValueError as exc:
            raise ProtocolError(
                f"{self.name} sent an event that is not JSON in {what}: {payload[:80]!r}",
                hint="Check that the url points at an OpenAI-compatible server ending in /v1.",
            ) from exc
        if not isinstance(event, dict):
            raise ProtocolError(f"{self.name} sent a non-object event in {what}")
        if "error" in event:
            err = event["error"]
            msg = err.get("message") if isinstance(err, dict) else err
            raise ServerFailure(f"{self.name} failed in the middle of {what}: {msg}",
                                hint="Check the server's log.")
        return event

    def _delta(self, event: dict[str, Any], what: str) -> tuple[str, str, bool]:
        """(content text, finish reason, whether reasoning tokens came) of one event."""
        choices = event.get("choices") or []
        expect(isinstance(choices, list), self.name, what, "choices is not a list")
        text, reason, thinking = "", "", False
        for choice in choices[:1]:  # n=1: one choice
            expect(isinstance(choice, dict), self.name, what, "a choice is not an object")
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if isinstance(content, str):
                text = content
            elif content is not None:
                raise ProtocolError(f"{self.name}: delta.content is not text in {what}")
            thinking = bool(delta.get("reasoning_content") or delta.get("reasoning"))
            reason = str(choice.get("finish_reason") or "")
        return text, reason, thinking

    @staticmethod
    def _done(usage: dict[str, Any], finish: str) -> ChatChunk:
        def count(key: str) -> int | None:
            v = usage.get(key)
            return v if isinstance(v, int) and not isinstance(v, bool) else None

        return ChatChunk(done=True, prompt_tokens=count("prompt_tokens"),
                         completion_tokens=count("completion_tokens"),
                         done_reason=finish or "stop")

    # ------------------------------------------------------------ memory

    async def unload(self, model: str) -> None:
        """The API cannot unload models; nothing to do."""

    async def aclose(self) -> None:
        await self._client.aclose()

    # ------------------------------------------------------------ models

    async def _models_raw(self) -> list[dict[str, Any]]:
        data = await self._http.request_json("GET", "/models", "GET /models",
                                             api_key_env=self.api_key_env)
        expect(isinstance(data, dict) and isinstance(data.get("data"), list), self.name,
               "GET /models", "expected {'data': [...]}")
        entries: list[dict[str, Any]] = data["data"]
        for e in entries:
            expect(isinstance(e, dict) and isinstance(e.get("id"), str), self.name,
                   "GET /models", "a model without an id")
        # llama-server also lists an Ollama-shaped "models" array with capabilities
        caps = {str(m.get("model") or m.get("name")): m.get("capabilities") or []
                for m in data.get("models") or [] if isinstance(m, dict)}
        for e in entries:
            if e["id"] in caps and "capabilities" not in e:
                e["capabilities"] = caps[e["id"]]
        return entries

    def _model_info(self, entry: dict[str, Any]) -> ModelInfo:
        name = entry["id"]
        guess = self._guess(name)
        meta = entry.get("meta") or {}  # llama-server: n_params, size
        n_params = meta.get("n_params") if isinstance(meta, dict) else None
        size = meta.get("size") if isinstance(meta, dict) else None
        caps = entry.get("capabilities") or []
        params = guess.params_b
        if isinstance(n_params, int | float) and n_params > 0:
            params = round(n_params / 1e9, 3)
        return ModelInfo(
            name=name,
            size=int(size) if isinstance(size, int | float) else 0,
            params_b=params,
            vision=guess.vision or "vision" in caps or "multimodal" in caps,
            family=guess.family,
        )

    @staticmethod
    def _guess(name: str) -> ModelInfo:
        return ModelInfo(name=name, params_b=ModelInfo.guess_params(name),
                         vision=vision_from_name(name))
