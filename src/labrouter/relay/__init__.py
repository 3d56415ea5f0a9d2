"""The authenticated relay between labrouter daemons.

Owns the HTTPS relay that lets one daemon use another machine's inference servers while
those stay bound to 127.0.0.1: ``tls`` (the node's self-signed certificate and its
fingerprint), ``auth`` (the per-request proof of the cluster key), ``server`` (the aiohttp
application that forwards to this node's own servers) and ``client`` (``RelayBackend``, a
``Backend`` that reaches one server of one peer through that peer's relay, pinned to the
fingerprint the peer announced).

Must not import ``desktop``, ``autostart`` or ``app``: the daemon wires this package in
(``app/http_services.py``), never the reverse. Importing the package itself is cheap; the
submodules import aiohttp and cryptography.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ..backends.base import ChatChunk, ChatMessage, ChatOptions
from ..core.errors import (
    BackendError,
    BackendTimeout,
    ModelNotFound,
    ProtocolError,
    Refused,
    ServerFailure,
    Unreachable,
)
from ..core.peers import ModelInfo

#: the version of the relay protocol; it is in every path (/relay/v1/...) and in the
#: key-derivation info, so a future v2 cannot be confused with v1
RELAY_PROTOCOL = "v1"

# ------------------------------------------------------------------ the wire codec
# JSON shapes shared by server.py and client.py; see docs/relay.md for the protocol.

#: error types that cross the relay by name; anything else arrives as ServerFailure
_ERRORS: dict[str, type[BackendError]] = {
    cls.__name__: cls
    for cls in (Unreachable, BackendTimeout, ModelNotFound, Refused, ServerFailure,
                ProtocolError)
}


def messages_to_json(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    return [{"role": m.role, "content": m.content, "images": list(m.images)} for m in messages]


def messages_from_json(data: Any) -> list[ChatMessage]:
    if not isinstance(data, list):
        raise ValueError("messages must be a list")
    out = []
    for m in data:
        if not isinstance(m, dict) or not isinstance(m.get("content", ""), str):
            raise ValueError("each message is an object with a string content")
        images = m.get("images") or []
        if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
            raise ValueError("images must be a list of base64 strings")
        out.append(ChatMessage(role=str(m.get("role", "user")), content=m.get("content", ""),
                               images=tuple(images)))
    return out


def options_to_json(options: ChatOptions | None) -> dict[str, Any] | None:
    return None if options is None else asdict(options)


def options_from_json(data: Any) -> ChatOptions | None:
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ValueError("options must be an object")
    known = {"temperature", "seed", "max_tokens", "keep_alive", "extra"}
    kwargs = {k: v for k, v in data.items() if k in known}
    if not isinstance(kwargs.get("extra", {}), dict):
        raise ValueError("options.extra must be an object")
    return ChatOptions(**kwargs)


def chunk_to_json(chunk: ChatChunk) -> dict[str, Any]:
    return asdict(chunk)


def chunk_from_json(data: dict[str, Any]) -> ChatChunk:
    return ChatChunk(text=str(data.get("text", "")), done=bool(data.get("done", False)),
                     prompt_tokens=data.get("prompt_tokens"),
                     completion_tokens=data.get("completion_tokens"),
                     done_reason=str(data.get("done_reason", "")))


def model_to_json(m: ModelInfo) -> dict[str, Any]:
    return asdict(m)


def model_from_json(data: Any) -> ModelInfo:
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise ValueError("a model is an object with a name")
    return ModelInfo(name=data["name"], size=int(data.get("size") or 0),
                     params_b=float(data.get("params_b") or 0.0),
                     vision=bool(data.get("vision", False)), family=str(data.get("family", "")))


def error_to_json(exc: BackendError) -> dict[str, Any]:
    name = type(exc).__name__
    for cls in type(exc).__mro__:  # a subclass travels as the closest type the client knows
        if cls.__name__ in _ERRORS:
            name = cls.__name__
            break
    return {"error": {"type": name, "message": exc.message, "hint": exc.hint}}


def error_from_json(data: Any, prefix: str = "") -> BackendError | None:
    """The BackendError an error body describes, or None when it is not one."""
    if not isinstance(data, dict) or "error" not in data:
        return None
    err = data["error"]
    if isinstance(err, str):
        return ServerFailure(prefix + err)
    if not isinstance(err, dict):
        return ServerFailure(prefix + "malformed error from the relay")
    cls = _ERRORS.get(str(err.get("type", "")), ServerFailure)
    return cls(prefix + str(err.get("message", "error")), hint=str(err.get("hint", "")))
