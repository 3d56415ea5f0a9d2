"""The dependency rule of the design: arrows point down.

core/ imports only the standard library; desktop/ and autostart/ never import each
other; the layers below app/ never import a desktop package; and importing the CLI and
running a headless command loads no desktop package at all.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "labrouter"
DESKTOP_PACKAGES = {"pystray", "pynput", "plyer", "pyperclip", "PIL"}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in a file; relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    pkg = ".".join(("labrouter",) + path.relative_to(SRC).parent.parts)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
    return out


def _files(sub: str) -> list[Path]:
    p = SRC / sub
    return sorted(p.rglob("*.py")) if p.is_dir() else [p]


def test_core_imports_only_the_standard_library() -> None:
    bad = []
    for f in _files("core"):
        for line, mod in _imports(f):
            top = mod.split(".")[0]
            if mod.startswith("labrouter.core") or top == "__future__":
                continue
            if top == "labrouter" or top not in sys.stdlib_module_names:
                bad.append(f"{f.relative_to(SRC)}:{line} imports {mod}")
    assert not bad, "core/ must import only the standard library:\n" + "\n".join(bad)


@pytest.mark.parametrize("a,b", [("desktop", "autostart"), ("autostart", "desktop")])
def test_desktop_and_autostart_never_import_each_other(a: str, b: str) -> None:
    bad = [f"{f.relative_to(SRC)}:{line} imports {mod}" for f in _files(a)
           for line, mod in _imports(f) if mod.startswith(f"labrouter.{b}")]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("layer", ["core", "backends", "cluster", "relay", "ask.py"])
def test_lower_layers_never_import_desktop_packages(layer: str) -> None:
    bad = []
    for f in _files(layer):
        for line, mod in _imports(f):
            if mod.split(".")[0] in DESKTOP_PACKAGES or mod.startswith(
                    ("labrouter.desktop", "labrouter.autostart", "labrouter.app")):
                bad.append(f"{f.relative_to(SRC)}:{line} imports {mod}")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    # the rule test must be able to fail: feed it a file that breaks the rule
    f = SRC / "core" / "_probe_violation.py"
    f.write_text("import httpx\nfrom ..desktop import tray\n", encoding="utf-8")
    try:
        found = [m for _, m in _imports(f)]
    finally:
        f.unlink()
    assert found == ["httpx", "labrouter.desktop"]


def test_headless_commands_load_no_desktop_package() -> None:
    code = (
        "import sys\n"
        "from labrouter.cli import main\n"
        "rc = main(['config', 'show'])\n"
        "main(['route', '--offline', 'hello there'])\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{sorted(DESKTOP_PACKAGES)!r})\n"
        "print('LOADED', loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "LOADED []" in out.stdout, out.stdout


def test_only_the_answer_windows_process_imports_tkinter() -> None:
    # Tk runs in its own process (desktop/answer/window.py): the daemon and the tray's
    # process never load it, so pystray keeps the main thread
    allowed = SRC / "desktop" / "answer" / "window.py"
    bad = [f"{f.relative_to(SRC)}:{line} imports {mod}" for f in sorted(SRC.rglob("*.py"))
           if f != allowed for line, mod in _imports(f) if mod.split(".")[0] == "tkinter"]
    assert not bad, "\n".join(bad)
    assert any(m.split(".")[0] == "tkinter" for _, m in _imports(allowed))


def test_import_linter_contracts_hold() -> None:
    # the contracts in pyproject.toml ([tool.importlinter]): the layers, and every edge that
    # skips app/ or crosses between siblings written down with its reason
    pytest.importorskip("importlinter")
    root = SRC.parents[1]
    env = {**os.environ, "PYTHONPATH": str(SRC.parent)}
    out = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import "
                          "lint_imports; sys.exit(lint_imports(no_cache=True, no_logo=True))"],
                         capture_output=True, text=True, cwd=root, env=env, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]


@pytest.mark.skipif(os.environ.get("CI") == "true", reason=".ci/run runs mypy itself")
def test_mypy_finds_no_errors() -> None:
    # [tool.mypy] in pyproject.toml: strict for every package but desktop/
    pytest.importorskip("mypy")
    root = SRC.parents[1]
    out = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental"],
                         capture_output=True, text=True, cwd=root, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
