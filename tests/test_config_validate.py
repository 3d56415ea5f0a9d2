"""`labrouter config validate` is the daemon's own check (issue 12, item 7).

What the daemon would refuse is refused here, with file, line and key: a hotkey that the
hotkey backend (pynput) cannot parse, a front door bound to the LAN without allow_lan. A
port that another program holds is a warning (exit 0). The hotkey parser in core/ is
compared with pynput's own parser, so the two cannot drift apart.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labrouter.core.config import parse_config
from labrouter.core.errors import ConfigError
from labrouter.core.hotkeys import X11_KEYSYMS, key_names, parse_chord, parse_keys, x11_keysym


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABROUTER_")}
    env.update(LABROUTER_HOME=str(home), LABROUTER_LOOPBACK_ONLY="1")
    return subprocess.run([sys.executable, "-m", "labrouter", *args], capture_output=True,
                          text=True, env=env, timeout=60, check=False)


def _write(home: Path, text: str) -> Path:
    path = home / "config" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_an_unknown_hotkey_key_is_refused_with_file_line_and_key(tmp_path: Path) -> None:
    path = _write(tmp_path, """\
        [node]
        name = "box"

        [hotkey]
        ask = "<ctrl>+<alt>+<nosuchkey>"
        """)
    out = _cli("config", "validate", home=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"{path}:5: hotkey.ask: unknown key <nosuchkey>" in out.stderr
    assert "<space>" in out.stderr and "Traceback" not in out.stderr
    # the daemon refuses it the same way, before it starts anything
    run = _cli("run", "--headless", home=tmp_path)
    assert run.returncode == 2 and f"{path}:5: hotkey.ask" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(("chord", "message"), [
    ("<ctrl>+", "ends with '+'"),
    ("ctrl+alt+space", "'ctrl' is not a key"),
    ("<ctrl>+<ctrl>+a", "names a key twice"),
    ("<ctrl>+a+A", "names a key twice"),
    ("<>", "'<>' is not a key"),
    ("<ctrl> + a", "'<ctrl> ' is not a key"),
    ("<ctrl>+<alt>", "must be modifiers and one key"),
    ("<ctrl>+a+b", "must be modifiers and one key"),
])
def test_bad_chords_say_what_is_wrong(chord: str, message: str) -> None:
    with pytest.raises(ConfigError, match=r"c\.toml:2: hotkey\.ask: .*"
                       + message.replace("+", r"\+")):
        parse_config(f"[hotkey]\nask = {json.dumps(chord)}\n", source="c.toml")
    with pytest.raises(ValueError, match="empty chord"):
        parse_keys("")


def test_empty_hotkey_means_the_platform_default() -> None:
    assert parse_config('[hotkey]\nask = ""\n').hotkey.ask == ""


@pytest.mark.parametrize(("chord", "keys"), [
    ("<ctrl>+<alt>+<space>", ("ctrl", "alt", "space")),
    ("<cmd>+<shift>+<Space>", ("cmd", "shift", "space")),
    ("<ctrl>+<65>", ("ctrl", "vk:65")),
    ("+", ("+",)),
    (" ", (" ",)),
    ("<ctrl>++", ("ctrl", "+")),
    ("<ctrl>+<f24>", None),  # Windows only
])
def test_good_chords(chord: str, keys: tuple[str, ...] | None) -> None:
    if keys is None:
        assert parse_keys(chord, "win32") == ("ctrl", "f24")
        assert parse_chord(chord, "win32").key == "f24"
        with pytest.raises(ValueError, match="unknown key <f24>"):
            parse_chord(chord, "linux")
        return
    assert parse_keys(chord, "linux") == keys


def test_a_chord_is_modifiers_and_one_key() -> None:
    c = parse_chord("<cmd_l>+<shift>+K", "linux")
    assert c.modifiers == frozenset({"cmd", "shift"}) and c.key == "k"
    assert parse_chord("<alt_gr>+<ctrl>", "linux").key == "alt_gr"


def test_every_key_name_has_its_x11_keysym() -> None:
    # the X11 backend grabs what the parser accepts: no name without a keysym
    for name in key_names("linux"):
        assert x11_keysym(name), name
    assert x11_keysym("a") == ord("a") and x11_keysym("é") == 0xE9
    assert x11_keysym("€") == 0x01000000 + ord("€") and x11_keysym("vk:65") == 65
    xk = pytest.importorskip("Xlib.XK")
    x_names = {"backspace": "BackSpace", "page_down": "Page_Down", "print_screen": "Print",
               "menu": "Menu", "cmd": "Super_L", "f20": "F20", "enter": "Return",
               "esc": "Escape", "space": "space", "ctrl_r": "Control_R", "delete": "Delete",
               "insert": "Insert", "scroll_lock": "Scroll_Lock", "num_lock": "Num_Lock"}
    for name, x_name in x_names.items():
        assert X11_KEYSYMS[name] == xk.string_to_keysym(x_name), name


def test_a_lan_bind_without_allow_lan_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, '[api]\nport = 47813\nbind = "0.0.0.0"\n')
    out = _cli("config", "validate", home=tmp_path)
    assert out.returncode == 2
    assert f"{path}:3: api.bind: '0.0.0.0' would let anyone on the network" in out.stderr
    assert "allow_lan = true" in out.stderr
    for ok in ('[api]\nbind = "0.0.0.0"\nallow_lan = true\n',
               '[api]\nbind = "0.0.0.0"\nenabled = false\n',
               '[api]\nbind = "::1"\n', '[api]\nbind = "localhost"\n'):
        parse_config(ok)
    with pytest.raises(ConfigError, match="api.bind"):
        parse_config('[api]\nbind = "192.168.1.20"\n')


def _free(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_port_in_use_is_a_warning_with_file_line_and_key(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        path = _write(tmp_path, f"""\
            [cluster]
            bind = "127.0.0.1"
            port = {_free(socket.SOCK_DGRAM)}
            [relay]
            port = {_free(socket.SOCK_STREAM)}

            [api]
            port = {port}
            """)
        out = _cli("config", "validate", home=tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"{path}: OK" in out.stdout
    warnings = [ln for ln in out.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1, out.stderr
    assert f"{path}:8: api.port: 127.0.0.1:{port}/tcp (front door)" in warnings[0]


_PYNPUT_VERDICTS = """
import json, sys
from pynput.keyboard import HotKey
out = []
for chord in json.load(sys.stdin):
    try:
        HotKey.parse(chord)
        out.append(True)
    except ValueError:
        out.append(False)
print(json.dumps(out))
"""

_PARTS = st.one_of(
    st.sampled_from(sorted(key_names("linux"))).map(lambda n: f"<{n}>"),
    st.sampled_from(["<nosuchkey>", "<Ctrl>", "<65>", "<>", "ctrl", "a", "A", "+", " ", "<"]),
    st.characters(min_codepoint=33, max_codepoint=126).map(str))


@pytest.fixture(scope="module")
def pynput_parse() -> object:
    import importlib.util

    if importlib.util.find_spec("pynput") is None:
        pytest.skip("pynput is not installed")

    def verdicts(chords: list[str]) -> list[bool]:
        # pynput's "dummy" backend has the xorg key names and needs no display
        env = dict(os.environ, PYNPUT_BACKEND="dummy")
        cp = subprocess.run([sys.executable, "-c", _PYNPUT_VERDICTS], input=json.dumps(chords),
                            capture_output=True, text=True, env=env, timeout=60, check=True)
        return list(json.loads(cp.stdout))

    return verdicts


@settings(max_examples=1, deadline=None)
@given(st.lists(st.lists(_PARTS, min_size=1, max_size=4), min_size=300, max_size=300))
def test_the_core_parser_agrees_with_pynput(pynput_parse: object,
                                            parts: list[list[str]]) -> None:
    chords = ["+".join(p) for p in parts] + ["<ctrl>+", "+", "<ctrl>++", "a++", "++a"]
    theirs = pynput_parse(chords)  # type: ignore[operator]
    ours = []
    for chord in chords:
        try:
            parse_keys(chord, "linux")
            ours.append(True)
        except ValueError:
            ours.append(False)
    differ = [(c, o, t) for c, o, t in zip(chords, ours, theirs, strict=True) if o != t]
    assert not differ, differ[:10]
