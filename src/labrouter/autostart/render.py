"""What a start-at-login entry contains, as pure functions (no I/O, no clock, no platform).

Owns the content of every entry `labrouter autostart enable` writes: the macOS LaunchAgent
plist, the Windows Run-key command line, the XDG autostart ``.desktop`` file and the
``systemd --user`` unit; and the parsers that read an entry back into an ``Entry`` so that
``status`` can tell whether it still points at this installation. Everything here runs on
every OS, so the rendering of all three platforms is tested everywhere.

Must not import anything but the standard library (and never ``labrouter.desktop``).
"""

from __future__ import annotations

import configparser
import plistlib
import re
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field

LABEL = "io.labrouter.daemon"
"""launchd Label, also the plist's file name (launchd expects them to match)."""

RUN_VALUE_NAME = "labrouter"
"""Name of the value under HKCU\\...\\Run and under StartupApproved\\Run."""

DESKTOP_FILE_NAME = "labrouter.desktop"
UNIT_NAME = "labrouter.service"

RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
APPROVED_KEY = r"Software\Microsoft\Windows\CurrentVersion\Explorer\StartupApproved\Run"

# Task Manager writes 12 bytes: a flag dword (even = enabled, odd = disabled) and, when
# disabled, the FILETIME of the change. This is what it writes when enabling again.
APPROVED_ENABLED = bytes([2] + [0] * 11)

LINGER_EXPLANATION = """\
A systemd user unit runs only while the user has a session: without "lingering" it starts
at your first login and stops when your last session (an SSH login, say) ends. On an
always-on headless box, let it start at boot and keep running after you log out:

    loginctl enable-linger "$USER"

(one time; it may ask for your password through polkit, or run it with sudo). Check it with
`loginctl show-user "$USER" --property=Linger`. Undo with `loginctl disable-linger "$USER"`."""


@dataclass(frozen=True)
class Installation:
    """What an entry must start: the interpreter (or frozen app) and its environment.

    ``python`` is the console interpreter of the installation (absolute, not resolved:
    a venv's ``bin/python`` is a symlink and resolving it would leave the venv).
    ``gui_python`` is the windowless one (``pythonw.exe`` on Windows), or None.
    ``frozen`` means ``python`` is a standalone labrouter executable (PyInstaller), which
    takes the subcommand directly instead of ``-m labrouter``.
    """

    python: str
    log_dir: str
    headless: bool = False
    home: str | None = None
    path_env: str = "/usr/local/bin:/usr/bin:/bin"
    gui_python: str | None = None
    frozen: bool = False

    def command(self, gui: bool = False) -> tuple[str, ...]:
        """The argv that starts the daemon, e.g. (python, -m, labrouter, run, --headless)."""
        program = self.gui_python if (gui and self.gui_python) else self.python
        head: tuple[str, ...] = (program,) if self.frozen else (program, "-m", "labrouter")
        return (*head, "run", *(("--headless",) if self.headless else ()))


@dataclass(frozen=True)
class Entry:
    """An installed entry read back: what it runs and with which LABROUTER_HOME."""

    command: tuple[str, ...]
    home: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def program(self) -> str:
        return self.command[0] if self.command else ""

    @property
    def headless(self) -> bool:
        return "--headless" in self.command


def expected_entry(inst: Installation, gui: bool = False) -> Entry:
    return Entry(command=inst.command(gui=gui), home=inst.home)


def differences(found: Entry, expected: Entry,
                same_program: Callable[[str, str], bool] | None = None) -> list[str]:
    """Why an installed entry does not match this installation (empty: it matches).

    ``same_program`` says whether two interpreter paths are one program (the back-ends
    pass one that looks at the disk: ``venv/bin/python`` and ``venv/bin/python3`` are);
    by default only equal strings are.
    """
    same = same_program or (lambda a, b: a == b)
    why: list[str] = []
    if not same(found.program, expected.program):
        why.append(f"it starts {found.program or '(nothing)'}, "
                   f"this installation is {expected.program}")
    elif found.command[1:] != expected.command[1:]:
        why.append(f"it runs `{' '.join(found.command)}`, "
                   f"expected `{' '.join(expected.command)}`")
    if found.home != expected.home:
        why.append(f"LABROUTER_HOME is {found.home or '(unset)'}, "
                   f"here it is {expected.home or '(unset)'}")
    return why


# --- macOS: LaunchAgent ---------------------------------------------------------------

def render_plist(inst: Installation) -> bytes:
    env = {"PATH": inst.path_env, "LC_CTYPE": "UTF-8"}  # launchd gives neither (espanso #233)
    if inst.home:
        env["LABROUTER_HOME"] = inst.home
    doc = {
        "Label": LABEL,
        "ProgramArguments": list(inst.command()),
        "RunAtLoad": True,
        # restart after a crash only: "Quit" from the tray must stay quit
        "KeepAlive": {"SuccessfulExit": False},
        # an interactive app (hotkey, tray) must not be throttled like a background job
        "ProcessType": "Interactive",
        "EnvironmentVariables": env,
        "StandardOutPath": f"{inst.log_dir}/launchd.out.log",
        "StandardErrorPath": f"{inst.log_dir}/launchd.err.log",
    }
    return plistlib.dumps(doc, sort_keys=False)


def parse_plist(data: bytes) -> Entry:
    doc = plistlib.loads(data)
    env = dict(doc.get("EnvironmentVariables") or {})
    return Entry(command=tuple(str(a) for a in doc.get("ProgramArguments") or ()),
                 home=env.get("LABROUTER_HOME"))


# --- Windows: Run key ------------------------------------------------------------------

def _home_bootstrap(home: str) -> str:
    # A Run value is a bare command line: it cannot set an environment variable without a
    # console (cmd /c set ...). So the interpreter sets LABROUTER_HOME itself, then runs
    # the same entry point as `-m labrouter`.
    return (f"import os,sys;os.environ['LABROUTER_HOME']={home!r};"
            "from labrouter.cli import main;sys.exit(main(sys.argv[1:]))")


def render_run_command(inst: Installation) -> str:
    """The Run value: pythonw (no console window) with Windows command-line quoting."""
    argv = list(inst.command(gui=True))
    if inst.home and not inst.frozen:
        argv = [argv[0], "-c", _home_bootstrap(inst.home), *argv[3:]]
    return subprocess.list2cmdline(argv)


def split_windows_command(line: str) -> list[str]:
    """Split a command line the way the MS C runtime does (inverse of list2cmdline)."""
    args: list[str] = []
    buf: list[str] = []
    in_quotes = False
    have_arg = False
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c == "\\":
            j = i
            while j < n and line[j] == "\\":
                j += 1
            count = j - i
            if j < n and line[j] == '"':
                buf.append("\\" * (count // 2))
                if count % 2:
                    buf.append('"')
                    i = j + 1
                else:
                    i = j
                have_arg = True
                continue
            buf.append("\\" * count)
            i = j
            have_arg = True
            continue
        if c == '"':
            in_quotes = not in_quotes
            have_arg = True
        elif c in " \t" and not in_quotes:
            if have_arg:
                args.append("".join(buf))
                buf, have_arg = [], False
        else:
            buf.append(c)
            have_arg = True
        i += 1
    if have_arg:
        args.append("".join(buf))
    return args


_BOOTSTRAP_HOME = re.compile(r"os\.environ\['LABROUTER_HOME'\]=('(?:[^'\\]|\\.)*'|\"[^\"]*\")")


def parse_run_command(line: str) -> Entry:
    argv = split_windows_command(line)
    home: str | None = None
    if len(argv) >= 3 and argv[1] == "-c":
        m = _BOOTSTRAP_HOME.search(argv[2])
        if m:
            import ast

            home = ast.literal_eval(m.group(1))
        argv = [argv[0], "-m", "labrouter", *argv[3:]]
    return Entry(command=tuple(argv), home=home)


def approved_is_enabled(data: bytes | None) -> bool:
    """StartupApproved flag: absent or even first byte = enabled (Task Manager's rule)."""
    return not data or data[0] % 2 == 0


# --- Linux desktop: XDG autostart -------------------------------------------------------

_DESKTOP_RESERVED = set(' \t\n"\'\\><~|&;$*?#()`')


def desktop_exec_quote(arg: str) -> str:
    """Quote one Exec argument per the Desktop Entry spec ("The Exec key")."""
    arg = arg.replace("%", "%%")  # field codes
    if arg and not (set(arg) & _DESKTOP_RESERVED):
        return arg
    inner = "".join("\\" + c if c in '"`$\\' else c for c in arg)
    return f'"{inner}"'


def _desktop_string_escape(value: str) -> str:
    # the value of a key is itself a "string": its backslashes are escaped once more
    return value.replace("\\", "\\\\")


def _exec_argv(inst: Installation) -> list[str]:
    argv = list(inst.command())
    if inst.home:
        argv = ["env", f"LABROUTER_HOME={inst.home}", *argv]
    return argv


def render_desktop_file(inst: Installation, icon: str = "labrouter") -> str:
    exec_line = " ".join(desktop_exec_quote(a) for a in _exec_argv(inst))
    lines = [
        "[Desktop Entry]",
        "Type=Application",
        "Version=1.0",
        "Name=labrouter",
        "GenericName=Model router",
        "Comment=Routes selected text to the best live model in your lab",
        f"Exec={_desktop_string_escape(exec_line)}",
        f"TryExec={_desktop_string_escape(inst.python)}",
        f"Icon={icon}",
        "Terminal=false",
        "StartupNotify=false",
        "Categories=Utility;",
        "X-GNOME-Autostart-enabled=true",
        # the tray host (AppIndicator extension, panel) may not be up at the first second
        "X-GNOME-Autostart-Delay=5",
        "X-KDE-autostart-after=panel",
    ]
    return "\n".join(lines) + "\n"


def _unescape_desktop_string(value: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            nxt = value[i + 1]
            out.append({"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}.get(nxt,
                                                                                  "\\" + nxt))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def split_desktop_exec(value: str) -> list[str]:
    """Split an Exec value (already string-unescaped) into arguments."""
    args: list[str] = []
    buf: list[str] = []
    have = False
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c == '"':
            have = True
            i += 1
            while i < n and value[i] != '"':
                if value[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(value[i])
                i += 1
            i += 1
            continue
        if c in " \t":
            if have:
                args.append("".join(buf))
                buf, have = [], False
        else:
            buf.append(c)
            have = True
        i += 1
    if have:
        args.append("".join(buf))
    return [a.replace("%%", "%") for a in args]


def _env_prefix(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    env: dict[str, str] = {}
    if argv and argv[0] in ("env", "/usr/bin/env"):
        argv = argv[1:]
        while argv and "=" in argv[0] and not argv[0].startswith("-"):
            k, _, v = argv[0].partition("=")
            env[k] = v
            argv = argv[1:]
    return argv, env


def _read_ini(text: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None, strict=False)
    cp.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    cp.read_string(text)
    return cp


def parse_desktop_file(text: str) -> Entry:
    cp = _read_ini(text)
    raw = cp.get("Desktop Entry", "Exec", fallback="")
    argv, env = _env_prefix(split_desktop_exec(_unescape_desktop_string(raw)))
    extra = {"Hidden": cp.get("Desktop Entry", "Hidden", fallback="false"),
             "X-GNOME-Autostart-enabled": cp.get("Desktop Entry", "X-GNOME-Autostart-enabled",
                                                 fallback="true")}
    return Entry(command=tuple(argv), home=env.get("LABROUTER_HOME"), extra=extra)


def desktop_entry_disabled(entry: Entry) -> bool:
    """True when the user turned the entry off in the session settings (GNOME, XFCE)."""
    return (entry.extra.get("Hidden", "false").lower() == "true"
            or entry.extra.get("X-GNOME-Autostart-enabled", "true").lower() == "false")


# --- Linux headless: systemd --user unit ------------------------------------------------

def systemd_quote(arg: str) -> str:
    """Quote one ExecStart/Environment word: specifiers (%) and variables ($) escaped."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if arg and re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_systemd_unit(inst: Installation) -> str:
    exec_start = " ".join(systemd_quote(a) for a in inst.command())
    env_lines = ["Environment=PYTHONUNBUFFERED=1"]
    if inst.home:
        env_lines.append(f"Environment={systemd_quote('LABROUTER_HOME=' + inst.home)}")
    return "\n".join([
        "[Unit]",
        "Description=labrouter: model router for the home AI lab",
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={exec_start}",
        *env_lines,
        # on a crash only: `labrouter quit` or a clean exit stays stopped
        "Restart=on-failure",
        "RestartSec=5",
        "",
        "[Install]",
        # default.target, not graphical-session.target: the headless box has no session;
        # with `loginctl enable-linger` the user manager (and this unit) starts at boot
        "WantedBy=default.target",
        "",
    ])


def _split_systemd_words(value: str) -> list[str]:
    words = shlex.split(value, posix=True)
    return [w.replace("%%", "%").replace("$$", "$") for w in words]


def parse_systemd_unit(text: str) -> Entry:
    home: str | None = None
    exec_start = ""
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line
            continue
        if section != "[Service]" or "=" not in line:
            continue
        key, _, value = line.partition("=")
        if key == "ExecStart":
            exec_start = value.lstrip("-@:+!")
        elif key == "Environment":
            for word in _split_systemd_words(value):
                k, _, v = word.partition("=")
                if k == "LABROUTER_HOME":
                    home = v
    return Entry(command=tuple(_split_systemd_words(exec_start)), home=home)
