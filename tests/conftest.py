"""Shared test setup: every test gets its own LABROUTER_HOME and a clean environment."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # so `tests.fakes` imports from any working directory
    sys.path.insert(0, str(ROOT))

_SCRUB = ("OLLAMA_HOST", "LABROUTER_HOME", "LABROUTER_DEBUG", "HTTP_PROXY", "HTTPS_PROXY",
          "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture(autouse=True)
def labrouter_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throw-away home for config, data and logs; no proxies, no user OLLAMA_HOST."""
    for name in _SCRUB:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    # no test daemon sends a datagram off loopback (tests/test_netns.py lifts this inside
    # the namespaces it makes itself)
    monkeypatch.setenv("LABROUTER_LOOPBACK_ONLY", "1")
    home = tmp_path / "lrhome"
    monkeypatch.setenv("LABROUTER_HOME", str(home))
    return home


def pytest_report_header() -> list[str]:
    return [f"labrouter tests; LABROUTER_HOME per test; cwd {os.getcwd()}"]
