"""A client's chat request in labrouter's terms: the Ollama and OpenAI bodies parsed.

Owns ``Parsed`` (model as named, route or concrete model, the last user prompt, the earlier
turns, an image, options, stream or not), ``BadRequest`` (HTTP 400/404 with a message) and
``parse_ollama_chat``, ``parse_ollama_generate`` and ``parse_openai_chat``. Images are taken
only from base64 data; a remote image URL is refused, never fetched. Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...ask import AskRequest
from ...backends.base import ChatMessage, ChatOptions

AUTO = "auto"


class BadRequest(Exception):
    """The client's request cannot be served as given (HTTP 400/404)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


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


def _images(holder: Mapping[str, Any]) -> list[Any]:
    images = holder.get("images") or []
    if not isinstance(images, list):
        raise BadRequest("images must be a list of base64 strings")
    return images


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
        imgs = tuple(_b64(i) for i in _images(m) if isinstance(i, str))
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
    imgs = [_b64(i) for i in _images(body) if isinstance(i, str)]
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
