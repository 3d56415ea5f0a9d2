"""The relay client: a ``Backend`` that reaches one server of one peer through its relay.

Owns ``RelayBackend`` (the Backend protocol over the relay API of ``server.py``), the pinning
of the peer's certificate to the fingerprint it announced, the key proof on every request,
the translation of every aiohttp error and relay status into ``core.errors`` types where it
enters, and ``RelayConnector``, the router's ``connector(candidate)``: this machine's own
servers are reached directly, a peer's servers through its relay.

Pinning uses ``aiohttp.Fingerprint``: the connector compares the SHA-256 of the peer's DER
certificate right after the TLS handshake, before a request byte is written, so a prompt is
never sent to a machine that does not hold the announced certificate. No CA and no host
name are involved; environment proxies are ignored (``trust_env=False``).

Must not import ``app``, ``cluster`` or ``desktop``: the key comes as a ``KeySource``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar, runtime_checkable

import aiohttp

from ..backends.base import Backend, ChatChunk, ChatMessage, ChatOptions
from ..backends.deadlines import Deadlines, Expired, timeout_error
from ..backends.failures import transport_error
from ..core.config import TimeoutConfig
from ..core.errors import (
    BackendError,
    ModelNotFound,
    ProtocolError,
    Refused,
    ServerFailure,
    Unreachable,
)
from ..core.peers import ModelInfo
from ..core.policy import Candidate
from . import (
    RELAY_PROTOCOL,
    chunk_from_json,
    error_from_json,
    messages_to_json,
    model_from_json,
    options_to_json,
)
from .auth import RequestSigner
from .tls import normalize_fingerprint

log = logging.getLogger(__name__)

T = TypeVar("T")
KeySource = Callable[[], bytes | None]
Connector = Callable[[Candidate], Backend]


@runtime_checkable
class Closable(Protocol):
    async def aclose(self) -> None: ...


def _hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address and not address.startswith("[") else \
        f"{address}:{port}"


class RelayBackend:
    """One server (``server_id``) of one peer, through that peer's relay.

    ``session`` may be shared between backends of the same peer (``RelayConnector`` does);
    a backend closes only a session it made itself.
    """

    def __init__(self, address: str, port: int, fingerprint: str, server_id: str,
                 key: bytes | KeySource, timeouts: TimeoutConfig | None = None, *,
                 kind: str = "ollama", peer_name: str = "",
                 session: aiohttp.ClientSession | None = None,
                 clock: Callable[[], float] = time.time,
                 requester: str = "", route: str = "") -> None:
        self.kind = kind
        # who asks and on which route: the peer logs the request it serves under this
        # machine's name, so its owner sees where its GPU went
        self.requester = requester
        self.route = route
        self.server_id = server_id
        self.peer_name = peer_name or address
        self.base = f"https://{_hostport(address, port)}"
        self.url = f"{self.base}/relay/{RELAY_PROTOCOL}/#{server_id}"
        self.timeouts = timeouts or TimeoutConfig()
        self.pin: aiohttp.Fingerprint | None
        try:
            self.pin = aiohttp.Fingerprint(bytes.fromhex(normalize_fingerprint(fingerprint)))
        except ValueError:
            self.pin = None  # every request then fails as Unreachable, before connecting
        self._key = key
        self._session = session
        self._own_session = session is None
        self.clock = clock  # wall clock for the proof's timestamp

    # ---------------------------------------------------------------- plumbing

    def _signer(self) -> RequestSigner:
        key = self._key() if callable(self._key) else self._key
        if not key:
            raise Refused("no cluster key on this machine, so peers cannot be asked",
                          hint="Join the cluster with `labrouter join <code>`.")
        return RequestSigner.from_cluster_key(key)

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = new_session(self.timeouts)
            self._own_session = True
        return self._session

    def _where(self) -> str:
        return f"{self.peer_name} (relay)"

    async def _open(self, action: str, payload: Mapping[str, Any],
                    dl: Deadlines) -> aiohttp.ClientResponse:
        """Send one signed request; returns the response once its headers are in (2xx)."""
        if self.pin is None:
            raise Unreachable(f"{self._where()}: announced no valid certificate fingerprint",
                              hint="Update labrouter on that machine.")
        path = f"/relay/{RELAY_PROTOCOL}/{action}"
        body = json.dumps({"server": self.server_id, **payload},
                          separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json",
                   **self._signer().headers("POST", path, body, self.clock())}
        session = self._get_session()
        resp = await self._wait(session.post(self.base + path, data=body, headers=headers,
                                             ssl=self.pin, allow_redirects=False),
                                "first_token", action, dl)
        if resp.status == 200:
            return resp
        try:
            raise await self._status_error(resp, dl)
        finally:
            resp.release()

    async def _wait(self, aw: Awaitable[T], which: str, what: str, dl: Deadlines, *,
                    mid_stream: bool = False) -> T:
        """One wait for the peer, bounded by the request's deadlines."""
        try:
            return await dl.wait(aw, which)
        except Expired as exc:
            raise timeout_error(self.timeouts, exc.which, self._where(), what) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise self._translate(exc, what, mid_stream=mid_stream) from exc

    async def _status_error(self, resp: aiohttp.ClientResponse, dl: Deadlines) -> BackendError:
        try:
            data = json.loads(await self._wait(resp.text(), "gap", "an error answer", dl))
        except (BackendError, ValueError):
            data = None
        where = self._where()
        if resp.status == 401:
            detail = ""
            if isinstance(data, dict) and isinstance(data.get("error"), dict):
                detail = str(data["error"].get("message", ""))
            return Refused(
                f"{where} refused this machine's key proof ({detail or 'unauthorized'}): "
                "the cluster keys differ",
                hint="Run `labrouter key show` on both machines; if the ids differ, join "
                     "this machine again with a code from `labrouter key export`. Check "
                     "that both clocks are right too.")
        err = error_from_json(data, prefix=f"{where}: ")
        if resp.status in (429, 503):
            # busy or paused: the peer is fine, the router moves on to the next candidate
            msg = err.message if err is not None else f"{where}: busy (HTTP {resp.status})"
            return Refused(msg, hint=err.hint if err is not None else "")
        if err is not None:
            return err
        if resp.status == 404:
            return ModelNotFound(f"{where}: not found (HTTP 404)")
        return ServerFailure(f"{where}: HTTP {resp.status}")

    def _translate(self, exc: BaseException, what: str, *,
                   mid_stream: bool = False) -> BackendError:
        """The ``core.errors`` type for an aiohttp or socket error (cancellation is never
        caught, so it always propagates as itself)."""
        return transport_error(
            exc, self._where(), what, self.timeouts, mid_stream=mid_stream,
            unreachable_hint="Check that labrouter runs on that machine and that its "
                             "firewall lets the relay port through.")

    async def _call(self, action: str, payload: Mapping[str, Any] | None = None) -> Any:
        """One small request whose answer is one JSON document, within ``first_token``
        (as a direct server's ``tags`` or ``show``)."""
        dl = Deadlines.begin(self.timeouts)
        resp = await self._open(action, payload or {}, dl)
        try:
            text = await self._wait(resp.text(), "first_token", action, dl)
        finally:
            resp.release()
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ProtocolError(f"{self._where()}: the answer is not JSON") from exc

    # ---------------------------------------------------------------- Backend

    async def version(self) -> str:
        data = await self._call("version")
        return str(data.get("version", "")) if isinstance(data, dict) else ""

    async def list_models(self) -> list[ModelInfo]:
        data = await self._call("models")
        try:
            return [model_from_json(m) for m in data["models"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"{self._where()}: malformed model list") from exc

    async def loaded_models(self) -> list[str]:
        data = await self._call("loaded")
        loaded = data.get("loaded") if isinstance(data, dict) else None
        if not isinstance(loaded, list):
            raise ProtocolError(f"{self._where()}: malformed list of loaded models")
        return [str(x) for x in loaded]

    async def show(self, model: str) -> ModelInfo:
        data = await self._call("show", {"model": model})
        try:
            return model_from_json(data["model"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"{self._where()}: malformed model details") from exc

    async def unload(self, model: str) -> None:
        await self._call("unload", {"model": model})

    def chat(self, model: str, messages: list[ChatMessage],
             options: ChatOptions | None = None) -> AsyncIterator[ChatChunk]:
        return self._chat(model, messages, options)

    async def _chat(self, model: str, messages: list[ChatMessage],
                    options: ChatOptions | None) -> AsyncIterator[ChatChunk]:
        what = f"chat with {model}"
        dl = Deadlines.begin(self.timeouts)
        payload: dict[str, Any] = {"model": model, "messages": messages_to_json(messages),
                                   "options": options_to_json(options)}
        if self.requester:
            payload["for"] = {"node": self.requester}
        if self.route:
            payload["route"] = self.route
        # the relay sends its headers with the first chunk, so this wait covers the load
        resp = await self._open("chat", payload, dl)
        dl.got_token()
        done = False
        try:
            while not done:
                line = await self._wait(resp.content.readline(), "gap", what, dl,
                                        mid_stream=True)
                if not line:
                    raise ProtocolError(f"{self._where()}: the stream ended before the answer "
                                        "was complete")
                if not line.strip():
                    continue
                try:
                    data = json.loads(line)
                except ValueError as exc:
                    raise ProtocolError(f"{self._where()}: a stream line is not JSON") from exc
                err = error_from_json(data, prefix=f"{self._where()}: ")
                if err is not None:
                    raise err
                if not isinstance(data, dict):
                    raise ProtocolError(f"{self._where()}: a stream line is not an object")
                chunk = chunk_from_json(data)
                if chunk.done:
                    # read the end of the chunked body, so the connection goes back to the
                    # pool instead of being closed under the relay's final write
                    with contextlib.suppress(Exception):
                        await dl.wait(resp.content.read(), "gap")
                    done = True
                yield chunk
        finally:
            # an early close (the caller stopped reading) drops the connection, which
            # the relay turns into an aborted upstream request
            if done:
                resp.release()
            else:
                resp.close()

    async def aclose(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None


def new_session(timeouts: TimeoutConfig) -> aiohttp.ClientSession:
    # read timeouts are asyncio deadlines in RelayBackend (first token, gap, total), so the
    # session only bounds the TCP connect and TLS handshake
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, connect=timeouts.connect,
                                      sock_connect=timeouts.connect),
        trust_env=False,
        connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=60),
    )


# the connector lives in connector.py (no aiohttp until a peer is relayed); kept here
# for the names callers already use
from .connector import RelayConnector, _key_source, _NoRoute  # noqa: E402, F401
