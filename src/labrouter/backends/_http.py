"""The HTTP plumbing the backends share: the client, the timeouts, the error mapping.

Owns how one backend talks HTTP: building its ``httpx.AsyncClient``, enforcing the four
timeouts of ``TimeoutConfig`` around requests and streams, and translating every httpx
exception and every unhappy HTTP status into a ``core.errors.BackendError`` type where it
enters, with ``raise ... from exc``. Knows nothing of Ollama or OpenAI payloads beyond the
shape of their error bodies.

Timeouts: ``connect`` goes to httpx (it knows when a TCP/TLS handshake is stuck);
``first_token``, ``gap`` and ``total`` are asyncio deadlines around each wait for the server,
so a server that accepts the connection and then says nothing can never hang a caller.
The deadlines cover only the time spent waiting for the server, never the caller's own time
between two chunks.

Must not import desktop packages or anything in ``app/``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import httpx

from ..core.config import TimeoutConfig
from ..core.errors import (
    BackendError,
    BackendTimeout,
    ModelNotFound,
    ProtocolError,
    Refused,
    ServerFailure,
    Unreachable,
)

log = logging.getLogger(__name__)

_MAX_ERROR_BODY = 300  # characters of a server's error text quoted in a message


def make_client(base_url: str, timeouts: TimeoutConfig, *,
                headers: Mapping[str, str] | None = None,
                transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """One pooled client per backend.

    Read/write timeouts are left to the asyncio deadlines (see the module docstring); httpx
    still gets ``connect`` and a pool timeout so a stuck handshake fails as a connect timeout.
    """
    timeout = httpx.Timeout(connect=timeouts.connect, read=None, write=timeouts.gap,
                            pool=timeouts.connect)
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        headers=dict(headers or {}),
        timeout=timeout,
        transport=transport,
        # A LAN inference server must never be reached through an HTTP(S)_PROXY from the
        # environment; https (cloud) servers keep the usual proxy and CA settings.
        trust_env=base_url.startswith("https://"),
        follow_redirects=False,
    )


@dataclass
class Deadlines:
    """The deadlines of one request, in loop time, from its start."""

    loop: asyncio.AbstractEventLoop
    start: float
    first_token: float
    total: float
    token_seen: bool = False  # after the first token, the gap deadline applies

    @classmethod
    def begin(cls, timeouts: TimeoutConfig) -> Deadlines:
        loop = asyncio.get_running_loop()
        now = loop.time()
        return cls(loop, now, now + timeouts.first_token, now + timeouts.total)


class HttpSide:
    """Helpers bound to one server: its label for messages and its timeouts."""

    def __init__(self, label: str, timeouts: TimeoutConfig, client: httpx.AsyncClient) -> None:
        self.label = label
        self.timeouts = timeouts
        self.client = client

    # ------------------------------------------------------------ timeouts

    def timeout_error(self, which: str, what: str) -> BackendTimeout:
        seconds = getattr(self.timeouts, which)
        text = {
            "connect": f"could not connect to {self.label} within {seconds:g} s",
            "first_token": f"{self.label} sent no answer to {what} within {seconds:g} s",
            "gap": f"{self.label} went silent for {seconds:g} s in the middle of {what}",
            "total": f"{what} on {self.label} took longer than {seconds:g} s in all",
        }[which]
        return BackendTimeout(
            f"{text} (timeouts.{which})",
            hint=f"Check that {self.label} is up and not overloaded, or raise "
                 f"timeouts.{which} in the config.",
        )

    async def wait(self, awaitable: Any, deadline: float, which: str, what: str,
                   dl: Deadlines) -> Any:
        """Await one step of a request before ``deadline`` (or the total deadline)."""
        if dl.total <= deadline:
            deadline, which = dl.total, "total"
        try:
            async with asyncio.timeout_at(deadline):
                return await awaitable
        except TimeoutError as exc:
            raise self.timeout_error(which, what) from exc
        except httpx.HTTPError as exc:
            raise self.translate(exc, what) from exc

    # ------------------------------------------------------------ exceptions

    def translate(self, exc: httpx.HTTPError, what: str, *,
                  mid_stream: bool = False) -> BackendError:
        """An httpx exception as the error type the fallover logic decides on."""
        detail = str(exc) or type(exc).__name__
        if isinstance(exc, httpx.ConnectTimeout):
            return self.timeout_error("connect", what)
        if isinstance(exc, httpx.TimeoutException):  # read/write/pool, only if httpx timed out
            return self.timeout_error("gap" if mid_stream else "first_token", what)
        if isinstance(exc, httpx.ConnectError):
            return Unreachable(
                f"cannot reach {self.label}: {detail}",
                hint=f"Check that the server at {self.label} is running and that the URL, "
                     "port and firewall allow this machine to reach it.",
            )
        if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
            return Unreachable(
                f"bad server URL {self.label}: {detail}",
                hint="Fix the server's url in the config (http://host:port).",
            )
        if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
            if mid_stream or any(w in detail for w in ("incomplete", "peer closed",
                                                       "disconnected")):
                return ServerFailure(
                    f"{self.label} dropped the connection in the middle of {what}: {detail}",
                    hint="The server may have crashed or restarted; try again, or check its "
                         "log.",
                )
            if isinstance(exc, httpx.RemoteProtocolError):
                return ProtocolError(
                    f"{self.label} answered {what} with malformed HTTP: {detail}",
                    hint="Check that the url points at the right kind of server.",
                )
            return Unreachable(
                f"lost the connection to {self.label} during {what}: {detail}",
                hint=f"Check that {self.label} is running.",
            )
        if isinstance(exc, httpx.DecodingError):
            return ProtocolError(f"{self.label} sent an undecodable body for {what}: {detail}")
        if isinstance(exc, httpx.TransportError):
            return Unreachable(f"cannot talk to {self.label}: {detail}",
                               hint=f"Check that {self.label} is running.")
        return ProtocolError(f"{what} on {self.label} failed: {detail}")

    # ------------------------------------------------------------ HTTP statuses

    def status_error(self, status: int, body: bytes, what: str, *,
                     model: str = "", api_key_env: str = "") -> BackendError:
        """An HTTP error status (and the server's error body) as an error type."""
        text = error_text(body) or f"HTTP {status}"
        where = f"{self.label} ({what})"
        if status == 404 and model:
            return ModelNotFound(
                f"{where}: model {model!r} not found: {text}",
                hint=f"Pull or install {model!r} on that server (ollama pull {model}), or "
                     "pick another model.",
            )
        if status == 404:
            return ProtocolError(
                f"{where}: HTTP 404: {text}",
                hint="Check the server's url and kind in the config (an OpenAI-compatible "
                     "url ends in /v1).",
            )
        if status in (401, 403):
            key = f" in ${api_key_env}" if api_key_env else ""
            return Refused(
                f"{where}: HTTP {status}, the server refused the credentials: {text}",
                hint=f"Check the API key{key} for this server.",
            )
        if status in (429, 503):
            return Refused(
                f"{where}: busy (HTTP {status}): {text}",
                hint="The server is overloaded or rate-limited; try again later or use "
                     "another server.",
            )
        if status >= 500:
            return ServerFailure(
                f"{where}: server error (HTTP {status}): {text}",
                hint="Check the server's log; the model may have failed to load.",
            )
        return ServerFailure(
            f"{where}: request rejected (HTTP {status}): {text}",
            hint="The server did not accept this request for this model; try another model.",
        )

    async def raise_for_status(self, response: httpx.Response, what: str, *,
                               model: str = "", api_key_env: str = "",
                               dl: Deadlines | None = None) -> None:
        if response.status_code < 400:
            return
        try:
            if dl is not None:
                body = await self.wait(response.aread(), dl.loop.time() + self.timeouts.gap,
                                       "gap", what, dl)
            else:
                body = await response.aread()
        except BackendError:
            body = b""
        raise self.status_error(response.status_code, body, what, model=model,
                                api_key_env=api_key_env)

    # ------------------------------------------------------------ requests

    async def request_json(self, method: str, path: str, what: str, *,
                           body: Mapping[str, Any] | None = None, model: str = "",
                           api_key_env: str = "") -> Any:
        """One small request whose answer is one JSON document.

        The whole exchange must finish within ``first_token`` (and ``total``): these calls
        (tags, ps, show, version) are cheap on a healthy server.
        """
        dl = Deadlines.begin(self.timeouts)
        request = self.client.build_request(method, path, json=body)
        response = await self.wait(self.client.send(request, stream=True), dl.first_token,
                                   "first_token", what, dl)
        try:
            await self.raise_for_status(response, what, model=model, api_key_env=api_key_env,
                                        dl=dl)
            raw = await self.wait(response.aread(), dl.first_token, "first_token", what, dl)
        finally:
            await response.aclose()
        return parse_json(raw, self.label, what)

    async def open_stream(self, path: str, body: Mapping[str, Any], what: str,
                          dl: Deadlines, *, model: str = "",
                          api_key_env: str = "") -> httpx.Response:
        """Send a streaming POST and return the response once its headers are in."""
        request = self.client.build_request("POST", path, json=body)
        response: httpx.Response = await self.wait(
            self.client.send(request, stream=True), dl.first_token, "first_token", what, dl)
        try:
            await self.raise_for_status(response, what, model=model, api_key_env=api_key_env,
                                        dl=dl)
        except BaseException:
            await response.aclose()
            raise
        return response

    async def lines(self, response: httpx.Response, what: str,
                    dl: Deadlines) -> AsyncIterator[str]:
        """The response body line by line, each wait bounded by a deadline.

        Until the caller marks the first token (``got_token(dl)``) the first-token deadline
        applies; afterwards the gap deadline, counted from the wait's start.
        """
        it = response.aiter_lines().__aiter__()
        while True:
            if not dl.token_seen:
                deadline, which = dl.first_token, "first_token"
            else:
                deadline, which = dl.loop.time() + self.timeouts.gap, "gap"
            try:
                line = await self.wait_line(it, deadline, which, what, dl)
            except StopAsyncIteration:
                return
            yield line

    async def wait_line(self, it: AsyncIterator[str], deadline: float, which: str,
                        what: str, dl: Deadlines) -> str:
        if dl.total <= deadline:
            deadline, which = dl.total, "total"
        try:
            async with asyncio.timeout_at(deadline):
                return await anext(it)
        except TimeoutError as exc:
            raise self.timeout_error(which, what) from exc
        except httpx.HTTPError as exc:
            raise self.translate(exc, what, mid_stream=True) from exc


def got_token(dl: Deadlines) -> None:
    """Mark that the first token arrived: from now on the gap timeout applies."""
    dl.token_seen = True


def error_text(body: bytes) -> str:
    """The message in an error body: Ollama's {"error": "..."}, OpenAI's {"error":
    {"message": ...}}, or the start of whatever text the server sent."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body.decode("utf-8", "replace").strip()[:_MAX_ERROR_BODY]
    if isinstance(data, dict):
        err = data.get("error", data.get("message", data.get("detail")))
        if isinstance(err, dict):
            err = err.get("message") or err.get("type") or json.dumps(err)
        if err:
            return str(err)[:_MAX_ERROR_BODY]
    return json.dumps(data)[:_MAX_ERROR_BODY]


def parse_json(raw: bytes | str, label: str, what: str) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        sample = raw[:80] if isinstance(raw, str) else raw[:80].decode("utf-8", "replace")
        raise ProtocolError(
            f"{label} answered {what} with something that is not JSON: {sample!r}",
            hint="Check that the url and kind in the config point at the right kind of server.",
        ) from exc


def expect(cond: bool, label: str, what: str, detail: str) -> None:
    if not cond:
        fail_protocol(label, what, detail)


def fail_protocol(label: str, what: str, detail: str) -> NoReturn:
    raise ProtocolError(
        f"{label} answered {what} in an unexpected shape: {detail}",
        hint="Check that the url and kind in the config point at the right kind of server.",
    )
