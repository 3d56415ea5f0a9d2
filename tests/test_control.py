"""The control channel on 127.0.0.1: a long line is read only after the token is shown."""

from __future__ import annotations

import asyncio
import json

from labrouter.app.control import (
    MAX_LINE_UNAUTHENTICATED,
    ControlClient,
    ControlServer,
    read_line,
    token_line,
)
from labrouter.app.paths import resolve_paths


async def _server() -> ControlServer:
    paths = resolve_paths()
    paths.config_dir.mkdir(parents=True, exist_ok=True)
    paths.data_dir.mkdir(parents=True, exist_ok=True)
    server = ControlServer(paths)
    server.register("echo", lambda req: len(str(req.get("blob", ""))))
    await server.start()
    return server


async def _send(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), 10)
    except ConnectionError:
        return b""
    finally:
        writer.close()


async def test_a_long_line_without_the_token_is_dropped_unread() -> None:
    server = await _server()
    try:
        blob = "x" * (2 * MAX_LINE_UNAUTHENTICATED)
        line = json.dumps({"token": server.token, "cmd": "echo", "blob": blob}).encode()
        # the token is right, but it was not shown first: the line is too long to read
        reply = await _send(server.port, line + b"\n")
        assert json.loads(reply) == {"ok": False, "error": "request too long"}
    finally:
        await server.stop()


async def test_a_long_line_after_the_token_is_answered() -> None:
    server = await _server()
    try:
        blob = "x" * (2 * MAX_LINE_UNAUTHENTICATED)
        line = json.dumps({"token": server.token, "cmd": "echo", "blob": blob}).encode()
        reply = json.loads(await _send(server.port, token_line(server.token) + line + b"\n"))
        assert reply == {"ok": True, "result": len(blob)}
    finally:
        await server.stop()


async def test_a_wrong_token_line_is_refused_and_closes() -> None:
    server = await _server()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(token_line("0" * 32) + b'{"cmd": "echo"}\n')
        await writer.drain()
        out = await asyncio.wait_for(reader.read(), 10)  # EOF: one guess per connection
        writer.close()
        assert [json.loads(x)["error"] for x in out.splitlines()] == ["bad token"]
    finally:
        await server.stop()


async def test_the_client_shows_the_token_first() -> None:
    server = await _server()
    try:
        client = ControlClient(server.port, server.token, timeout=10)
        blob = "y" * (3 * MAX_LINE_UNAUTHENTICATED)
        assert await asyncio.to_thread(client.call, "echo", blob=blob) == len(blob)
    finally:
        await server.stop()


async def test_read_line_gathers_past_the_readers_limit_and_stops_at_its_own() -> None:
    reader = asyncio.StreamReader(limit=16)
    reader.feed_data(b"a" * 100 + b"\n" + b"b" * 100 + b"\n")
    reader.feed_eof()
    assert await read_line(reader, 1000) == b"a" * 100 + b"\n"
    try:
        await read_line(reader, 50)
    except ValueError:
        pass
    else:
        raise AssertionError("a line past the limit was read")
