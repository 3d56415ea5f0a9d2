"""Inference backends: one client per server, chosen by the server's kind.

Owns ``make_backend``, the one way the rest of labrouter gets a ``Backend`` for a configured
server (``core.config.ServerConfig``) or a server seen in the peer table
(``core.peers.ServerState``). The clients live in ``ollama.py`` and ``openai.py``; the
protocol and its data in ``base.py``. Must not import desktop packages or ``app/``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import httpx

from ..core.config import ServerConfig, TimeoutConfig
from ..core.errors import ConfigError
from ..core.peers import ServerState
from .base import Backend, ChatChunk, ChatMessage, ChatOptions
from .ollama import OllamaBackend
from .openai import OpenAIBackend

log = logging.getLogger(__name__)

__all__ = [
    "Backend", "ChatChunk", "ChatMessage", "ChatOptions", "OllamaBackend", "OpenAIBackend",
    "make_backend",
]


def make_backend(server: ServerConfig | ServerState, timeouts: TimeoutConfig | None = None,
                 env: Mapping[str, str] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> Backend:
    """A backend for ``server``. ``env`` (default: os.environ) supplies the API key.

    The caller owns the backend and must ``await backend.aclose()`` when done with it.
    """
    timeouts = timeouts or TimeoutConfig()
    if isinstance(server, ServerConfig):
        name = server.label
        models: tuple[str, ...] = server.models
    else:
        name = server.id
        models = tuple(m.name for m in server.models)
    if server.kind == "ollama":
        return OllamaBackend(server.url, timeouts, name=name, transport=transport)
    if server.kind == "openai":
        environ = os.environ if env is None else env
        api_key = environ.get(server.api_key_env, "") if server.api_key_env else ""
        if server.api_key_env and not api_key:
            log.warning("server %s: $%s is not set; sending no API key", name,
                        server.api_key_env)
        return OpenAIBackend(server.url, timeouts, name=name, api_key=api_key,
                             api_key_env=server.api_key_env, models=models,
                             transport=transport)
    raise ConfigError(
        f"server {name}: unknown kind {server.kind!r}",
        hint='Set kind = "ollama" or kind = "openai" for this server in the config.',
    )
