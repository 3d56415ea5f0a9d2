"""The daemon log: quiet by default (no line per HTTP probe), everything with --verbose."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from labrouter.app import logsetup
from labrouter.app.paths import resolve_paths
from labrouter.app.usagelog import UsageLog
from labrouter.core.usage import UsageRecord
from tests.fakes.ollama_server import FakeOllama


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    chatty = {n: logging.getLogger(n).level for n in logsetup.CHATTY}
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    root.setLevel(level)
    for n, lvl in chatty.items():
        logging.getLogger(n).setLevel(lvl)


async def _probe_and_answer(tmp_path: Path, verbose: bool) -> str:
    paths = resolve_paths(env={"LABROUTER_HOME": str(tmp_path)})
    logsetup.configure(paths, stderr=False, verbose=verbose)
    async with FakeOllama(models=["qwen3:4b"]) as srv, httpx.AsyncClient() as client:
        for _ in range(3):  # what the monitor does every second or two
            assert (await client.get(f"{srv.url}/api/ps")).status_code == 200
    logging.getLogger("labrouter.app.daemon").info("paused: rented out")
    UsageLog(paths.data_dir).append(UsageRecord(
        ts=1.0e9, route="quick", node="mac-mini", server="ollama", model="qwen3:4b",
        outcome="fallback", classified_route="code", prompt_tokens=5, completion_tokens=7,
        fallbacks=({"model": "qwen-coder", "node": "pc", "reason": "down"},),
        prompt="a secret prompt"))
    for h in logging.getLogger().handlers:
        h.flush()
    return paths.daemon_log.read_text()


@pytest.mark.usefixtures("restore_logging")
async def test_default_level_has_state_changes_and_one_line_per_request(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABROUTER_LOG_LEVEL", raising=False)
    text = await _probe_and_answer(tmp_path, verbose=False)
    assert "HTTP Request" not in text and "/api/ps" not in text
    assert "paused: rented out" in text
    lines = [ln for ln in text.splitlines() if "request from cli" in ln]
    assert len(lines) == 1, text
    assert "fallback, code->quick on mac-mini (qwen3:4b), 5+7 tokens" in lines[0]
    assert "1 fell over" in lines[0]
    assert "secret" not in text


@pytest.mark.usefixtures("restore_logging")
async def test_verbose_shows_every_http_request(tmp_path: Path) -> None:
    text = await _probe_and_answer(tmp_path, verbose=True)
    assert text.count("HTTP Request: GET") == 3, text
    assert "httpcore" not in text  # its per-frame lines stay out even then


@pytest.mark.parametrize(("given", "level"), [
    ("debug", logging.DEBUG), ("WARNING", logging.WARNING), ("10", 10),
    ("nonsense", logging.INFO), (logging.ERROR, logging.ERROR)])
def test_parse_level(given: str | int, level: int) -> None:
    assert logsetup.parse_level(given) == level


def test_run_verbose_flag_is_in_the_help() -> None:
    from labrouter.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    text = sub.format_help()
    assert "--verbose" in text and "front door" in text and "hotkey" in text
