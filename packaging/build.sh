#!/bin/sh
# Build the standalone labrouter for THIS OS with PyInstaller, in a throwaway venv, then
# smoke-test it. Run by hand (about a minute on Linux); not part of the test suite.
#
#   packaging/build.sh            ->  packaging/dist/labrouter/   (+ .app on macOS)
#
# Needs Python 3.11+ and access to PyPI (or the pip cache) for pyinstaller and the
# dependencies. The source is copied first, so the checkout gets no build/ or egg-info.
set -eu
HERE=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
ROOT=$(dirname "$HERE")
PY=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/labrouter-build.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

start=$(date +%s)
echo "build: venv and PyInstaller in $WORK"
"$PY" -m venv "$WORK/venv"
PIP="$WORK/venv/bin/python -m pip --disable-pip-version-check --quiet"
(cd "$ROOT" && tar cf - --exclude=./.git --exclude=./build --exclude=./dist \
    --exclude=./packaging/dist --exclude=./packaging/build --exclude=./.venv \
    --exclude='*.egg-info' --exclude=__pycache__ .) | (mkdir -p "$WORK/src" && cd "$WORK/src" && tar xf -)
$PIP install "pyinstaller>=6.10" "$WORK/src"

echo "build: pyinstaller"
"$WORK/venv/bin/pyinstaller" --noconfirm --log-level WARN \
    --distpath "$HERE/dist" --workpath "$WORK/pyi-work" "$WORK/src/packaging/labrouter.spec"

BIN="$HERE/dist/labrouter/labrouter"
[ -x "$BIN" ] || BIN="$HERE/dist/labrouter/labrouter.exe"
echo "build: smoke test of $BIN"
"$BIN" --version
"$BIN" autostart show --platform linux --headless | grep -q 'WantedBy=default.target'
LABROUTER_HOME="$WORK/home" "$BIN" config validate
LABROUTER_HOME="$WORK/home" "$BIN" route "why is the sky blue" >/dev/null 2>&1 \
    || echo "build: note: \`route\` did not answer offline (fine: no servers here)"
end=$(date +%s)
echo "build: done in $((end - start)) s: $(du -sh "$HERE/dist/labrouter" | cut -f1) in $HERE/dist/labrouter"
