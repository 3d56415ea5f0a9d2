"""Turning a streamed Markdown answer into styled spans, a line at a time.

Owns :class:`MarkdownStream`: fed the whole answer so far, it returns the spans of the
lines completed since the last call (to append for good) and the spans of the line still
being written (to redraw on every update). Only what a model answer needs to be readable:
fenced code blocks (monospace, shaded), headings, bullets, ``inline code`` and **bold**.
Copy always takes the raw text, so nothing here has to round-trip.

Tags: ``code`` (a line of a fenced block), ``codelang`` (the fence's language label),
``codepad`` (the thin shaded line that closes a block, or opens one that names no
language), ``h`` (a heading), ``li`` (a list item), ``icode`` (inline code), ``b``
(bold); the window maps them to fonts and colours. Pure standard library, no Tk: the
tests run it directly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

Span = tuple[str, tuple[str, ...]]

_FENCE = re.compile(r"^\s{0,3}(```|~~~)\s*([\w+#.-]*)")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*)$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^(\s*)(\d{1,3}[.)])\s+(.*)$")
_INLINE = re.compile(r"(`[^`\n]+`|\*\*[^*\n]+\*\*)")


def inline(text: str, base: tuple[str, ...] = ()) -> list[Span]:
    """Spans of one line of prose: `code` and **bold** styled, the rest as it is."""
    out: list[Span] = []
    for part in _INLINE.split(text):
        if not part:
            continue
        if len(part) > 2 and part.startswith("`") and part.endswith("`"):
            out.append((part[1:-1], (*base, "icode")))
        elif len(part) > 4 and part.startswith("**") and part.endswith("**"):
            out.append((part[2:-2], (*base, "b")))
        else:
            out.append((part, base))
    return out


@dataclass
class MarkdownStream:
    """Incremental rendering of one answer (create a new one per turn)."""

    done_upto: int = 0  # characters of the answer rendered for good (whole lines)
    in_code: bool = False
    fence: str = ""
    _lines: list[str] = field(default_factory=list)

    def update(self, answer: str) -> tuple[list[Span], list[Span]]:
        """(spans of newly completed lines, spans of the unfinished last line)."""
        end = answer.rfind("\n") + 1
        done: list[Span] = []
        if end > self.done_upto:
            for line in answer[self.done_upto:end].split("\n")[:-1]:
                done += self._line(line, final=True)
            self.done_upto = end
        tail = self._line(answer[end:], final=False) if end < len(answer) else []
        return done, tail

    def _line(self, line: str, final: bool) -> list[Span]:
        nl = "\n" if final else ""
        fence = _FENCE.match(line)
        if fence and (not self.in_code or fence.group(1) == self.fence):
            if not final:
                return []  # a fence being written: wait for its line to end
            if self.in_code:
                self.in_code = False
                return [("\n", ("codepad",))]
            self.in_code, self.fence = True, fence.group(1)
            lang = fence.group(2)
            return [(lang + "\n", ("codelang",))] if lang else [("\n", ("codepad",))]
        if not final and line.strip() and len(line.strip()) < 3 and \
                set(line.strip()) <= {"`", "~"}:
            return []  # may become a fence
        if self.in_code:
            return [(line + nl, ("code",))]
        m = _HEADING.match(line)
        if m:
            return [*inline(m.group(2), ("h",)), (nl, ("h",))] if final else \
                inline(m.group(2), ("h",))
        m = _BULLET.match(line)
        if m:
            return [(m.group(1) + "•  ", ("li",)), *inline(m.group(2), ("li",)), (nl, ("li",))]
        m = _NUMBERED.match(line)
        if m:
            return [(f"{m.group(1)}{m.group(2)} ", ("li",)), *inline(m.group(3), ("li",)),
                    (nl, ("li",))]
        return [*inline(line), (nl, ())]


def spans_of(answer: str) -> list[Span]:
    """All the spans of a complete answer (tests, and redrawing a whole answer)."""
    stream = MarkdownStream()
    done, tail = stream.update(answer)
    return [s for s in done + tail if s[0]]
