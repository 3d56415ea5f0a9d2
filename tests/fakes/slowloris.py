"""A slowloris against a TLS port, as a separate process (an attacker is not in our loop).

    python -m tests.fakes.slowloris PORT SECONDS SOURCE[,SOURCE...] PER_SOURCE

Opens PER_SOURCE connections from each source address (loopback only): every other one
stops inside the TLS handshake, the rest finish it and send half a request head. A
connection the server drops is reopened after a second. Prints how many were opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import sys

# one context for all: loading the CA store per connection would make the attacker slow
CTX = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE


async def one(port: int, source: str, tls: bool, stop: asyncio.Event, opened: list[int]) -> None:
    while not stop.is_set():
        writer = None
        try:
            if tls:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(
                    "127.0.0.1", port, ssl=CTX, local_addr=(source, 0)), 10)
                writer.write(b"POST /relay/v1/chat HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            else:
                reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                               local_addr=(source, 0))
            opened[0] += 1
            read = asyncio.ensure_future(reader.read(1))
            halt = asyncio.ensure_future(stop.wait())
            await asyncio.wait([read, halt], return_when=asyncio.FIRST_COMPLETED)
            read.cancel()
            halt.cancel()
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError,
                asyncio.IncompleteReadError):
            pass
        finally:
            if writer is not None:
                writer.transport.abort()  # no TLS goodbye: it may wait for a peer long gone
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


async def main(port: int, seconds: float, sources: list[str], per_source: int) -> None:
    stop = asyncio.Event()
    opened = [0]
    _tasks = [asyncio.create_task(one(port, s, i % 2 == 0, stop, opened))
             for s in sources for i in range(per_source)]
    await asyncio.sleep(seconds)
    stop.set()
    print(opened[0], flush=True)
    print("slowloris done", opened[0], file=sys.stderr, flush=True)
    # no orderly goodbye: an attacker's half-done TLS handshakes only time out
    os._exit(0)


if __name__ == "__main__":
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3].split(","),
                     int(sys.argv[4])))
