"""How each API writes an answer: the Ollama and OpenAI dialects.

Owns ``Dialect`` (the protocol ``FrontDoor._serve``, the one streaming path, writes through)
and its two implementations: ``OllamaDialect`` (NDJSON lines for /api/chat and
/api/generate) and ``OpenAIDialect`` (server-sent events for /v1/chat/completions), with the
finish reason and the token counts as the serving backend reported them.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web

from ...ask import AskResult


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


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
        out: dict[str, Any] = {"model": model, "created_at": now_iso()}
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
        return openai_error(status, message, code)


def openai_error(status: int, message: str, code: str | None) -> web.Response:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return web.json_response({"error": {"message": message, "type": kind, "param": None,
                                        "code": code}}, status=status)


def _ndjson(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode() + b"\n"


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"
