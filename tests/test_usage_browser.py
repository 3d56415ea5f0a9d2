"""The usage page in a real browser: Debian's headless Chromium loads it from a running
server (the front door's own handler) and takes a screenshot, in the light and the dark
theme. The content security policy must not block the page's one style block.

The screenshots in docs/ come from the same code:
``python -m tests.test_usage_browser docs/`` (light and dark, from the made-up lab log).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import sys
from pathlib import Path

import pytest
from aiohttp import web

from labrouter.app.usagelog import UsageLog
from labrouter.app.usagepage import PageSettings, usage_handler
from tests.fakes.usage_lab import NODE, lab_records

NOW = dt.datetime(2026, 12, 6, 21, 30).timestamp()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH = 1200


async def serve_lab(data: Path) -> tuple[web.AppRunner, int]:
    """The page over 30 days of a busy lab, on 127.0.0.1 (port returned)."""
    log = UsageLog(data, retention_days=0, clock=lambda: NOW)
    if not any(data.glob("usage-*.jsonl")):
        for r in lab_records(30, 200, NOW, prompts=True):
            log.append(r)
    app = web.Application()
    app.router.add_get("/usage", usage_handler(
        log.read, lambda: PageSettings(node=NODE, daily_budget_usd=0.25, log_prompts=True),
        clock=lambda: NOW))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, int(runner.addresses[0][1])


async def shoot(url: str, out: Path, profile: Path, dark: bool = False,
                height: int = 2300) -> str:
    """A screenshot of ``url``; returns what the browser logged (CSP refusals show there)."""
    assert CHROMIUM
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--no-first-run", "--disable-extensions", "--enable-logging=stderr", "--v=0",
            f"--user-data-dir={profile}", f"--window-size={WIDTH},{height}",
            f"--screenshot={out}"]
    if dark:
        args.append("--force-dark-mode")  # prefers-color-scheme: dark
    proc = await asyncio.create_subprocess_exec(*args, url, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 120)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, stderr.decode(errors="replace")[-2000:]
    return (stdout + stderr).decode(errors="replace")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt install chromium)")
@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
async def test_the_page_renders_in_a_real_browser(tmp_path: Path, dark: bool) -> None:
    from PIL import Image

    runner, port = await serve_lab(tmp_path / "data")
    try:
        shot = tmp_path / "usage.png"
        logged = await shoot(f"http://127.0.0.1:{port}/usage?range=30d", shot,
                             tmp_path / "profile", dark=dark, height=1400)
    finally:
        await runner.cleanup()
    assert "Content Security Policy" not in logged, logged  # the style block was applied
    img = Image.open(shot).convert("RGB")
    assert img.size == (WIDTH, 1400)
    # the theme's background: the light grey or the near black of the style block, which
    # is there only when the browser applied the styles
    assert img.getpixel((3, 3)) == ((15, 18, 22) if dark else (246, 247, 249))
    # charts drew: the route colours of the stacked columns are on the page
    colours = {c for _n, c in img.getcolors(maxcolors=1 << 20) or []}
    quick = (96, 165, 250) if dark else (59, 130, 246)
    code = (52, 211, 153) if dark else (16, 185, 129)
    assert quick in colours and code in colours


async def _docs(folder: Path) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        runner, port = await serve_lab(Path(tmp) / "data")
        try:
            url = f"http://127.0.0.1:{port}/usage?range=30d"
            for name, dark in (("usage-page.png", False), ("usage-page-dark.png", True)):
                out = folder / name
                await shoot(url, out, Path(tmp) / name, dark=dark, height=3600)
                _crop_to_page(out)
        finally:
            await runner.cleanup()


def _crop_to_page(path: Path, margin: int = 24) -> None:
    """Cut the empty bottom of a tall screenshot: the whole page, nothing more."""
    from PIL import Image

    img = Image.open(path).convert("RGB")
    bg = img.getpixel((2, img.height - 2))
    bottom = img.height - 1
    while bottom > 0 and all(img.getpixel((x, bottom)) == bg
                             for x in range(0, img.width, 7)):
        bottom -= 1
    img.crop((0, 0, img.width, min(img.height, bottom + margin))).save(path, optimize=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m tests.test_usage_browser FOLDER")
        raise SystemExit(2)
    asyncio.run(_docs(Path(sys.argv[1])))
