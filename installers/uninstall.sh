#!/bin/sh
# Remove what installers/install.sh installed, for this user on Linux or macOS.
#
#   installers/uninstall.sh [--purge] [--venv DIR] [--bin-dir DIR]
#
# Stops the daemon, removes start at login (`labrouter autostart disable`), the virtual
# environment, the launcher and the desktop icon. Keeps the configuration, the cluster key,
# usage logs and the daemon log, so that a later install carries on, unless --purge is
# given: then those are deleted too.
set -eu

say() { printf '%s\n' "labrouter uninstall: $*"; }
die() { printf '%s\n' "labrouter uninstall: error: $*" >&2; exit 1; }

PURGE=""
VENV="${LABROUTER_VENV:-}"
BIN_DIR="${LABROUTER_BIN_DIR:-$HOME/.local/bin}"
while [ $# -gt 0 ]; do
    case "$1" in
        --purge) PURGE=1; shift ;;
        --venv) [ $# -ge 2 ] || die "--venv needs a directory"; VENV=$2; shift 2 ;;
        --bin-dir) [ $# -ge 2 ] || die "--bin-dir needs a directory"; BIN_DIR=$2; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

# the same locations as install.sh and platformdirs
OS=$(uname -s)
if [ -n "${LABROUTER_HOME:-}" ]; then
    case "$LABROUTER_HOME" in /*) ;; *) LABROUTER_HOME="$(pwd)/$LABROUTER_HOME" ;; esac
    export LABROUTER_HOME
    CONFIG_DIR="$LABROUTER_HOME/config"; DATA_DIR="$LABROUTER_HOME/data"
    LOG_DIR="$LABROUTER_HOME/log"; RUN_DIR="$LABROUTER_HOME/run"
elif [ "$OS" = Darwin ]; then
    CONFIG_DIR="$HOME/Library/Application Support/labrouter"; DATA_DIR="$CONFIG_DIR"
    LOG_DIR="$HOME/Library/Logs/labrouter"; RUN_DIR="$DATA_DIR/run"
else
    CONFIG_DIR="${XDG_CONFIG_HOME:-$HOME/.config}/labrouter"
    DATA_DIR="${XDG_DATA_HOME:-$HOME/.local/share}/labrouter"
    LOG_DIR="${XDG_STATE_HOME:-$HOME/.local/state}/labrouter/log"; RUN_DIR="$DATA_DIR/run"
fi
[ -n "$VENV" ] || VENV="$DATA_DIR/venv"
LR="$VENV/bin/labrouter"
LAUNCHER="$BIN_DIR/labrouter"
MARK="# labrouter launcher written by installers/install.sh"

if [ -x "$LR" ]; then
    # ask labrouter itself where it keeps things: it knows better than the rules above
    if PATHS=$("$LR" paths --json 2>/dev/null); then
        get() { printf '%s' "$PATHS" | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
        CONFIG_DIR=$(get config_dir); DATA_DIR=$(get data); LOG_DIR=$(get log); RUN_DIR=$(get run)
    fi
    say "removing start at login"
    "$LR" autostart disable | sed 's/^/    /' || say "warning: autostart disable failed"
else
    say "no labrouter in $VENV: removing what is left"
    # the entries autostart would have removed, should the venv be gone already
    if [ "$OS" = Darwin ]; then
        launchctl bootout "gui/$(id -u)/io.labrouter.daemon" 2>/dev/null || true
        rm -f "$HOME/Library/LaunchAgents/io.labrouter.daemon.plist"
    else
        XCH="${XDG_CONFIG_HOME:-$HOME/.config}"
        systemctl --user disable --now labrouter.service >/dev/null 2>&1 || true
        rm -f "$XCH/autostart/labrouter.desktop" "$XCH/systemd/user/labrouter.service" \
              "$XCH/systemd/user/default.target.wants/labrouter.service"
    fi
fi

# the daemon install.sh started with nohup (a service-manager daemon was stopped above)
PIDFILE="$RUN_DIR/installer-daemon.pid"
if [ -f "$PIDFILE" ]; then
    PID=$(cat "$PIDFILE")
    # the pid file outlives a reboot, and the number may now belong to another program:
    # only a process that is `labrouter run` is ours to stop
    if kill -0 "$PID" 2>/dev/null && ! ps -p "$PID" -o args= 2>/dev/null | grep -q 'labrouter.* run'; then
        say "pid $PID in $PIDFILE is not labrouter any more: leaving it alone"
    elif kill -0 "$PID" 2>/dev/null; then
        say "stopping the daemon (pid $PID)"
        kill "$PID" 2>/dev/null || true
        i=0
        while kill -0 "$PID" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
        if kill -0 "$PID" 2>/dev/null; then
            say "it did not stop within 10 s: killing it"
            kill -9 "$PID" 2>/dev/null || true
        fi
    fi
    rm -f "$PIDFILE"
fi

if [ -d "$VENV" ]; then
    rm -rf "$VENV"
    say "removed $VENV"
fi
if [ -f "$LAUNCHER" ] && grep -q "$MARK" "$LAUNCHER" 2>/dev/null; then
    rm -f "$LAUNCHER"
    say "removed $LAUNCHER"
fi
ICON="${XDG_DATA_HOME:-$HOME/.local/share}/icons/hicolor/256x256/apps/labrouter.png"
if [ -f "$ICON" ]; then
    rm -f "$ICON"
    # only directories left empty: another app's icons keep theirs
    D=$(dirname "$ICON")
    for _ in apps 256x256 hicolor icons; do rmdir "$D" 2>/dev/null || break; D=$(dirname "$D"); done
fi
rm -f "$LOG_DIR/installer-daemon.out"

if [ -n "$PURGE" ]; then
    for d in "$CONFIG_DIR" "$DATA_DIR" "$LOG_DIR" "$RUN_DIR"; do
        if [ -e "$d" ]; then rm -rf "$d"; say "removed $d"; fi
    done
    # platformdirs' log dir on Linux is .../labrouter/log: its parent is ours as well
    [ "$OS" = Darwin ] || rmdir "$(dirname "$LOG_DIR")" 2>/dev/null || true
    [ -z "${LABROUTER_HOME:-}" ] || rmdir "$LABROUTER_HOME" 2>/dev/null || true
else
    # empty leftovers only: a kept key or usage log keeps its directory
    for d in "$RUN_DIR" "$LOG_DIR" "$DATA_DIR" "$CONFIG_DIR"; do rmdir "$d" 2>/dev/null || true; done
    [ "$OS" = Darwin ] || rmdir "$(dirname "$LOG_DIR")" 2>/dev/null || true
    say "kept the configuration and cluster key in $CONFIG_DIR and the data in $DATA_DIR"
    say "  (delete them with --purge)"
fi
say "done"
