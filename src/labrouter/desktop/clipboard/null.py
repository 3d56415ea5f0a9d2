"""The null clipboard: an in-process value (headless sessions, and the fake in tests)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import Saved


@dataclass
class MemoryClipboard:
    """Holds text, PRIMARY and an image in memory; ``writes`` records what was written."""

    text: str | None = None
    primary: str | None = None
    image: bytes | None = None
    supports_primary: bool = False
    primary_time: int = 0  # stands for X's selection timestamp (tests)
    writes: list[str] = field(default_factory=list)
    name: str = "null"

    def read_text(self) -> str | None:
        return self.text

    def write_text(self, text: str) -> None:
        self.writes.append(text)
        self.text = text
        self.image = None

    def save(self) -> Saved | None:
        text = self.read_text()
        if text is not None:
            return Saved("text", text.encode("utf-8", "surrogatepass"))
        return Saved("image/png", self.image) if self.image is not None else None

    def put_back(self, saved: Saved | None) -> None:
        if saved is not None and saved.kind == "image/png":
            self.writes.append("<image>")
            self.text, self.image = None, saved.data
            return
        self.write_text(saved.data.decode("utf-8", "surrogatepass") if saved else "")

    def read_primary(self) -> str | None:
        return self.primary if self.supports_primary else None

    def primary_stamp(self) -> str:
        return str(self.primary_time) if self.supports_primary else ""

    def read_image(self) -> bytes | None:
        return self.image

    @property
    def has_primary(self) -> bool:
        return self.supports_primary
