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

Laid out by job: ``requests.py`` (the bodies parsed), ``dialects.py`` (how each API writes an
answer), ``access.py`` (loopback, Host and Origin checks), ``app.py`` (the routes and the one
streaming path).
"""

from __future__ import annotations

from .access import check_bind, is_loopback
from .app import MAX_BODY, OLLAMA_COMPAT_VERSION, AskerLike, Exchange, FrontDoor, FrontDoorSite
from .dialects import Dialect, OllamaDialect, OpenAIDialect
from .requests import (
    AUTO,
    BadRequest,
    Parsed,
    parse_ollama_chat,
    parse_ollama_generate,
    parse_openai_chat,
)

__all__ = ["AUTO", "MAX_BODY", "OLLAMA_COMPAT_VERSION", "AskerLike", "BadRequest", "Dialect",
           "Exchange", "FrontDoor", "FrontDoorSite", "OllamaDialect", "OpenAIDialect", "Parsed",
           "check_bind", "is_loopback", "parse_ollama_chat", "parse_ollama_generate",
           "parse_openai_chat"]
