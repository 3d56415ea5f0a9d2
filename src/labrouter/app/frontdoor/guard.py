"""The front door's gate: only what a local program sends gets through.

Owns one aiohttp middleware (``local_only``, put in place with ``install``) that runs
before any handler of the front door, so no request it refuses can reach the router, a
model or the cloud budget:

- ``Host`` must name a loopback address (unless the user put the front door on the LAN):
  a DNS-rebinding page reaches 127.0.0.1 under its own host name.
- Any request with an ``Origin`` header comes from a web page. It is refused (403) unless
  that origin is on ``[api] allowed_origins`` (empty by default), ``Origin: null`` (a
  sandboxed iframe, a ``file:`` page, a redirect) included. Local programs send no Origin.
- A POST body must be ``application/json`` (415 otherwise): any other type is one a web
  page may send cross-site without a CORS preflight; JSON needs one, and a preflight from
  an origin not on the list is refused.
- A body larger than the cap is refused from its ``Content-Length`` before it is read
  (413), and one that grows past the cap while read gets the same JSON answer.

Allowed origins get CORS headers, so a browser app the user trusts can call the API.
Must not import desktop packages; knows nothing of the APIs behind it (``access`` holds
what "local" means).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware
from yarl import URL

from .access import host_of, is_loopback

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

def normalize_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, default ports dropped; "" if not an origin."""
    text = origin.strip()
    if text.lower() == "null":
        return ""
    try:
        url = URL(text)
    except (ValueError, TypeError):
        return ""
    if url.scheme not in ("http", "https") or not url.host:
        return ""
    port = "" if url.port is None or url.is_default_port() else f":{url.port}"
    return f"{url.scheme}://{url.host.lower()}{port}"


def _refuse(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def local_only(*, allow_lan: bool = False, allowed_origins: Iterable[str] = (),
               max_body: int) -> Middleware:
    """The middleware; ``allowed_origins`` are compared after ``normalize_origin``."""
    allowed = {o for o in (normalize_origin(x) for x in allowed_origins) if o}

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not allow_lan and not is_loopback(host_of(request.host or "")):
            return _refuse(403, "forbidden: not a local client (Host)")
        origin = request.headers.get(hdrs.ORIGIN)
        if origin is not None:
            norm = normalize_origin(origin)
            if not norm or norm not in allowed:
                # a web page: only origins the user listed may spend the models
                return _refuse(403, "forbidden: requests from web pages are refused; "
                                    "add the page's origin to [api] allowed_origins to allow it")
            if request.method == hdrs.METH_OPTIONS:
                return web.Response(status=204, headers={
                    "Access-Control-Allow-Methods": "GET, POST",
                    "Access-Control-Allow-Headers": "Content-Type, Authorization",
                    "Access-Control-Max-Age": "600"})
        if request.method == hdrs.METH_POST:
            if request.content_type != "application/json":
                return _refuse(415, "the request body must be JSON sent as Content-Type: "
                                    "application/json (curl: -H 'Content-Type: "
                                    "application/json')")
            length = request.content_length
            if length is not None and length > max_body:
                resp = _refuse(413, f"the request body is larger than {max_body // 2**20} MiB")
                resp.force_close()  # the body is never read, so the connection cannot go on
                return resp
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return _refuse(413, f"the request body is larger than {max_body // 2**20} MiB")

    return guard


def install(app: web.Application, *, allow_lan: bool = False,
            allowed_origins: Iterable[str] = (), max_body: int) -> None:
    """Put the gate in front of every handler of ``app`` (before it starts)."""
    origins = tuple(allowed_origins)
    app.middlewares.insert(0, local_only(allow_lan=allow_lan, allowed_origins=origins,
                                         max_body=max_body))
    allowed = {o for o in (normalize_origin(x) for x in origins) if o}

    async def add_cors(request: web.Request, response: web.StreamResponse) -> None:
        # as the response is prepared, so streamed answers carry it too
        norm = normalize_origin(request.headers.get(hdrs.ORIGIN) or "null")
        if norm in allowed:
            response.headers["Access-Control-Allow-Origin"] = norm
            response.headers["Vary"] = "Origin"

    app.on_response_prepare.append(add_cors)
