"""The HTTP plumbing the backends share: the client, the timeouts, the error mapping.

Owns how one backend talks HTTP: building its ``httpx.AsyncClient``, enforcing the four
timeouts of ``TimeoutConfig`` around requests and streams, and translating every httpx
exception and every unhappy HTTP status into a ``core.errors.BackendError`` type where it
enters, with ``raise ... from exc``. Knows nothing of Ollama or OpenAI payloads beyond the
shape of their error bodies.

Timeouts: ``connect`` goes to httpx (it knows when a TCP/TLS handshake is stuck);
``first_token``, ``gap`` and ``total`` are the deadlines of ``deadlines.Deadlines`` around
each wait for the server (what each means is written there, the same for the relay), so a
server that accepts the connection and then says nothing can never hang a caller. Library
errors become ``core.errors`` types through the one table of ``failures.py``.

Must not import desktop packages or anything in ``app/``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any, NoReturn, TypeVar

import httpx

from ..core.config import TimeoutConfig
from ..core.errors import (
    BackendError,
    BackendTimeout,
    ModelNotFound,
    ProtocolError,
    Refused,
    ServerFailure,
)
from .deadlines import Deadlines, Expired, timeout_error
from .failures import transport_error

__all__ = ["Deadlines", "HttpSide", "expect", "fail_protocol", "got_token", "make_client",
           "parse_json"]

log = logging.getLogger(__name__)
T = TypeVar("T")

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
    if transport is None and base_url.startswith("http://"):
        transport = PlainHTTPTransport()
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


class PlainHTTPTransport(httpx.AsyncHTTPTransport):
    """httpx's transport without an eagerly built TLS context, for http:// servers.

    ``httpx.AsyncHTTPTransport`` loads the whole CA bundle into an SSL context when it is
    made (about 20-50 ms and a few MB per client), even for a LAN server spoken to in plain
    HTTP. httpcore's pool with ``ssl_context=None`` builds its default (verifying) context
    only if an https:// connection is ever opened, so nothing is weakened: this is not
    ``verify=False``. Everything but the pool is httpx's own transport.
    """

    def __init__(self) -> None:  # noqa: D107 - the parent's pool, minus the TLS context
        import httpcore

        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20,
                              keepalive_expiry=30.0)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=None, max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry)


class HttpSide:
    """Helpers bound to one server: its label for messages and its timeouts."""

    def __init__(self, label: str, timeouts: TimeoutConfig, client: httpx.AsyncClient) -> None:
        self.label = label
        self.timeouts = timeouts
        self.client = client

    # ------------------------------------------------------------ timeouts and errors

    def timeout_error(self, which: str, what: str) -> BackendTimeout:
        return timeout_error(self.timeouts, which, self.label, what)

    async def wait(self, awaitable: Awaitable[T], which: str, what: str, dl: Deadlines, *,
                   mid_stream: bool = False) -> T:
        """Await one step of a request before its deadline (``which`` or ``total``)."""
        try:
            return await dl.wait(awaitable, which)
        except Expired as exc:
            raise self.timeout_error(exc.which, what) from None
        except httpx.HTTPError as exc:
            raise self.translate(exc, what, mid_stream=mid_stream) from exc

    def translate(self, exc: httpx.HTTPError, what: str, *,
                  mid_stream: bool = False) -> BackendError:
        """An httpx exception as the error type the fallover logic decides on."""
        return transport_error(exc, self.label, what, self.timeouts, mid_stream=mid_stream)

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
                body = await self.wait(response.aread(), "gap", what, dl)
            else:
                body = await response.aread()
        except BackendError:
            body = b""
        raise self.status_error(response.status_code, body, what, model=model,
                                api_key_env=api_key_env)

    # ------------------------------------------------------------ requests

    async def send(self, request: httpx.Request) -> httpx.Response:
        """Send a request, streaming its response.

        Connections are kept between requests (every response is read to its end); a
        server closes an idle one on its own time (llama.cpp's after a few seconds), and if
        that happens just as the connection is reused, the request fails before any
        response: it is sent once more, on a new connection. A second failure is the
        server's own.
        """
        try:
            return await self.client.send(request, stream=True)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
            return await self.client.send(request, stream=True)

    async def request_json(self, method: str, path: str, what: str, *,
                           body: Mapping[str, Any] | None = None, model: str = "",
                           api_key_env: str = "") -> Any:
        """One small request whose answer is one JSON document.

        The whole exchange must finish within ``first_token`` (and ``total``): these calls
        (tags, ps, show, version) are cheap on a healthy server.
        """
        dl = Deadlines.begin(self.timeouts)
        request = self.client.build_request(method, path, json=body)
        response = await self.wait(self.send(request), "first_token", what, dl)
        try:
            await self.raise_for_status(response, what, model=model, api_key_env=api_key_env,
                                        dl=dl)
            raw = await self.wait(response.aread(), "first_token", what, dl)
        finally:
            await response.aclose()
        return parse_json(raw, self.label, what)

    async def open_stream(self, path: str, body: Mapping[str, Any], what: str,
                          dl: Deadlines, *, model: str = "",
                          api_key_env: str = "") -> httpx.Response:
        """Send a streaming POST and return the response once its headers are in."""
        request = self.client.build_request("POST", path, json=body)
        response: httpx.Response = await self.wait(self.send(request), "first_token", what,
                                                   dl)
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
            try:
                line = await self.wait(anext(it), "gap" if dl.token_seen else "first_token",
                                       what, dl, mid_stream=True)
            except StopAsyncIteration:
                return
            yield line

    async def drain(self, lines: AsyncIterator[str], limit: float = 1.0) -> None:
        """Read the rest of a finished stream (normally just the end of the chunked body)
        so httpx puts the connection back in its pool instead of closing it: without this,
        every chat costs a new TCP connection (and a TLS handshake to a cloud server).
        Anything unexpected (more lines, a slow or broken end) just closes the connection.
        """
        try:
            async with asyncio.timeout(limit):
                async for _ in lines:
                    pass
        except (TimeoutError, BackendError):
            pass


def got_token(dl: Deadlines) -> None:
    """Mark that the first token arrived: from now on the gap timeout applies."""
    dl.got_token()


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
