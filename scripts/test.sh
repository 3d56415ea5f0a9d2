#!/bin/sh
# The README's test command: a virtual environment in .venv with labrouter (editable) and
# the test tools, then pytest. Works on a stock Debian 12 or Ubuntu 24.04 (no `python`,
# PEP 668's externally managed system Python, no C compiler).
#
#   sh scripts/test.sh [PYTEST ARGS...]     set up or update .venv, then run the tests
#   sh scripts/test.sh --setup-only         only set up or update .venv (.ci/run uses it)
#
# LABROUTER_PYTHON=/path/to/python3.11+ chooses the interpreter for a new .venv.
set -eu
cd "$(dirname "$0")/.."
VENV=.venv
say() { printf '%s\n' "scripts/test.sh: $*" >&2; }

if ! [ -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    PY="${LABROUTER_PYTHON:-python3}"
    "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
        || { say "need Python 3.11 or newer as $PY (set LABROUTER_PYTHON)"; exit 1; }
    say "creating $VENV with $PY"
    rm -rf "$VENV"
    "$PY" -m venv "$VENV" \
        || { say "python3 -m venv failed (on Debian/Ubuntu: apt install python3-venv)"; exit 1; }
fi
PIP="$VENV/bin/python -m pip --disable-pip-version-check"
$PIP install --quiet -e '.[test]'
# On Linux labrouter uses only pynput's X11 backend; pynput's metadata also asks for evdev,
# which needs a C compiler (see pyproject.toml), hence --no-deps.
case "$(uname -s)" in
    Linux) "$VENV/bin/python" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("pynput") is None)' \
               || $PIP install --quiet --no-deps 'pynput>=1.7,<2' ;;
esac

if [ "${1:-}" = --setup-only ]; then
    exit 0
fi
exec "$VENV/bin/python" -m pytest -q "$@"
