"""The interface every inference backend implements, and the data it returns.

Owns ``Backend`` (the protocol spoken to one server), ``ChatMessage``, ``ChatChunk`` and
``ChatOptions``. Implementations (ollama.py, openai.py) translate every httpx error into
``core.errors`` types where it enters, so callers decide fallover by type alone.
Must not import desktop packages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from ..core.peers import ModelInfo


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str
    images: tuple[str, ...] = ()  # base64-encoded images (vision models)


@dataclass(frozen=True)
class ChatOptions:
    temperature: float | None = None
    seed: int | None = None
    max_tokens: int | None = None
    keep_alive: str | None = None  # Ollama only
    extra: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class ChatChunk:
    """A piece of a streamed answer. The last one has done=True and the token counts.

    A chunk with no text that is not done says the server is alive but thinking
    (reasoning tokens, which are not answer text): deadlines count it as a token.
    """

    text: str = ""
    done: bool = False
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    done_reason: str = ""


class Backend(Protocol):
    """One inference server. Every method raises only ``core.errors.BackendError`` types."""

    kind: str
    url: str

    async def version(self) -> str: ...

    async def list_models(self) -> list[ModelInfo]: ...

    async def loaded_models(self) -> list[str]: ...

    async def show(self, model: str) -> ModelInfo: ...

    def chat(self, model: str, messages: list[ChatMessage],
             options: ChatOptions | None = None) -> AsyncIterator[ChatChunk]: ...

    async def unload(self, model: str) -> None: ...

    async def aclose(self) -> None: ...
