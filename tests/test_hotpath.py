"""The hot path stays flat: what `labrouter ask` loads when every candidate is local."""

from __future__ import annotations

import subprocess
import sys


def test_asking_local_servers_loads_no_relay_client_and_no_aiohttp() -> None:
    # what `labrouter ask` imports without a daemon: the relay client (aiohttp, TLS) is
    # imported only when a candidate is on another machine
    code = ("import sys\n"
            "import labrouter.app.runtime, labrouter.app.askproxy, labrouter.ask\n"
            "import labrouter.backends, labrouter.commands.routing\n"
            "print(sorted(m for m in sys.modules if m == 'aiohttp' "
            "or m == 'labrouter.relay.client'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_aiohttp_errors_are_still_classified_once_it_is_loaded() -> None:
    import aiohttp

    from labrouter.backends.failures import Failure, classify

    assert classify(aiohttp.ServerDisconnectedError()) is Failure.CONNECTION_LOST
    assert classify(aiohttp.ClientError()) is Failure.UNREACHABLE
    assert classify(ConnectionResetError()) is Failure.CONNECTION_LOST
