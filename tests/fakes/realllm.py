"""A real small model on 127.0.0.1 for the ``realllm`` tests: llama.cpp's server via xllamacpp.

Owns ``RealLLM``: starts xllamacpp's embedded llama.cpp HTTP server (the same server as
``llama-server``: ``/health``, ``/v1/models``, ``/v1/chat/completions``) in a child process
on a free port, waits for ``/health``, and stops it with SIGTERM (then SIGKILL). The model
is the SmolLM2-135M-Instruct GGUF that ``.ci/real-llm-setup.sh`` puts in place; it is found
through ``LABROUTER_TEST_GGUF`` or in the default directory. ``missing_reason()`` says why
the real server cannot run here, for ``pytest.skip``.

This file is also the child's serve script (``python realllm.py serve GGUF PORT ALIAS``), so
it imports only the standard library at module level. See ../shared/research/real-llm.md.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Self

DEFAULT_DIR = Path("/tmp/labrouter-ci/models")
DEFAULT_FILE = "smollm2.gguf"
ALIAS = "smollm2"  # the model name clients send
SETUP = ".ci/real-llm-setup.sh"


def find_gguf() -> Path | None:
    """The model file: $LABROUTER_TEST_GGUF, else the setup script's default location."""
    env = os.environ.get("LABROUTER_TEST_GGUF")
    path = Path(env) if env else DEFAULT_DIR / DEFAULT_FILE
    return path if path.is_file() else None


def missing_reason() -> str:
    """Why the real server cannot run here ("" when it can)."""
    if importlib.util.find_spec("xllamacpp") is None:
        return f"xllamacpp is not installed (run {SETUP})"
    if find_gguf() is None:
        where = os.environ.get("LABROUTER_TEST_GGUF") or DEFAULT_DIR / DEFAULT_FILE
        return f"no model at {where} (run {SETUP}, or set LABROUTER_TEST_GGUF)"
    return ""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RealLLM:
    """llama.cpp's server with a real model, in a child process on 127.0.0.1.

    ``with RealLLM() as llm: llm.url`` (base URL ending in /v1), ``llm.model`` (its alias).
    """

    def __init__(self, gguf: Path | str | None = None, *, alias: str = ALIAS,
                 n_ctx: int = 2048, startup_timeout: float = 60.0) -> None:
        found = Path(gguf) if gguf else find_gguf()
        if found is None:
            raise FileNotFoundError(missing_reason() or "no GGUF model found")
        self.gguf = found
        self.model = alias
        self.n_ctx = n_ctx
        self.startup_timeout = startup_timeout
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self.startup_seconds = 0.0

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.root_url + "/v1"

    def start(self) -> Self:
        self.port = _free_port()
        fd, log = tempfile.mkstemp(prefix="labrouter-realllm-", suffix=".log")
        self.log_path = Path(log)
        t0 = time.monotonic()
        with os.fdopen(fd, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, os.path.abspath(__file__), "serve", str(self.gguf),
                 str(self.port), self.model, str(self.n_ctx)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def _wait_healthy(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the llama.cpp server exited with {self.proc.returncode}:"
                                   f"\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.root_url + "/health", timeout=1) as r:
                    if r.status == 200 and json.load(r).get("status") == "ok":
                        return
            except (OSError, ValueError, urllib.error.URLError):
                pass  # not listening yet, or still loading (503)
            time.sleep(0.1)
        raise TimeoutError(f"the llama.cpp server did not become healthy within "
                           f"{self.startup_timeout:g} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self.log_path is not None:
            with contextlib.suppress(OSError):
                self.log_path.unlink()
            self.log_path = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _serve(gguf: str, port: int, alias: str, n_ctx: int) -> None:
    """The child: run xllamacpp's server until SIGTERM."""
    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = gguf
    params.hostnames = ["127.0.0.1"]  # loopback only, never the LAN
    params.port = port
    params.n_ctx = n_ctx
    params.model_alias = {alias}
    server = xlc.Server(params)  # serves from its own threads while this one sleeps
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    finally:
        del server


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "serve":
        _serve(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
    else:
        sys.exit("usage: realllm.py serve GGUF PORT ALIAS N_CTX")
