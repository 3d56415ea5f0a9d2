"""How a failed HTTP exchange becomes a ``core.errors`` type: one table for both clients.

Owns the table (``classify``) from the exceptions of httpx (``backends/_http.py``) and of
aiohttp (``relay/client.py``; its rows are made only once something imported aiohttp, so
a process that speaks only httpx never loads it) to what happened, and
``transport_error``, which turns one into the ``BackendError`` the fallover logic decides
on, with one wording for both. The decision uses the exception's type and whether the
answer had started (``mid_stream``), never its message text. Cancellation is not an
error here: it is never caught.

Must not import ``app``, ``relay`` or desktop packages.
"""

from __future__ import annotations

import asyncio
import enum
import sys
from typing import Any

import httpx

from ..core.config import TimeoutConfig
from ..core.errors import BackendError, ProtocolError, ServerFailure, Unreachable
from .deadlines import timeout_error


class Failure(enum.Enum):
    CONNECT_TIMEOUT = "connect timeout"  # the handshake did not finish within connect
    READ_TIMEOUT = "read timeout"  # the library's own timeout while waiting for data
    UNREACHABLE = "unreachable"  # nothing answers at that address
    BAD_URL = "bad url"
    PIN_MISMATCH = "pin mismatch"  # a peer's certificate is not the one it announced
    CONNECTION_LOST = "connection lost"  # reset or closed under the exchange
    BROKEN_HTTP = "broken http"  # the server broke the HTTP exchange (malformed, cut off)
    UNDECODABLE = "undecodable"  # a body that cannot be decoded


#: first match wins, so a subclass comes before its base class
_HTTPX: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], Failure], ...] = (
    (httpx.ConnectTimeout, Failure.CONNECT_TIMEOUT),
    (httpx.TimeoutException, Failure.READ_TIMEOUT),
    (httpx.ConnectError, Failure.UNREACHABLE),
    ((httpx.UnsupportedProtocol, httpx.InvalidURL), Failure.BAD_URL),
    (httpx.RemoteProtocolError, Failure.BROKEN_HTTP),
    ((httpx.ReadError, httpx.WriteError), Failure.CONNECTION_LOST),
    (httpx.DecodingError, Failure.UNDECODABLE),
    (httpx.TransportError, Failure.UNREACHABLE),
)
#: what any library may raise, after the libraries' own types
_GENERIC: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], Failure], ...] = (
    (asyncio.TimeoutError, Failure.READ_TIMEOUT),
    (ConnectionError, Failure.CONNECTION_LOST),
    (OSError, Failure.UNREACHABLE),
)
_aiohttp_table: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], Failure],
                      ...] | None = None


def _aiohttp() -> Any:
    """aiohttp if something imported it: an aiohttp error cannot exist otherwise, and a
    process that talks only httpx (``labrouter ask`` to local servers) need not load it."""
    return sys.modules.get("aiohttp")


def _table() -> tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], Failure],
                      ...]:
    global _aiohttp_table
    aiohttp = _aiohttp()
    if aiohttp is None:
        return _HTTPX + _GENERIC
    if _aiohttp_table is None:
        _aiohttp_table = (
            (aiohttp.ServerFingerprintMismatch, Failure.PIN_MISMATCH),
            (aiohttp.ConnectionTimeoutError, Failure.CONNECT_TIMEOUT),
            (aiohttp.ServerTimeoutError, Failure.READ_TIMEOUT),
            (aiohttp.ClientConnectorError, Failure.UNREACHABLE),
            ((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError), Failure.CONNECTION_LOST),
            ((aiohttp.ClientPayloadError, aiohttp.ClientResponseError), Failure.BROKEN_HTTP),
            (aiohttp.InvalidURL, Failure.BAD_URL),
            (aiohttp.ClientError, Failure.UNREACHABLE),
        )
    return _HTTPX + _aiohttp_table + _GENERIC


def classify(exc: BaseException) -> Failure | None:
    """What happened, or None for an exception no HTTP library raises (a bug)."""
    for types, failure in _table():
        if isinstance(exc, types):
            return failure
    return None


def transport_error(exc: BaseException, where: str, what: str, timeouts: TimeoutConfig, *,
                    mid_stream: bool = False,
                    unreachable_hint: str = "") -> BackendError:
    """``exc`` from an HTTP library as the BackendError for ``where`` (a server's or a
    peer's name) doing ``what``."""
    if isinstance(exc, BackendError):
        return exc
    detail = str(exc) or type(exc).__name__
    failure = classify(exc)
    if failure is Failure.CONNECT_TIMEOUT:
        return timeout_error(timeouts, "connect", where, what)
    if failure is Failure.READ_TIMEOUT:
        return timeout_error(timeouts, "gap" if mid_stream else "first_token", where, what)
    if failure is Failure.PIN_MISMATCH:
        return Unreachable(
            f"{where}: the certificate at {getattr(exc, 'host', '?')}:{getattr(exc, 'port', '?')} "
            "is not the one this peer "
            "announced; nothing was sent to it",
            hint="Another device may be answering on that address. If the peer made a new "
                 "certificate, it is picked up from its next announcement.")
    if failure is Failure.BAD_URL:
        return Unreachable(f"bad server URL {where}: {detail}",
                           hint="Fix the server's url in the config (http://host:port).")
    if failure in (Failure.CONNECTION_LOST, Failure.BROKEN_HTTP) and mid_stream:
        return ServerFailure(
            f"{where} dropped the connection in the middle of {what}: {detail}",
            hint="The server may have crashed or restarted; try again, or check its log.")
    if failure is Failure.BROKEN_HTTP:
        # malformed, or closed before a response: either way not an answer to go on with
        return ServerFailure(f"{where} broke off the HTTP exchange of {what}: {detail}",
                             hint="The server may have crashed, or the url points at the "
                                  "wrong kind of server.")
    if failure is Failure.CONNECTION_LOST:
        return Unreachable(f"lost the connection to {where} during {what}: {detail}",
                           hint=unreachable_hint or f"Check that {where} is running.")
    if failure is Failure.UNDECODABLE:
        return ProtocolError(f"{where} sent an undecodable body for {what}: {detail}")
    if failure is Failure.UNREACHABLE:
        return Unreachable(
            f"cannot reach {where}: {detail}",
            hint=unreachable_hint or f"Check that the server at {where} is running and that "
                                     "the URL, port and firewall allow this machine to reach it.")
    return ProtocolError(f"{what} on {where} failed: unexpected {type(exc).__name__}: {detail}")
