"""CLI commands: `route` and `ask` (`stats` is commands/stats.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..app.settings import Context
from ..core.errors import UsageError

if TYPE_CHECKING:
    from ..ask import AskEvent, AskResult, Attempt, FellOver, Started
    from ..core.classify import Classifier


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser("route", help="show how a prompt would be routed (nothing is sent)")
    r.add_argument("text", nargs="*", help="the prompt, or - to read it from stdin")
    r.add_argument("--json", action="store_true", help="print JSON")
    r.add_argument("--image", action="store_true", help="as if an image came with the prompt")
    r.add_argument("--batch", action="store_true",
                   help='read JSON lines {"id", "prompt", "image"} on stdin, write one per line')
    r.add_argument("--offline", action="store_true",
                   help="classify only; do not ask the servers what they have")
    r.set_defaults(handler=_route)

    a = sub.add_parser(
        "ask", help="ask the best live model; streams the answer",
        description="Ask the best live model of the lab. The answer streams to stdout; the "
        "route, model and machine go to stderr.",
        epilog="exit codes: 0 answered; 1 nothing could answer (every attempt and why on "
        "stderr), or nothing is selected; 2 bad usage (no prompt, a prompt that is not "
        "text, an unknown route, a file that is not an image); 130 interrupted",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("text", nargs="*", help="the prompt, or - to read it from stdin")
    a.add_argument("--route", help="force a route (quick, code, reasoning, vision, ...)")
    a.add_argument("--model", help="force a model (a name or a pattern like qwen3:*)")
    a.add_argument("--node", help="only this machine")
    a.add_argument("--image", metavar="FILE",
                   help="send an image: PNG, JPEG, GIF or WebP (vision route)")
    a.add_argument("--force", action="store_true",
                   help="send input that does not look like text (binary data) anyway")
    a.add_argument("--selection", action="store_true",
                   help="ask about the desktop's current selection (for a desktop shortcut)")
    a.add_argument("--json", action="store_true",
                   help="print one JSON object with the answer and the record")
    a.set_defaults(handler=_ask)


def _read_text(parts: list[str]) -> str:
    text = ""
    if parts == ["-"] or (not parts and not sys.stdin.isatty()):
        buffer = getattr(sys.stdin, "buffer", None)
        # bytes that are not text in the locale's encoding (a binary file, Latin-1 on a
        # UTF-8 system) become U+FFFD instead of a UnicodeDecodeError under strict locales
        text = (buffer.read().decode(sys.stdin.encoding or "utf-8", "replace")
                if buffer is not None else sys.stdin.read())
    elif parts:
        text = " ".join(parts)
    if not text.strip():
        raise UsageError("no prompt given", hint="Pass the prompt as arguments, or - to read "
                         "it from stdin.")
    return text


def _route(args: argparse.Namespace, ctx: Context) -> int:
    from ..core.classify import Classifier

    classifier = Classifier(ctx.config.classifier.keywords)
    if args.batch:
        return _route_batch(classifier)
    text = _read_text(args.text)
    c = classifier.classify(text, image=args.image)
    out: dict[str, Any] = {"route": c.route, "confidence": round(c.confidence, 3),
                           "scores": {k: round(v, 3) for k, v in c.scores.items()},
                           "reasons": list(c.reasons)}
    if not args.offline:
        from ..app.local import current_peers
        from ..core.policy import choose

        peers, origin = asyncio.run(current_peers(ctx))
        notes: list[str] = []
        cands = choose(c, peers, ctx.config, notes=notes)
        out["candidates"] = [{"model": x.model, "node": x.peer.name, "server": x.server.id,
                              "route": x.route, "reason": x.reason} for x in cands]
        out["notes"] = notes
        out["peers_from"] = origin
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"route: {c.route}  (confidence {c.confidence:.2f})")
    print("scores: " + ", ".join(f"{k} {v:.2f}" for k, v in out["scores"].items()))
    for reason in c.reasons:
        print(f"  - {reason}")
    if "candidates" in out:
        src = "the running daemon" if out["peers_from"] == "daemon" else "the configured servers"
        print(f"candidates (from {src}):")
        if not out["candidates"]:
            print("  none: no live server has a model for this route")
        for i, x in enumerate(out["candidates"], 1):
            print(f"  {i}. {x['model']} on {x['node']} ({x['server']}): {x['reason']}")
        for n in out["notes"][1:]:
            print(f"  note: {n}")
    return 0


def _route_batch(classifier: Classifier) -> int:
    out = sys.stdout
    for lineno, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        ident: object = None
        try:
            d = json.loads(line)
            if not isinstance(d, dict):
                raise ValueError("expected a JSON object")
            ident = d.get("id")
            prompt = d.get("prompt")
            if not isinstance(prompt, str):
                raise ValueError('"prompt" must be a string')
            image = d.get("image", False)
            if not isinstance(image, bool):
                raise ValueError('"image" must be true or false')
            c = classifier.classify(prompt, image=image)
            rec = {"id": ident, "route": c.route, "confidence": round(c.confidence, 3)}
        except ValueError as exc:
            rec = {"id": None, "error": f"line {lineno}: {exc}"}
        out.write(json.dumps(rec) + "\n")
    out.flush()
    return 0


def _ask(args: argparse.Namespace, ctx: Context) -> int:
    if args.route and args.route not in ctx.config.routes:
        # an unknown route would silently answer on the defaults and log a made-up route
        raise UsageError(f"no route named {args.route!r}",
                         hint="Routes: " + ", ".join(ctx.config.routes)
                         + " (add [routes.<name>] to the config file for another).")
    image: bytes | None = None
    if args.image:
        image = _read_image(args.image)
    if args.selection:
        from ..desktop.backends import display_reason
        from ..desktop.selection import read_selection_for_cli

        no_display = display_reason()
        if no_display:
            print(f"labrouter: --selection needs a desktop session ({no_display})",
                  file=sys.stderr)
            return 1
        text = read_selection_for_cli()
        if not text.strip():
            print("labrouter: nothing is selected", file=sys.stderr)
            return 1
        bare = True
        if not args.json and _hand_to_daemon(ctx, text):
            # a desktop shortcut has no terminal: the running daemon notifies the answer
            print("labrouter: asked the running daemon; the answer comes as a notification",
                  file=sys.stderr)
            return 0
    else:
        text = _read_text(args.text)
        bare = False
        if not args.force and (why := _not_text(text)):
            raise UsageError(f"the prompt does not look like text: {why}",
                             hint="Send text (for an image use --image FILE), or add --force "
                             "to send it as it is.")
    return asyncio.run(_ask_async(args, ctx, text, image, bare))


def _read_image(name: str) -> bytes:
    from ..core.images import FORMATS, image_kind

    try:
        data = Path(name).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read the image {name}: {exc.strerror}",
                         hint="Check the path.") from None
    if image_kind(data) is None:
        raise UsageError(f"{name} is not an image: it is not {', '.join(FORMATS[:-1])} or "
                         f"{FORMATS[-1]}", hint="Convert it to PNG or JPEG first.")
    return data


def _not_text(text: str) -> str | None:
    """Why ``text`` looks like binary data (`head -c 2000 /dev/urandom`), or None.

    Bytes that are not valid in the input's encoding arrive as U+FFFD (see _read_text);
    a few of those are a Latin-1 word in UTF-8 text, a tenth of a longer text is not
    text. A short prompt is refused only for NUL bytes: it cannot be much garbage."""
    if "\x00" in text:
        return "it contains NUL bytes"
    odd = sum(1 for ch in text if ch == "\ufffd" or (ch < " " and ch not in "\t\n\r\f\v\x1b"))
    if len(text) >= 32 and odd * 10 > len(text):
        return f"{odd * 100 // len(text)}% of its characters are not printable text"
    return None


async def _ask_async(args: argparse.Namespace, ctx: Context, text: str, image: bytes | None,
                     bare: bool) -> int:
    from ..app.askproxy import DaemonAsker, ProxyAsker
    from ..app.control import ControlClient
    from ..app.local import current_peers, save_speeds
    from ..app.runtime import local_asker
    from ..ask import Asker, AskRequest
    from ..core.errors import AllFailed, NoCandidate
    from ..relay.connector import RelayConnector

    # through the running daemon's Asker (one speed table, one in-flight count, one
    # stickiness history); without a daemon, the same Asker built here
    client = await asyncio.to_thread(ControlClient.from_paths, ctx.paths)
    here: list[tuple[Asker, RelayConnector]] = []

    async def ask_here() -> Asker:
        peers, _origin = await current_peers(ctx)
        here.append(local_asker(ctx, lambda: peers))
        return here[0][0]

    asker = ProxyAsker(DaemonAsker(client) if client is not None else None, ask_here)
    printer = AnswerPrinter(streaming=not args.json)
    req = AskRequest(prompt=text, image=image, route=args.route, model=args.model,
                     node=args.node, bare=bare, source="selection" if bare else "cli")
    try:
        result = await printer.show(asker.stream(req))
    except (NoCandidate, AllFailed) as exc:
        attempts = exc.attempts if isinstance(exc, AllFailed) else []
        print(f"labrouter: {exc.message}", file=sys.stderr)
        for _label, reason in attempts:
            print(f"  - {reason}", file=sys.stderr)
        print(f"  {exc.hint}", file=sys.stderr)
        if args.json:  # a script reading stdout gets an object it can parse, not nothing
            print(json.dumps({"answer": None, "error": exc.message, "hint": exc.hint,
                              "attempts": [{"candidate": c, "reason": r}
                                           for c, r in attempts]}, indent=2))
        return 1
    finally:
        for local, connector in here:
            await connector.aclose()
            save_speeds(ctx.paths.speeds_file, local.speeds)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2, ensure_ascii=False))
    else:
        if result.answer and not result.answer.endswith("\n"):
            sys.stdout.write("\n")
        sys.stdout.flush()
        if result.image_dropped:
            print("labrouter: no vision model was up; the image was left out", file=sys.stderr)
        print(f"[{route_label(result.classified_route, result.route)}] {result.model} on "
              f"{result.node}: {result.completion_tokens} "
              f"tokens, first token {result.ttft * 1000:.0f} ms, total "
              f"{result.duration:.2f} s", file=sys.stderr)
    return 0


def route_label(asked: str, served: str) -> str:
    """``code -> quick`` when the request's route had no model up and another served."""
    return served if not asked or asked == served else f"{asked} -> {served}"


class AnswerPrinter:
    """Shows an answer's events on a terminal: the candidate on stderr as it starts, the
    text on stdout as it comes, a note on stderr when a candidate is dropped."""

    def __init__(self, streaming: bool) -> None:
        self.streaming = streaming
        self._dropped: Attempt | None = None  # said when the next candidate starts

    async def show(self, events: AsyncGenerator[AskEvent, None]) -> AskResult:
        from ..ask import Done, FellOver, Started, Text

        async with aclosing(events):
            async for event in events:
                if isinstance(event, Started):
                    self._started(event)
                elif isinstance(event, Text):
                    if self.streaming:
                        sys.stdout.write(event.text)
                        sys.stdout.flush()
                elif isinstance(event, FellOver):
                    self._fell_over(event)
                elif isinstance(event, Done):
                    return event.result
        raise RuntimeError("the answer stream ended without a result")  # a bug

    def _started(self, event: Started) -> None:
        cand = event.candidate
        gone, self._dropped = self._dropped, None
        if gone is not None and gone.weak:
            self._say(f"the answer of {gone.label} looked weak; asking {cand.label}")
        elif gone is not None:
            self._say(f"{gone.reason}; asking {cand.label} instead")
        print(f"[{route_label(event.route, cand.route)}] {cand.model} on {cand.peer.name}",
              file=sys.stderr, flush=True)

    def _fell_over(self, event: FellOver) -> None:
        a = event.attempt
        if event.continued:
            # the next model goes on from the words on screen: no break in the text
            self._say(f"{a.label} stopped mid-answer ({a.error}); the next model continues "
                      "the answer")
            return
        if event.partial and self.streaming:
            sys.stdout.write("\n")  # the dropped text stays on screen; the new one below it
        if a.mid_stream:
            self._say(f"{a.label} stopped mid-answer ({a.error}); asking the next candidate "
                      "from the start")
        else:
            self._dropped = a

    @staticmethod
    def _say(text: str) -> None:
        print(f"labrouter: {text}", file=sys.stderr, flush=True)


def _hand_to_daemon(ctx: Context, text: str) -> bool:
    """Give the selection to a running desktop daemon; False when there is none."""
    try:
        from ..app.control import ControlClient

        client = ControlClient.from_paths(ctx.paths)
        if client is None:
            return False
        reply = client.request({"cmd": "ask-selection", "text": text})
    except Exception:  # noqa: BLE001 - no usable daemon: answer here instead
        return False
    return isinstance(reply, dict) and "outcome" in reply
