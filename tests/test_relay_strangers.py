"""The relay survives strangers (issue 15): a slowloris of 1,100 half-open TLS connections
on loopback while a real peer's relay chats keep working; refusals logged with a count.

The strangers come from 127.0.0.2 .. 127.0.0.12 (100 each; half stop inside the TLS
handshake, half finish it and send half a request head, and each reopens when dropped);
the real peer is a RelayBackend from 127.0.0.1 with the cluster key and the pinned
certificate, as a peer daemon is.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import sys
from pathlib import Path

import pytest

from labrouter.relay.listener import ConnectionLimits, raise_open_file_limit
from labrouter.relay.server import RefusalLog
from tests.test_relay import collect, start_node, stop_node

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="sources 127.0.0.2.. need Linux's loopback /8")

STRANGERS = [f"127.0.0.{i}" for i in range(2, 13)]
PER_STRANGER = 100  # 11 x 100 = 1,100 connections


async def test_slowloris_does_not_stop_a_real_peer(tmp_path: Path) -> None:
    raise_open_file_limit(8192)
    node = await start_node(tmp_path)
    listener = node.site.listener
    assert listener is not None
    attacker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.slowloris", str(node.port), "14",
        ",".join(STRANGERS), str(PER_STRANGER), cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE)
    most = 0
    answers = []
    try:
        client = node.client()
        await asyncio.sleep(3.0)  # the attack is under way
        for _ in range(10):
            most = max(most, len(listener.conns))
            answers.append(await collect(client, text="still there?"))
            most = max(most, len(listener.conns))
            await asyncio.sleep(0.5)
        await client.aclose()
        out, _ = await asyncio.wait_for(attacker.communicate(), 60)
    finally:
        if attacker.returncode is None:
            attacker.kill()
            await attacker.wait()
        stats = listener.stats
        await stop_node(node)
    assert all(answers) and len(answers) == 10
    assert int(out) >= 300  # the attack really ran
    assert most <= ConnectionLimits().total
    # strangers were refused before TLS, made room for the peer, or timed out
    assert stats.refused_source > 0
    assert stats.evicted + stats.timed_out > 0


async def test_strangers_get_no_kept_alive_connection(tmp_path: Path) -> None:
    """A refused request closes its connection, so it holds no slot."""
    node = await start_node(tmp_path)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        for head in (b"POST /relay/v1/chat HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
                     b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n"):
            reader, writer = await asyncio.open_connection("127.0.0.1", node.port, ssl=ctx)
            writer.write(head)
            answer = await asyncio.wait_for(reader.read(), 10)  # EOF: the relay closed it
            assert answer.split(b"\r\n")[0] in (b"HTTP/1.1 401 Unauthorized",
                                                 b"HTTP/1.1 404 Not Found")
            assert b"Connection: close" in answer
            writer.close()
    finally:
        await stop_node(node)


def test_refusals_are_logged_once_per_source_per_interval(
        caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    log = RefusalLog(every=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="labrouter.relay.server"):
        for _ in range(254):
            log.refused("10.0.0.9", "bad proof")
            now[0] += 0.1
        log.refused("10.0.0.8", "no proof")
        now[0] = 61.0
        log.refused("10.0.0.9", "bad proof")
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "relay: refused a request from 10.0.0.9: bad proof"
    assert lines[1] == "relay: refused a request from 10.0.0.8: no proof"
    assert lines[2].startswith("relay: refused 254 requests from 10.0.0.9 in the last 61 s")
    assert len(lines) == 3
