"""The front door's gate (app/frontdoor/guard.py): web pages cannot spend the models.

The attack of issue 15 with curl's headers, and with a real headless Chromium loading a
hostile page from another local origin (no-cors fetch, a text/plain form, a JSON fetch that
needs a preflight, a sandboxed iframe sending ``Origin: null``). The fake Ollama servers
behind the real Asker count every request: none may arrive. The same page's requests to a
third local server (the sink) show that the browser did send them.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from labrouter.app.frontdoor import FrontDoor, FrontDoorSite
from labrouter.app.frontdoor.guard import normalize_origin
from labrouter.core.config import ApiConfig, Config
from labrouter.relay.server import Site
from tests.test_frontdoor import Door, door  # noqa: F401 - the fixture

CHAT = {"model": "auto", "stream": False, "messages": [{"role": "user", "content": "hi"}]}


def _model_requests(d: Door) -> int:
    return len(d.own.received) + len(d.peer.fake.received)


async def test_the_curl_repro_is_refused(door: Door) -> None:  # noqa: F811
    body = json.dumps(CHAT)
    async with aiohttp.ClientSession() as s:
        for headers in ({"Origin": "null", "Content-Type": "text/plain;charset=UTF-8"},
                        {"Origin": "null", "Content-Type": "application/json"},
                        {"Origin": "http://127.0.0.1:8080", "Content-Type": "application/json"},
                        {"Content-Type": "text/plain;charset=UTF-8"},
                        {"Content-Type": "application/x-www-form-urlencoded"},
                        {"Content-Type": "multipart/form-data; boundary=x"}):
            for path in ("/api/chat", "/v1/chat/completions", "/api/generate"):
                async with s.post(door.url + path, data=body, headers=headers) as r:
                    assert r.status in (403, 415), (path, headers)
                    assert "error" in await r.json()
        async with s.options(door.url + "/api/chat", headers={
                "Origin": "http://127.0.0.1:8080", "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type"}) as r:
            assert r.status == 403 and "Access-Control-Allow-Origin" not in r.headers
    assert _model_requests(door) == 0
    # a local program (no Origin, JSON) is served
    async with aiohttp.ClientSession() as s, s.post(door.url + "/api/chat", json=CHAT) as r:
        assert r.status == 200
    assert _model_requests(door) == 1


async def test_bad_images_and_oversize_bodies_are_clear_errors(door: Door) -> None:  # noqa: F811
    async with aiohttp.ClientSession() as s:
        bad = {**CHAT, "messages": [{"role": "user", "content": "x", "images": 5}]}
        async with s.post(door.url + "/api/chat", json=bad) as r:
            assert r.status == 400 and "images" in (await r.json())["error"]
        async with s.post(door.url + "/api/generate",
                          json={"model": "auto", "prompt": "x", "images": {"a": 1}}) as r:
            assert r.status == 400
        # refused from Content-Length: the answer comes before a byte of the body is sent
        host, port = door.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                     b"application/json\r\nContent-Length: %d\r\n\r\n" % (65 * 2**20))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        answer = await asyncio.wait_for(reader.readexactly(length), 10)
        writer.close()
        assert head.startswith(b"HTTP/1.1 413") and b"larger than" in answer

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: capped while read
            for _ in range(66):
                yield b" " * 2**20

        async with s.post(door.url + "/api/chat", data=chunks(),
                          headers={"Content-Type": "application/json"}) as r:
            assert r.status == 413 and "larger than" in (await r.json())["error"]
    assert _model_requests(door) == 0


async def test_an_allowed_origin_gets_cors() -> None:
    class Counting:
        n = 0

        def stream(self, req):  # type: ignore[no-untyped-def]
            raise AssertionError("not asked")

    cfg = Config(api=ApiConfig(allowed_origins=("HTTP://LocalHost:3000/",)))
    site = FrontDoorSite(FrontDoor(Counting(), list, cfg), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{await site.start()}"
    try:
        async with aiohttp.ClientSession() as s:
            h = {"Origin": "http://localhost:3000"}
            async with s.options(url + "/api/chat", headers={
                    **h, "Access-Control-Request-Method": "POST"}) as r:
                assert r.status == 204
                assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
            async with s.get(url + "/api/tags", headers=h) as r:
                assert r.status == 200
                assert r.headers["Access-Control-Allow-Origin"] == "http://localhost:3000"
            async with s.get(url + "/api/tags", headers={"Origin": "http://localhost:3001"}) as r:
                assert r.status == 403
    finally:
        await site.stop()


def test_normalize_origin() -> None:
    assert normalize_origin("http://LOCALHOST:80") == "http://localhost"
    assert normalize_origin("https://a.example:8443/x") == "https://a.example:8443"
    assert normalize_origin("null") == normalize_origin("file://") == ""
    assert normalize_origin("chrome-extension://abc") == ""


# ------------------------------------------------------------------ a real browser

PAGE = """<!doctype html><html><body>
<iframe name="sink_frame"></iframe>
<script>
const DOOR = "%(door)s", SINK = "%(sink)s";
const chat = JSON.stringify(%(chat)s);
async function attack(base, tag) {
  const tries = [];
  for (const path of ["/api/chat", "/v1/chat/completions", "/api/generate"]) {
    tries.push(fetch(base + path, {method: "POST", mode: "no-cors", body: chat,
                                   headers: {"Content-Type": "text/plain"}}).catch(() => 0));
    tries.push(fetch(base + path, {method: "POST", mode: "cors", body: chat,
                                   headers: {"Content-Type": "application/json"}})
               .catch(() => 0));
  }
  await Promise.all(tries);
}
function form(base) {
  const f = document.createElement("form");
  f.method = "POST"; f.enctype = "text/plain"; f.action = base + "/api/chat";
  f.target = "sink_frame";
  const i = document.createElement("input");
  i.name = '{"model":"auto","stream":false,"x":"';
  i.value = '","messages":[{"role":"user","content":"hi"}]}';
  f.appendChild(i); document.body.appendChild(f); f.submit();
}
(async () => {
  await attack(DOOR, "door"); await attack(SINK, "sink");
  form(DOOR);
  const frame = document.createElement("iframe");
  frame.sandbox = "allow-scripts";
  frame.srcdoc = `<script>
    (async () => {
      for (const base of ["${DOOR}", "${SINK}"]) {
        await fetch(base + "/api/chat", {method: "POST", mode: "no-cors",
          body: ${JSON.stringify(chat)}, headers: {"Content-Type": "text/plain"}})
          .catch(() => 0);
      }
      await fetch("${SINK}/done?from=iframe", {mode: "no-cors"}).catch(() => 0);
    })();
  <\\/script>`;
  document.body.appendChild(frame);
  await fetch(SINK + "/done?from=page", {mode: "no-cors"}).catch(() => 0);
})();
</script></body></html>"""


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium (apt)")
async def test_a_hostile_page_in_a_real_browser_reaches_no_model(
        door: Door, tmp_path: Path) -> None:  # noqa: F811
    seen: Counter[str] = Counter()
    origins: list[str] = []
    done = asyncio.Event()
    dones: set[str] = set()

    async def page(request: web.Request) -> web.Response:
        html = PAGE % {"door": door.url, "sink": sink_url, "chat": json.dumps(CHAT)}
        return web.Response(text=html, content_type="text/html")

    async def sink(request: web.Request) -> web.Response:
        await request.read()
        seen[request.path] += 1
        origins.append(request.headers.get("Origin", ""))
        return web.Response(text="ok")

    async def finished(request: web.Request) -> web.Response:
        dones.add(request.query.get("from", ""))
        if dones >= {"page", "iframe"}:
            done.set()
        return web.Response(text="ok")

    hostile_app = web.Application()
    hostile_app.router.add_get("/", page)
    hostile = Site(hostile_app, "127.0.0.1", 0)
    sink_app = web.Application()
    sink_app.router.add_get("/done", finished)
    sink_app.router.add_route("*", "/{tail:.*}", sink)
    sink_site = Site(sink_app, "127.0.0.1", 0)
    hostile_url = f"http://127.0.0.1:{await hostile.start()}/"
    sink_url = f"http://127.0.0.1:{await sink_site.start()}"
    browser = await asyncio.create_subprocess_exec(
        "chromium", "--headless=new", "--no-sandbox", "--disable-gpu",
        f"--user-data-dir={tmp_path / 'chromium'}", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-default-apps", "--disable-extensions", "--metrics-recording-only",
        # nothing may leave loopback: every other address goes to a proxy that is not there
        "--proxy-server=http://127.0.0.1:9",  # loopback bypasses a proxy by default
        "--remote-debugging-port=0", hostile_url,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await asyncio.wait_for(done.wait(), 60)
        await asyncio.sleep(1.0)  # the form's navigation may still be on its way
    finally:
        browser.kill()
        await browser.wait()
        await hostile.stop()
        await sink_site.stop()
    # the browser sent the attacks: to the sink they arrived, the iframe's with Origin: null
    assert seen["/api/chat"] >= 3 and seen["/v1/chat/completions"] >= 1, seen
    assert "null" in origins
    assert _model_requests(door) == 0
    assert door.usage.records == []
