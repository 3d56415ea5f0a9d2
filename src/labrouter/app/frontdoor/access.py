"""Who may use the front door: loopback only, unless the user allowed the LAN.

Owns ``is_loopback``, ``check_bind`` (a bind off loopback is refused without ``[api]
allow_lan``) and ``host_of``, which the request guard uses to refuse a request whose
``Host`` or ``Origin`` is not local (a web page's DNS rebinding or cross-site request).
Must not import aiohttp's server parts or desktop packages.
"""

from __future__ import annotations

import ipaddress

from yarl import URL

from ...core.errors import ConfigError

_LOCAL_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


def is_loopback(host: str) -> bool:
    if host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_of(text: str, with_scheme: bool = False) -> str:
    """The host part of a Host header or an Origin; "" when it cannot be parsed."""
    try:
        return URL(text if with_scheme else f"http://{text}").host or ""
    except (ValueError, TypeError):
        return ""


def check_bind(bind: str, allow_lan: bool) -> None:
    """Refuse a non-loopback bind unless the user allowed the LAN explicitly."""
    if is_loopback(bind) or allow_lan:
        return
    raise ConfigError(
        f"[api] bind = {bind!r} would let anyone on the network use your models without a "
        "password",
        hint="Keep bind = \"127.0.0.1\", or set allow_lan = true under [api] if you really "
             "want the front door on the network.")
