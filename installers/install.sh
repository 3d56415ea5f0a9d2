#!/bin/sh
# Install (or upgrade in place) labrouter for this user on Linux or macOS.
#
#   installers/install.sh [--from PATH | --pypi [VERSION]] [--join CODE] [--headless]
#                         [--no-start] [--venv DIR] [--bin-dir DIR]
#
# What it does, each step printed as it happens:
#   1. a virtual environment: $LABROUTER_VENV, else <user data dir>/labrouter/venv
#      (~/.local/share/labrouter/venv; ~/Library/Application Support/labrouter/venv;
#      $LABROUTER_HOME/data/venv when LABROUTER_HOME is set);
#   2. labrouter into it, from a local source tree (--from, default: the checkout this
#      script sits in) or from PyPI (--pypi); re-running upgrades in place;
#   3. a launcher, ~/.local/bin/labrouter (or --bin-dir), that runs the venv's labrouter;
#   4. the cluster key: `labrouter join CODE` with --join, else `labrouter init` unless a
#      key exists already;
#   5. start at login: `labrouter autostart enable` (--headless, or automatically on Linux
#      without a display, uses a systemd user unit);
#   6. starts the daemon: through the service manager when it is reachable, else in the
#      background with nohup and a pid file that uninstall.sh uses to stop it.
# Nothing is sent anywhere except to PyPI by pip. Undo it all with installers/uninstall.sh.
set -eu

say() { printf '%s\n' "labrouter install: $*"; }
die() { printf '%s\n' "labrouter install: error: $*" >&2; exit 1; }

HERE=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
FROM=""
PYPI=""
PYPI_VERSION=""
JOIN=""
HEADLESS=""
START=1
VENV="${LABROUTER_VENV:-}"
BIN_DIR="${LABROUTER_BIN_DIR:-$HOME/.local/bin}"

while [ $# -gt 0 ]; do
    case "$1" in
        --from) [ $# -ge 2 ] || die "--from needs a path"; FROM=$2; shift 2 ;;
        --pypi)
            PYPI=1; shift
            case "${1:-}" in ""|-*) ;; *) PYPI_VERSION=$1; shift ;; esac ;;
        --join) [ $# -ge 2 ] || die "--join needs a code"; JOIN=$2; shift 2 ;;
        --headless) HEADLESS=1; shift ;;
        --no-start) START=""; shift ;;
        --venv) [ $# -ge 2 ] || die "--venv needs a directory"; VENV=$2; shift 2 ;;
        --bin-dir) [ $# -ge 2 ] || die "--bin-dir needs a directory"; BIN_DIR=$2; shift 2 ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

# --- where things go (the same rules as platformdirs, which labrouter itself uses) ---
OS=$(uname -s)
if [ -n "${LABROUTER_HOME:-}" ]; then
    case "$LABROUTER_HOME" in /*) ;; *) LABROUTER_HOME="$(pwd)/$LABROUTER_HOME" ;; esac
    export LABROUTER_HOME
    DATA_DIR="$LABROUTER_HOME/data"
elif [ "$OS" = Darwin ]; then
    DATA_DIR="$HOME/Library/Application Support/labrouter"
else
    DATA_DIR="${XDG_DATA_HOME:-$HOME/.local/share}/labrouter"
fi
[ -n "$VENV" ] || VENV="$DATA_DIR/venv"
LAUNCHER="$BIN_DIR/labrouter"
MARK="# labrouter launcher written by installers/install.sh"

if [ -z "$HEADLESS" ] && [ "$OS" != Darwin ] \
        && [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
    HEADLESS=1
    say "no display (DISPLAY and WAYLAND_DISPLAY unset): installing the headless daemon"
fi

# --- 1. a Python >= 3.11 and the venv ---------------------------------------------------
find_python() {
    for p in "${LABROUTER_PYTHON:-}" python3.13 python3.12 python3.11 python3; do
        [ -n "$p" ] || continue
        command -v "$p" >/dev/null 2>&1 || continue
        if "$p" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$p"; return 0
        fi
    done
    return 1
}

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    say "upgrading the existing environment $VENV"
else
    PY=$(find_python) || die "no Python 3.11 or newer found (set LABROUTER_PYTHON=/path/to/python3)"
    say "creating a virtual environment at $VENV with $PY"
    rm -rf "$VENV"
    mkdir -p "$(dirname "$VENV")"
    "$PY" -m venv "$VENV" || die "python -m venv failed (on Debian/Ubuntu: apt install python3-venv)"
fi

# --- 2. labrouter into it ----------------------------------------------------------------
if [ -z "$FROM" ] && [ -z "$PYPI" ]; then
    if [ -f "$HERE/../pyproject.toml" ] && grep -q '^name = "labrouter"' "$HERE/../pyproject.toml"; then
        FROM=$(CDPATH='' cd -- "$HERE/.." && pwd)
    else
        PYPI=1
    fi
fi
PIP="$VENV/bin/python -m pip --disable-pip-version-check"
if [ -n "$PYPI" ]; then
    SPEC="labrouter${PYPI_VERSION:+==$PYPI_VERSION}"
    say "installing $SPEC from PyPI"
    $PIP install --quiet --upgrade "$SPEC" || die "pip install $SPEC failed"
else
    [ -f "$FROM/pyproject.toml" ] || die "$FROM has no pyproject.toml: not a labrouter source tree"
    say "installing labrouter from $FROM"
    # build from a copy: setuptools builds in the source tree (build/, *.egg-info), and a
    # stale build/lib would ship modules deleted from the checkout
    BUILD_SRC=$(mktemp -d "${TMPDIR:-/tmp}/labrouter-src.XXXXXX")
    trap 'rm -rf "$BUILD_SRC"' EXIT
    (cd "$FROM" && tar cf - --exclude=./.git --exclude=./build --exclude=./dist \
        --exclude=./.venv --exclude='*.egg-info' --exclude=__pycache__ .) \
        | (cd "$BUILD_SRC" && tar xf -) || die "cannot copy $FROM"
    # --force-reinstall of the package alone: the same version number from a changed
    # checkout must still replace the installed code; dependencies stay as they are
    $PIP install --quiet --upgrade "$BUILD_SRC" || die "pip install $FROM failed"
    $PIP install --quiet --force-reinstall --no-deps "$BUILD_SRC" || die "pip install $FROM failed"
fi
# On Linux labrouter uses only pynput's X11 backend (python-xlib, a labrouter dependency
# there); pynput's metadata also asks for evdev, which has no wheel and needs a C compiler,
# so pynput comes without its dependencies (see pyproject.toml).
if [ "$OS" = Linux ]; then
    $PIP install --quiet --no-deps 'pynput>=1.7,<2' || die "pip install pynput failed"
fi
LR="$VENV/bin/labrouter"
[ -x "$LR" ] || die "the install did not create $LR"
say "installed $("$LR" --version)"

# --- 3. the launcher ---------------------------------------------------------------------
if [ -e "$LAUNCHER" ] && ! grep -q "$MARK" "$LAUNCHER" 2>/dev/null; then
    say "note: $LAUNCHER exists and was not written by this installer: leaving it alone"
    say "      run labrouter as $LR"
else
    mkdir -p "$BIN_DIR"
    {
        echo "#!/bin/sh"
        echo "$MARK; uninstall.sh removes it"
        if [ -n "${LABROUTER_HOME:-}" ]; then
            printf "LABROUTER_HOME='%s'; export LABROUTER_HOME\n" \
                "$(printf '%s' "$LABROUTER_HOME" | sed "s/'/'\\\\''/g")"
        fi
        printf "exec '%s' \"\$@\"\n" "$(printf '%s' "$LR" | sed "s/'/'\\\\''/g")"
    } > "$LAUNCHER.tmp"
    chmod 755 "$LAUNCHER.tmp"
    mv "$LAUNCHER.tmp" "$LAUNCHER"
    say "wrote the launcher $LAUNCHER"
    case ":$PATH:" in
        *":$BIN_DIR:"*) ;;
        *) say "note: $BIN_DIR is not on your PATH; add it, e.g. in ~/.profile:"
           say "      export PATH=\"$BIN_DIR:\$PATH\"" ;;
    esac
fi

# a desktop icon for the autostart entry (Icon=labrouter), when the source tree has one
if [ "$OS" != Darwin ] && [ -n "$FROM" ] && [ -f "$FROM/assets/app/labrouter-256.png" ]; then
    ICON_DIR="${XDG_DATA_HOME:-$HOME/.local/share}/icons/hicolor/256x256/apps"
    mkdir -p "$ICON_DIR"
    cp "$FROM/assets/app/labrouter-256.png" "$ICON_DIR/labrouter.png"
fi

has_command() { "$LR" "$1" --help >/dev/null 2>&1; }
path_of() {  # path_of KEY: one entry of `labrouter paths --json`
    "$LR" paths --json | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

# --- 4. the cluster key ------------------------------------------------------------------
KEYRING=$(path_of keyring)
if [ -n "$JOIN" ]; then
    if has_command join; then
        say "joining the cluster"
        "$LR" join "$JOIN" || die "labrouter join failed (see above)"
    else
        say "warning: this labrouter has no \`join\` command yet; run \`labrouter join CODE\` later"
    fi
elif [ -f "$KEYRING" ]; then
    say "keeping the existing cluster key $KEYRING"
elif has_command init; then
    say "creating a cluster key (labrouter init)"
    "$LR" init || die "labrouter init failed (see above)"
else
    say "warning: this labrouter has no \`init\` command yet; run \`labrouter init\` later"
fi

# --- 5. start at login -------------------------------------------------------------------
say "enabling start at login"
ENABLE_OUT=$("$LR" autostart enable ${HEADLESS:+--headless}) || die "labrouter autostart enable failed"
printf '%s\n' "$ENABLE_OUT" | sed 's/^/    /'

# --- 6. start it now ---------------------------------------------------------------------
RUN_DIR=$(path_of run)
LOG_DIR=$(path_of log)
PIDFILE="$RUN_DIR/installer-daemon.pid"
if [ -z "$START" ]; then
    say "not starting the daemon (--no-start)"
elif ! has_command run; then
    say "warning: this labrouter has no \`run\` command yet: not started"
elif printf '%s' "$ENABLE_OUT" | grep -q 'started by systemd'; then
    # an upgrade with an unchanged unit leaves the old code running: restart it
    systemctl --user restart labrouter.service && say "restarted by systemd (labrouter.service)"
elif printf '%s' "$ENABLE_OUT" | grep -q 'started by launchd'; then
    say "started by launchd"
else
    # only a process that is still `labrouter run`: after a reboot the number may be reused
    if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null \
            && ps -p "$(cat "$PIDFILE")" -o args= 2>/dev/null | grep -q 'labrouter.* run'; then
        say "stopping the daemon this installer started before (pid $(cat "$PIDFILE"))"
        kill "$(cat "$PIDFILE")" 2>/dev/null || true
        i=0
        while kill -0 "$(cat "$PIDFILE")" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
    fi
    mkdir -p "$RUN_DIR" "$LOG_DIR"
    nohup "$LR" run ${HEADLESS:+--headless} >> "$LOG_DIR/installer-daemon.out" 2>&1 < /dev/null &
    echo $! > "$PIDFILE"
    say "started the daemon in the background (pid $!, pid file $PIDFILE)"
    say "  output: $LOG_DIR/installer-daemon.out"
fi

SERVICES=""
if [ -n "$START" ] && has_command run && has_command status; then
    # until the daemon answers and has tried each service once (a taken port: RETRYING)
    i=0
    while [ $i -lt 60 ]; do
        if STATUS=$("$LR" status 2>/dev/null) \
                && ! printf '%s\n' "$STATUS" | grep -q '^services:.* starting'; then
            say "the daemon answers: $(printf '%s\n' "$STATUS" | head -n 1)"
            SERVICES=$(printf '%s\n' "$STATUS" | sed -n 's/^services: //p')
            break
        fi
        sleep 0.25; i=$((i + 1))
    done
    [ $i -lt 60 ] || say "warning: the daemon does not answer yet; see $LOG_DIR"
    case "$SERVICES" in
        *RETRYING*|*FAILED*)
            say "warning: not every service runs; \`labrouter doctor\` says how to fix it" ;;
    esac
fi

say "done. labrouter is in $VENV${SERVICES:+; services: $SERVICES}; run \`labrouter --help\`, undo with installers/uninstall.sh"
