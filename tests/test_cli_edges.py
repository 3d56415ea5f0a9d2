"""The small things a new user runs into (issue 12, item 9), one test each."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from labrouter.core.images import image_kind

ROOT = Path(__file__).resolve().parents[1]


def _cli(home: Path, *args: str, stdin: bytes | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("LABROUTER_")}
    base.update(LABROUTER_HOME=str(home), LABROUTER_LOOPBACK_ONLY="1",
                OLLAMA_HOST="127.0.0.1:9")  # nothing answers there: no model is reached
    base.update(env or {})
    cp = subprocess.run([sys.executable, "-m", "labrouter", *args], input=stdin,
                        capture_output=True, env=base, timeout=60, check=False)
    return subprocess.CompletedProcess(cp.args, cp.returncode, cp.stdout.decode(),
                                       cp.stderr.decode())


def test_nodes_without_a_daemon_says_not_checked_not_down(tmp_path: Path) -> None:
    cp = _cli(tmp_path, "nodes")
    assert cp.returncode == 0, cp.stderr
    assert "ollama(not checked)" in cp.stdout and "(down)" not in cp.stdout


def test_ask_selection_without_a_display_says_so(tmp_path: Path) -> None:
    env = {k: "" for k in ("DISPLAY", "WAYLAND_DISPLAY")}
    cp = _cli(tmp_path, "ask", "--selection", env=env)
    assert cp.returncode == 1
    assert "--selection needs a desktop session (no display" in cp.stderr
    assert "nothing is selected" not in cp.stderr


def test_binary_garbage_on_stdin_is_refused_unless_forced(tmp_path: Path) -> None:
    garbage = random.Random(12).randbytes(2000)  # `head -c 2000 /dev/urandom`
    cp = _cli(tmp_path, "ask", "-", stdin=garbage)
    assert cp.returncode == 2 and "Traceback" not in cp.stderr
    assert "the prompt does not look like text" in cp.stderr and "--force" in cp.stderr
    forced = _cli(tmp_path, "ask", "--force", "-", stdin=garbage)
    # sent on: no server answers here, so "nothing could answer", not "not text"
    assert forced.returncode == 1 and "does not look like text" not in forced.stderr
    nul = _cli(tmp_path, "ask", "-", stdin=b"hello\x00world")
    assert nul.returncode == 2 and "NUL bytes" in nul.stderr


def test_text_with_a_few_odd_bytes_is_still_text(tmp_path: Path) -> None:
    latin1 = ("Résumé of the café meeting: the naïve approach works, " * 5).encode("latin-1")
    cp = _cli(tmp_path, "ask", "-", stdin=latin1)
    assert cp.returncode == 1 and "does not look like text" not in cp.stderr


IMAGES = {
    "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    "jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
    "gif": b"GIF89a\x01\x00\x01\x00",
    "webp": b"RIFF\x24\x00\x00\x00WEBPVP8 ",
}


@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_image_kinds(kind: str) -> None:
    assert image_kind(IMAGES[kind]) == kind


@pytest.mark.parametrize("data", [b"", b"hello", b"%PDF-1.7", b"RIFF\x24\x00\x00\x00WAVE",
                                  b"\x89PNX", b"GIF90a"])
def test_not_images(data: bytes) -> None:
    assert image_kind(data) is None


def test_ask_image_takes_only_real_images(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a picture")
    cp = _cli(tmp_path, "ask", "--image", str(text), "what is this?")
    assert cp.returncode == 2
    assert f"{text} is not an image: it is not PNG, JPEG, GIF or WebP" in cp.stderr
    png = tmp_path / "a.png"
    png.write_bytes(IMAGES["png"])
    cp = _cli(tmp_path, "ask", "--image", str(png), "what is this?")
    assert cp.returncode == 1 and "is not an image" not in cp.stderr


def test_resume_when_nothing_is_paused(tmp_path: Path) -> None:
    cp = _cli(tmp_path, "resume")
    assert cp.returncode == 0 and "Not paused: nothing to resume" in cp.stdout
    assert _cli(tmp_path, "pause").returncode == 0
    cp = _cli(tmp_path, "resume")
    assert cp.returncode == 0 and "Resumed" in cp.stderr


def _help(*words: str) -> str:
    from labrouter.cli import build_parser

    parser = build_parser()
    for w in words:
        parser = parser._subparsers._group_actions[0].choices[w]  # type: ignore[union-attr]
    return parser.format_help()


def test_help_texts_explain_exit_codes_and_arguments() -> None:
    ask = _help("ask")
    assert "exit codes: 0 answered; 1 nothing could answer" in " ".join(ask.split())
    assert "2 bad usage" in ask and "--force" in ask
    for cmd in (("key", "use"), ("key", "remove")):
        assert "fingerprint as `labrouter key show`" in " ".join(_help(*cmd).split())
    assert "`labrouter key export`" in " ".join(_help("join").split())
    run = " ".join(_help("run").split())
    assert "tray" in run and "hotkey" in run and "front door" in run
    assert "after `labrouter pause`" in _help("resume")


def test_pytest_does_not_warn_about_the_fixture_loop_scope() -> None:
    cp = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                         "tests/test_policy.py", "-k", "nothing_matches_this"],
                        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert "asyncio_default_fixture_loop_scope" not in cp.stdout + cp.stderr
    assert "Warning" not in cp.stdout + cp.stderr, cp.stdout + cp.stderr
