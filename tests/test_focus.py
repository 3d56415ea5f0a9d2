"""The focused-application prior: real X11 windows of known classes under a private Xvfb,
and the app map (`context_for`) with its config overrides.

Each window is a Tk toplevel whose WM_CLASS we choose (Tk's className), so the tests know
what the focus module must read back. There is no window manager: one test gives the focus
the way a WM-less session does (XSetInputFocus), another publishes `_NET_ACTIVE_WINDOW` on
the root window as an EWMH window manager would.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from labrouter.core.classify import Classifier, ContextHint, context_for
from labrouter.core.config import ConfigError, parse_config

TK_APP = r"""
import sys, tkinter as tk
root = tk.Tk(className=sys.argv[1])
root.geometry("300x100+10+10")
e = tk.Entry(root)
e.pack()
def ready():
    root.focus_force()
    e.focus_force()
    root.update()
    print("READY", root.wm_frame(), flush=True)
root.after(200, ready)
root.mainloop()
"""


def _skip_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return "X11 focus tests run on Linux"
    if shutil.which("Xvfb") is None:
        return "Xvfb is not installed"
    try:
        import tkinter  # noqa: F401

        import Xlib  # noqa: F401
    except ImportError as exc:
        return f"missing {exc.name}"
    return None


@pytest.fixture(scope="module")
def xdisplay() -> Iterator[str]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    r, w = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(w), "-screen", "0", "640x480x24", "-nolisten", "tcp"],
        pass_fds=(w,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    os.close(w)
    with os.fdopen(r) as f:
        number = f.readline().strip()
    try:
        if not number:
            pytest.skip("Xvfb did not start")
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class TkWindow:
    def __init__(self, display: str, class_name: str) -> None:
        env = {**os.environ, "DISPLAY": display}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", TK_APP, class_name], env=env, stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        assert line and line[0] == "READY", line
        self.frame = int(line[1], 16)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def window_factory(xdisplay: str) -> Iterator[type[TkWindow]]:
    opened: list[TkWindow] = []

    class Factory(TkWindow):
        def __init__(self, class_name: str) -> None:
            super().__init__(xdisplay, class_name)
            opened.append(self)

    yield Factory
    for w in reversed(opened):
        w.close()


def _set_active(display: str, window_id: int) -> None:
    from Xlib import X, Xatom
    from Xlib import display as xdisplay_mod

    d = xdisplay_mod.Display(display)
    root = d.screen().root
    root.change_property(d.intern_atom("_NET_ACTIVE_WINDOW"), Xatom.WINDOW, 32, [window_id],
                         X.PropModeReplace)
    d.sync()
    d.close()


@pytest.mark.parametrize("class_name,route", [("Code", "code"), ("Thunderbird", "quick"),
                                              ("Gimp", "")])
def test_the_input_focus_window_class_is_read(
    window_factory: type[TkWindow], xdisplay: str, class_name: str, route: str
) -> None:
    from labrouter.desktop.focus import focused_app

    _set_active(xdisplay, 0)  # no window manager: the input focus decides
    window_factory(class_name)
    app = focused_app(xdisplay)
    assert app is not None and app.name == class_name, app
    hint = context_for(app.name)
    assert hint == ContextHint(app=class_name, route=route)


def test_net_active_window_wins_over_the_input_focus(
    window_factory: type[TkWindow], xdisplay: str
) -> None:
    from labrouter.desktop.focus import focused_app

    mail = window_factory("Thunderbird")
    window_factory("Alacritty")  # takes the input focus last
    _set_active(xdisplay, mail.frame)  # as an EWMH window manager publishes it
    try:
        app = focused_app(xdisplay)
    finally:
        _set_active(xdisplay, 0)
    assert app is not None and app.name == "Thunderbird", app


def test_no_display_means_no_app(monkeypatch: pytest.MonkeyPatch) -> None:
    from labrouter.desktop.focus import focused_app

    monkeypatch.delenv("DISPLAY", raising=False)
    if sys.platform.startswith("linux"):
        assert focused_app() is None
    # a display that does not exist is no error either
    assert focused_app(":987") is None


# --------------------------------------------------------------------------- the app map
@pytest.mark.parametrize(
    "name,route",
    [
        ("code", "code"),  # VS Code's WM_CLASS instance
        ("jetbrains-pycharm", "code"),
        ("gnome-terminal-server", "code"),
        ("Code.exe", "code"),
        ("WindowsTerminal.exe", "code"),
        ("com.apple.mail", "quick"),
        ("Slack", "quick"),
        ("C:\\Program Files\\Mozilla Thunderbird\\thunderbird.exe", "quick"),
        ("firefox", ""),
        ("libreoffice-writer", ""),
    ],
)
def test_default_app_map(name: str, route: str) -> None:
    hint = context_for(name)
    assert hint is not None and hint.route == route, (name, hint)


def test_config_overrides_the_app_map() -> None:
    cfg = parse_config('[classifier.apps]\nfirefox = "quick"\ncode = ""\n')
    assert context_for("firefox", cfg.classifier.apps).route == "quick"  # type: ignore[union-attr]
    assert context_for("code", cfg.classifier.apps).route == ""  # type: ignore[union-attr]
    assert context_for("", cfg.classifier.apps) is None


def test_config_rejects_an_unknown_route_for_an_app() -> None:
    with pytest.raises(ConfigError, match="classifier.apps"):
        parse_config('[classifier.apps]\nfirefox = "nosuchroute"\n')


# --------------------------------------------------------------------------- the prior
# Close calls that the focused application tips; clear cases it does not.
def test_an_editor_tips_a_close_call_to_code_and_says_so() -> None:
    clf = Classifier()
    prompt = "how do I make this faster"
    plain = clf.classify(prompt)
    in_editor = clf.classify(prompt, context=ContextHint("Code", "code"))
    assert in_editor.probabilities.get("code", 0) > plain.probabilities.get("code", 0)
    assert any("focused application 'Code'" in r for r in in_editor.reasons)


@pytest.mark.parametrize(
    "prompt,route",
    [
        ("Write a haiku about autumn leaves.", "quick"),
        ("Thanks, see you at 3pm tomorrow!", "quick"),
        ("Traceback (most recent call last):\n  File \"a.py\", line 3, in <module>\n"
         "    x = y\nNameError: name 'y' is not defined", "code"),
    ],
)
def test_a_clear_case_is_not_changed_by_the_app(prompt: str, route: str) -> None:
    clf = Classifier()
    for hint in (ContextHint("Code", "code"), ContextHint("Thunderbird", "quick")):
        assert clf.classify(prompt, context=hint).route == route
