"""Notifications over the freedesktop D-Bus interface itself (jeepney: pure Python, no
compiler), for what the command-line notifiers cannot do: replace a shown notification
(``replaces_id``: the answer takes the place of "Asking..."), offer actions (Copy) where the
server advertises ``actions``, and escape the body only where the server interprets
markup (``body-markup``), so that ``List<int>`` reaches the screen as written.

Threading: ``show``/``send`` block (one D-Bus round trip, bounded) and run on worker
threads, one at a time (the app's notify lock; a lock here too). Actions arrive on a
listener thread of its own (a second connection), which calls the handler given with the
notification; the handler must return at once. jeepney is imported here only.
"""

from __future__ import annotations

import collections
import importlib.util
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape

log = logging.getLogger(__name__)

APP_NAME = "labrouter"
MAX_HANDLERS = 20  # notifications whose actions are still listened for (oldest dropped)
CALL_TIMEOUT = 5.0


class DbusNotifier:
    """See the module docstring."""

    name = "dbus"

    def __init__(self, env: Mapping[str, str] | None = None, platform: str | None = None,
                 timeout_ms: int = 10_000) -> None:
        self.env = os.environ if env is None else env
        self.platform = platform or sys.platform
        self.timeout_ms = timeout_ms
        self._conn: Any = None
        self._caps: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self._handlers: collections.OrderedDict[int, Callable[[str], None]] = \
            collections.OrderedDict()
        self._listener: threading.Thread | None = None

    def problem(self) -> str | None:
        from .notify import dbus_problem

        if not self.platform.startswith("linux"):
            return "only on Linux"
        bus = dbus_problem(self.env)
        if bus:
            return bus
        if importlib.util.find_spec("jeepney") is None:
            return "jeepney is not installed"
        return None

    @property
    def capabilities(self) -> frozenset[str]:
        with self._lock:
            self._connect()
        return self._caps

    def _address(self) -> Any:
        from jeepney import DBusAddress

        return DBusAddress("/org/freedesktop/Notifications",
                           bus_name="org.freedesktop.Notifications",
                           interface="org.freedesktop.Notifications")

    def _connect(self) -> Any:
        if self._conn is None:
            from jeepney import new_method_call
            from jeepney.io.blocking import open_dbus_connection

            conn = open_dbus_connection(bus=self.env.get("DBUS_SESSION_BUS_ADDRESS")
                                        or "SESSION")
            try:
                reply = conn.send_and_get_reply(
                    new_method_call(self._address(), "GetCapabilities"),
                    timeout=CALL_TIMEOUT)
                self._caps = frozenset(str(c) for c in reply.body[0])
            except Exception:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def send(self, title: str, body: str) -> None:
        self.show(title, body)

    def show(self, title: str, body: str, replaces: int = 0,
             actions: Sequence[tuple[str, str]] = (),
             on_action: Callable[[str], None] | None = None,
             timeout_ms: int | None = None) -> int:
        """Show (or replace) a notification; returns its id for a later ``replaces``."""
        from jeepney import new_method_call
        from jeepney.wrappers import unwrap_msg

        with self._lock:
            try:
                conn = self._connect()
                text = escape(body) if "body-markup" in self._caps else body
                flat: list[str] = []
                if "actions" in self._caps:
                    for key, label in actions:
                        flat += [key, label]
                msg = new_method_call(
                    self._address(), "Notify", "susssasa{sv}i",
                    (APP_NAME, replaces, "", title, text, flat, {},
                     self.timeout_ms if timeout_ms is None else timeout_ms))
                reply = unwrap_msg(conn.send_and_get_reply(msg, timeout=CALL_TIMEOUT))
            except Exception:
                self._drop()
                raise
            nid = int(reply[0])
            if flat and on_action is not None:
                self._handlers[nid] = on_action
                while len(self._handlers) > MAX_HANDLERS:
                    self._handlers.popitem(last=False)
                self._listen()
            return nid

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
            self._conn = None

    def _listen(self) -> None:
        if self._listener is not None and self._listener.is_alive():
            return
        self._listener = threading.Thread(target=self._listen_loop, name="labrouter-notify",
                                          daemon=True)
        self._listener.start()

    def _listen_loop(self) -> None:
        from jeepney import HeaderFields, MatchRule, message_bus
        from jeepney.io.blocking import open_dbus_connection

        rule = MatchRule(type="signal", interface="org.freedesktop.Notifications",
                         path="/org/freedesktop/Notifications")
        try:
            conn = open_dbus_connection(bus=self.env.get("DBUS_SESSION_BUS_ADDRESS")
                                        or "SESSION")
        except Exception:
            log.warning("cannot listen for notification actions", exc_info=True)
            return
        try:
            conn.send_and_get_reply(message_bus.AddMatch(rule), timeout=CALL_TIMEOUT)
            with conn.filter(rule) as queue:
                while True:
                    msg = conn.recv_until_filtered(queue)
                    member = msg.header.fields.get(HeaderFields.member)
                    if member == "ActionInvoked":
                        nid, key = int(msg.body[0]), str(msg.body[1])
                        with self._lock:
                            handler = self._handlers.get(nid)
                        if handler is not None:
                            try:
                                handler(key)
                            except Exception:
                                log.exception("notification action %s failed", key)
                    elif member == "NotificationClosed":
                        with self._lock:
                            self._handlers.pop(int(msg.body[0]), None)
        except Exception:
            log.debug("the notification listener stopped", exc_info=True)
        finally:
            conn.close()
