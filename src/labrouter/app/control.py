"""The control channel between the CLI (or tray) and the running daemon.

Owns ``ControlServer``: a TCP server on 127.0.0.1 (an ephemeral port, loopback only), whose
port, a random token and the daemon's pid are written to ``paths.control_file`` (mode
0600). Requests are JSON lines ``{"token": ..., "cmd": ..., ...}``, answers are JSON lines
``{"ok": true, "result": ...}`` or ``{"ok": false, "error": ..., "hint": ...}``. Commands
are registered by name (the daemon registers status, nodes, pause, resume,
report_failure, stop; other services may add theirs). A handler may return an async
iterator instead of a result: its items go out as ``{"ok": true, "event": ...}`` lines, then
``{"ok": true, "end": true}`` (or an error line); a client that hangs up stops it (the
iterator is closed), and the connection ends with the stream (``ask`` uses this).

Owns ``ControlClient`` (plain blocking sockets, for the CLI): ``from_paths(paths)`` returns
None when no daemon runs. Must not import desktop packages.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import inspect
import json
import logging
import os
import secrets
import socket
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from ..core.errors import AllFailed, DaemonError, LabrouterError, NoCandidate
from .paths import Paths, write_private

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Any | Awaitable[Any]]
#: a request line may carry a prompt with an image (``ask``), in base64; only a connection
#: that has shown the token may send lines that long
MAX_LINE = 32 * 1024 * 1024
#: before the token is shown: any local user can connect, and must not make the daemon
#: buffer 32 MiB for a line that is then refused
MAX_LINE_UNAUTHENTICATED = 64 * 1024
IDLE_TIMEOUT = 30.0  # seconds a connection may wait between requests


class ControlServer:
    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.token = secrets.token_hex(16)
        self.handlers: dict[str, Handler] = {}
        self.port = 0
        self._server: asyncio.AbstractServer | None = None

    def register(self, cmd: str, handler: Handler) -> None:
        self.handlers[cmd] = handler

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0,
                                                  limit=MAX_LINE_UNAUTHENTICATED)
        self.port = self._server.sockets[0].getsockname()[1]
        write_private(self.paths.control_file, json.dumps(
            {"port": self.port, "token": self.token, "pid": os.getpid()}).encode())

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            try:
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            except TimeoutError:
                pass
            self._server = None
        try:
            d = json.loads(self.paths.control_file.read_text(encoding="utf-8"))
            if d.get("token") == self.token:
                self.paths.control_file.unlink()
        except (OSError, ValueError):
            pass

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        authenticated = False
        try:
            while True:
                limit = MAX_LINE if authenticated else MAX_LINE_UNAUTHENTICATED
                try:
                    # an idle connection is closed: any local user can connect, and
                    # connections held open forever would use up the daemon's file handles
                    line = await asyncio.wait_for(read_line(reader, limit), IDLE_TIMEOUT)
                except TimeoutError:
                    break
                except ValueError:
                    writer.write(json.dumps({"ok": False, "error": "request too long"}).encode()
                                 + b"\n")
                    await writer.drain()
                    break
                if not line:
                    break
                if self._is_token_line(line):
                    authenticated = True  # no answer: the request follows on this line's heels
                    continue
                reply = await self._dispatch(line)
                if isinstance(reply, AsyncGenerator):
                    await self._stream(reply, reader, writer)
                    break
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
                if reply.get("error") == "bad token":
                    break  # one guess per connection
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _stream(self, events: AsyncGenerator[Any, None], reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        async def pump() -> None:
            try:
                async for event in events:
                    writer.write(json.dumps({"ok": True, "event": event}).encode() + b"\n")
                    await writer.drain()
                end: dict[str, Any] = {"ok": True, "end": True}
            except LabrouterError as exc:
                end = error_reply(exc)
            except Exception as exc:  # noqa: BLE001 - the daemon keeps running
                log.exception("a control stream failed")
                end = {"ok": False, "error": f"failed: {exc}"}
            finally:
                await events.aclose()
            writer.write(json.dumps(end).encode() + b"\n")
            await writer.drain()

        task = asyncio.create_task(pump())
        # the client sends nothing more: a read that returns means it hung up (EOF), and
        # then the stream is stopped, which stops the work behind it
        hangup = asyncio.create_task(reader.read(1))
        try:
            await asyncio.wait({task, hangup}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            hangup.cancel()
            if not task.done():
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task

    def _is_token_line(self, line: bytes) -> bool:
        """True for ``{"token": ...}`` alone with the right token: it lets the connection
        send long lines. A wrong token here is answered by _dispatch like any request."""
        try:
            req = json.loads(line)
        except (ValueError, RecursionError):
            return False
        if not isinstance(req, dict) or set(req) != {"token"}:
            return False
        return hmac.compare_digest(str(req["token"]).encode("utf-8", "replace"),
                                   self.token.encode())

    async def _dispatch(self, line: bytes) -> dict[str, Any] | AsyncGenerator[Any, None]:
        try:
            req = json.loads(line)
            if not isinstance(req, dict):
                raise ValueError
        except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested deep
            return {"ok": False, "error": "not a JSON object"}
        # compared as bytes: compare_digest raises TypeError on non-ASCII str
        if not hmac.compare_digest(str(req.get("token", "")).encode("utf-8", "replace"),
                                   self.token.encode()):
            return {"ok": False, "error": "bad token"}
        cmd = str(req.get("cmd", ""))
        handler = self.handlers.get(cmd)
        if handler is None:
            return {"ok": False, "error": f"unknown command {cmd!r}",
                    "hint": f"commands: {', '.join(sorted(self.handlers))}"}
        try:
            result = handler(req)
            if inspect.isawaitable(result):
                result = await result
            if isinstance(result, AsyncGenerator):
                return result
            return {"ok": True, "result": result}
        except LabrouterError as exc:
            return error_reply(exc)
        except Exception as exc:  # noqa: BLE001 - the daemon keeps running
            log.exception("control command %s failed", cmd)
            return {"ok": False, "error": f"{cmd} failed: {exc}"}


async def read_line(reader: asyncio.StreamReader, limit: int) -> bytes:
    """One line of at most ``limit`` bytes (ValueError past it), or what came before EOF.
    The reader's own limit may be smaller: a long line is gathered piece by piece."""
    buf = bytearray()
    while True:
        try:
            chunk = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            buf += exc.partial
            if len(buf) > limit:
                raise ValueError("line too long") from None
            return bytes(buf)
        except asyncio.LimitOverrunError as exc:
            buf += await reader.readexactly(exc.consumed)
            if len(buf) > limit:
                raise ValueError("line too long") from None
            continue
        buf += chunk
        if len(buf) > limit:
            raise ValueError("line too long")
        return bytes(buf)


def token_line(token: str) -> bytes:
    """The line that shows the token before a long request (see MAX_LINE)."""
    return json.dumps({"token": token}).encode() + b"\n"


def error_reply(exc: LabrouterError) -> dict[str, Any]:
    """The error line for a LabrouterError; its type, and what was tried for AllFailed,
    travel too, so that the client can raise the same error."""
    reply: dict[str, Any] = {"ok": False, "error": exc.message, "hint": exc.hint,
                             "type": type(exc).__name__}
    if isinstance(exc, AllFailed):
        reply["attempts"] = [list(a) for a in exc.attempts]
    return reply


def error_from_reply(reply: dict[str, Any]) -> LabrouterError:
    """The error an error line describes (DaemonError for a type it does not name)."""
    message, hint = str(reply.get("error", "refused")), str(reply.get("hint", ""))
    kind = reply.get("type")
    if kind == "AllFailed":
        raw = reply.get("attempts")
        attempts = [(str(a[0]), str(a[1])) for a in raw if isinstance(a, list) and len(a) == 2] \
            if isinstance(raw, list) else []
        return AllFailed(message, attempts, hint=hint)
    if kind == "NoCandidate":
        return NoCandidate(message, hint=hint)
    return DaemonError(message, hint=hint)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if os.name == "nt":
        return True  # the connect below decides
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ControlClient:
    """Talks to the running daemon. One short connection per call."""

    def __init__(self, port: int, token: str, pid: int = 0, timeout: float = 5.0) -> None:
        self.port, self.token, self.pid, self.timeout = port, token, pid, timeout

    @classmethod
    def from_paths(cls, paths: Paths, timeout: float = 5.0) -> ControlClient | None:
        """A client for the daemon of these paths, or None when none runs."""
        try:
            d = json.loads(paths.control_file.read_text(encoding="utf-8"))
            port, token, pid = int(d["port"]), str(d["token"]), int(d.get("pid", 0))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if pid and not _pid_alive(pid):
            return None
        client = cls(port, token, pid, timeout)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=min(timeout, 2.0)):
                pass
        except OSError:
            return None
        return client

    def call(self, cmd: str, **args: Any) -> Any:
        """Run one command in the daemon; its result, or DaemonError with its message."""
        return self.request({**args, "cmd": cmd})

    def request(self, req_obj: dict[str, Any]) -> Any:
        """The same as call() with the request as a dict: ``{"cmd": ..., ...}``."""
        req = token_line(self.token) + json.dumps(
            {**req_obj, "token": self.token}).encode() + b"\n"
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout) as s:
                s.sendall(req)
                buf = b""
                while not buf.endswith(b"\n"):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
        except OSError as exc:
            raise DaemonError(f"the daemon did not answer ({exc})",
                              hint="Check `labrouter status`; restart it with "
                                   "`labrouter run`.") from None
        try:
            reply = json.loads(buf)
        except ValueError:
            raise DaemonError("the daemon sent a garbled answer",
                              hint="Restart it with `labrouter run`.") from None
        if not reply.get("ok"):
            raise DaemonError(str(reply.get("error", "refused")), hint=str(reply.get("hint", "")))
        return reply.get("result")
