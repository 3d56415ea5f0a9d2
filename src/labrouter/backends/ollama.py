"""The client for Ollama's native API.

Owns ``OllamaBackend``: ``/api/version``, ``/api/tags``, ``/api/ps``, ``/api/show``,
streaming ``/api/chat`` (NDJSON, images as base64 on messages) and unloading through
``/api/generate`` with ``keep_alive: 0``. Shapes follow Ollama's docs/api.md; every field
that Ollama marks omitempty is read as optional. Errors are translated in ``_http``.

Must not import desktop packages or anything in ``app/``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from ..core.config import TimeoutConfig
from ..core.errors import ProtocolError, ServerFailure
from ..core.peers import ModelInfo
from ._http import Deadlines, HttpSide, expect, got_token, make_client
from .base import ChatChunk, ChatMessage, ChatOptions

log = logging.getLogger(__name__)

#: families (details.families) that mean an image encoder is part of the model
VISION_FAMILIES = frozenset({"clip", "mllama", "qwen25vl", "qwen2vl"})
#: names of models that take images, for servers that say nothing better
_VISION_NAME_RE = re.compile(
    r"vision|llava|moondream|minicpm-v|bakllava|vl(?=[:\-_.]|$)|-vl|pixtral|llama4",
    re.IGNORECASE,
)


def vision_from_name(name: str) -> bool:
    """A guess from the model's name (qwen2.5vl:7b, llama3.2-vision, llava:7b, ...)."""
    return bool(_VISION_NAME_RE.search(name.split("/")[-1]))


class OllamaBackend:
    """One Ollama server, spoken to over its native API."""

    kind = "ollama"

    def __init__(self, url: str, timeouts: TimeoutConfig | None = None, *, name: str = "",
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self.name = name or re.sub(r"^https?://", "", self.url)
        self.timeouts = timeouts or TimeoutConfig()
        self._client = make_client(self.url, self.timeouts, transport=transport)
        self._http = HttpSide(self.name, self.timeouts, self._client)

    def __repr__(self) -> str:
        return f"OllamaBackend({self.url!r})"

    # ------------------------------------------------------------ probes

    async def version(self) -> str:
        data = await self._http.request_json("GET", "/api/version", "GET /api/version")
        expect(isinstance(data, dict) and isinstance(data.get("version"), str), self.name,
               "GET /api/version", "no version string")
        return str(data["version"])

    async def list_models(self) -> list[ModelInfo]:
        data = await self._http.request_json("GET", "/api/tags", "GET /api/tags")
        out: list[ModelInfo] = []
        for entry in self._model_list(data, "GET /api/tags"):
            if entry.get("remote_host"):
                # a cloud model proxied by this Ollama (runs on ollama.com): not local
                log.debug("%s: skipping remote model %s", self.name, entry.get("name"))
                continue
            out.append(self._model_info(entry))
        return out

    async def loaded_models(self) -> list[str]:
        data = await self._http.request_json("GET", "/api/ps", "GET /api/ps")
        return [str(e.get("name") or e.get("model")) for e in self._model_list(data, "GET /api/ps")]

    async def show(self, model: str) -> ModelInfo:
        data = await self._http.request_json("POST", "/api/show", "POST /api/show",
                                             body={"model": model}, model=model)
        expect(isinstance(data, dict), self.name, "POST /api/show", "not an object")
        details = data.get("details") or {}
        caps = data.get("capabilities") or []
        families = details.get("families") or []
        params = ModelInfo.guess_params(model, str(details.get("parameter_size") or ""))
        count = (data.get("model_info") or {}).get("general.parameter_count")
        if not params and isinstance(count, int | float) and count > 0:
            params = round(count / 1e9, 3)
        if "vision" in caps or "image" in caps:
            vision = True
        elif caps:
            vision = False  # the server said what the model can do, and vision is not in it
        else:
            vision = bool(VISION_FAMILIES.intersection(families)) or vision_from_name(model)
        return ModelInfo(name=model, size=0, params_b=params, vision=vision,
                         family=str(details.get("family") or ""))

    # ------------------------------------------------------------ chat

    async def chat(self, model: str, messages: list[ChatMessage],
                   options: ChatOptions | None = None) -> AsyncIterator[ChatChunk]:
        """Stream an answer from /api/chat; the last chunk has done=True and token counts."""
        opts = options or ChatOptions()
        what = f"chat with {model}"
        body = self._chat_body(model, messages, opts)
        dl = Deadlines.begin(self.timeouts)
        response = await self._http.open_stream("/api/chat", body, what, dl, model=model)
        lines = self._http.lines(response, what, dl)
        try:
            async for line in lines:
                if not line.strip():
                    continue
                data = self._parse_line(line, what)
                if "error" in data:
                    # Ollama reports failures after the 200 as an NDJSON line of their own
                    raise ServerFailure(
                        f"{self.name} failed in the middle of {what}: {data['error']}",
                        hint="Check the Ollama server's log; the model may have run out of "
                             "memory.",
                    )
                message = data.get("message") or {}
                text = message.get("content") or ""
                if not isinstance(text, str):
                    raise ProtocolError(f"{self.name}: message.content is not text in {what}")
                if text or message.get("thinking"):
                    # thinking tokens count as the server being alive, but are not answer text
                    got_token(dl)
                if data.get("done"):
                    await self._http.drain(lines)  # keeps the connection for the next chat
                    yield ChatChunk(
                        text=text, done=True,
                        prompt_tokens=_count(data.get("prompt_eval_count")),
                        completion_tokens=_count(data.get("eval_count")),
                        done_reason=str(data.get("done_reason") or "stop"),
                    )
                    return
                if text:
                    yield ChatChunk(text=text)
                elif message.get("thinking"):
                    yield ChatChunk()  # alive, thinking: the caller's deadlines see it
            raise ServerFailure(
                f"{self.name} ended {what} before the answer was complete (no done message)",
                hint="The server may have crashed or restarted; try again, or check its log.",
            )
        finally:
            await response.aclose()

    def _chat_body(self, model: str, messages: list[ChatMessage],
                   opts: ChatOptions) -> dict[str, Any]:
        msgs: list[dict[str, Any]] = []
        for m in messages:
            d: dict[str, Any] = {"role": m.role, "content": m.content}
            if m.images:
                d["images"] = list(m.images)
            msgs.append(d)
        options: dict[str, Any] = {}
        if opts.temperature is not None:
            options["temperature"] = opts.temperature
        if opts.seed is not None:
            options["seed"] = opts.seed
        if opts.max_tokens is not None:
            options["num_predict"] = opts.max_tokens
        options.update(opts.extra)
        body: dict[str, Any] = {"model": model, "messages": msgs, "stream": True}
        if options:
            body["options"] = options
        if opts.keep_alive is not None:
            body["keep_alive"] = opts.keep_alive
        return body

    # ------------------------------------------------------------ memory

    async def unload(self, model: str) -> None:
        """Ask Ollama to drop the model from memory now (keep_alive 0, no prompt)."""
        await self._http.request_json("POST", "/api/generate", f"unload of {model}",
                                      body={"model": model, "keep_alive": 0, "stream": False},
                                      model=model)

    async def aclose(self) -> None:
        await self._client.aclose()

    # ------------------------------------------------------------ parsing

    def _model_list(self, data: Any, what: str) -> list[Mapping[str, Any]]:
        expect(isinstance(data, dict) and isinstance(data.get("models", []), list), self.name,
               what, "expected {'models': [...]}")
        models = data.get("models") or []
        for e in models:
            expect(isinstance(e, dict) and isinstance(e.get("name") or e.get("model"), str),
                   self.name, what, "a model entry without a name")
        return models

    @staticmethod
    def _model_info(entry: Mapping[str, Any]) -> ModelInfo:
        name = str(entry.get("name") or entry.get("model"))
        details = entry.get("details") or {}
        families = details.get("families") or []
        caps = entry.get("capabilities") or []
        size = entry.get("size")
        vision = ("vision" in caps or bool(VISION_FAMILIES.intersection(families))
                  or vision_from_name(name))
        return ModelInfo(
            name=name,
            size=int(size) if isinstance(size, int | float) else 0,
            params_b=ModelInfo.guess_params(name, str(details.get("parameter_size") or "")),
            vision=vision,
            family=str(details.get("family") or ""),
        )

    def _parse_line(self, line: str, what: str) -> dict[str, Any]:
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise ProtocolError(
                f"{self.name} sent a line that is not JSON in {what}: {line[:80]!r}",
                hint="Check that the url points at an Ollama server (kind = \"ollama\").",
            ) from exc
        if not isinstance(data, dict):
            raise ProtocolError(f"{self.name} sent a non-object line in {what}: {line[:80]!r}")
        return data


def _count(value: object) -> int | None:
    """A token count, or None when the server left it out (omitempty means unknown, not 0)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value
