#!/bin/sh
# Builds llama.cpp's own llama-bench against the llama.cpp sources that llama-cpp-sys-2 vendors
# (the llama, ggml and common sources Baton links) and prints the path of the binary.
#
# The vendored sources ship tools/llama-bench/ without its .cpp. The driver therefore comes from
# the llama.cpp release closest to the vendored one that a package registry publishes: the PyPI
# sdist of llama-cpp-python (vendor/llama.cpp/tools/llama-bench/{llama-bench,main}.cpp), fetched
# with pip, its sha256 checked. Only those two files are taken from it; llama, ggml and common
# are the vendored ones. llama_bench_vendored.patch, when present, would adapt the driver to the
# vendored API (none is needed for llama-cpp-python 0.3.36 against llama-cpp-sys-2 0.1.161).
#
# usage: llama-bench.sh CACHE_DIR LLAMA_SRC [extra cmake flags...]
#   CACHE_DIR  where the driver and the build go (outside the repository)
#   LLAMA_SRC  the llama.cpp directory of llama-cpp-sys-2
set -eu

PY_PACKAGE=llama-cpp-python
PY_VERSION=0.3.36
PY_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
# The PEP 517 backend of that sdist: pip needs it to read the sdist's metadata. Installed in a
# private venv, so that pip does not build the backend's own build requirements from source.
PY_BACKEND="scikit-build-core==1.1.2"

cache=$1
src=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)

driver="$cache/driver-$PY_PACKAGE-$PY_VERSION"
if [ ! -f "$driver/llama-bench.cpp" ]; then
  echo "llama-bench: fetching its driver from the PyPI sdist of $PY_PACKAGE $PY_VERSION" >&2
  venv="$cache/venv"
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q "$PY_BACKEND" >&2
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$venv/bin/pip" download -q --no-deps --no-binary :all: --no-build-isolation \
    -d "$tmp" "$PY_PACKAGE==$PY_VERSION" >&2
  sdist="$tmp/$(echo "$PY_PACKAGE" | tr - _)-$PY_VERSION.tar.gz"
  echo "$PY_SHA256  $sdist" | sha256sum -c --quiet - >&2
  top="$(echo "$PY_PACKAGE" | tr - _)-$PY_VERSION"
  tar -xzf "$sdist" -C "$tmp" "$top/vendor/llama.cpp/tools/llama-bench/llama-bench.cpp" \
    "$top/vendor/llama.cpp/tools/llama-bench/main.cpp" "$top/CHANGELOG.md"
  mkdir -p "$driver.tmp"
  cp "$tmp/$top/vendor/llama.cpp/tools/llama-bench/llama-bench.cpp" \
    "$tmp/$top/vendor/llama.cpp/tools/llama-bench/main.cpp" "$driver.tmp/"
  # The llama.cpp commit that release vendors, for the record.
  grep -m 1 "update llama.cpp to" "$tmp/$top/CHANGELOG.md" > "$driver.tmp/RELEASE" || true
  if [ -s "$here/llama_bench_vendored.patch" ]; then
    (cd "$driver.tmp" && patch -s -p1 < "$here/llama_bench_vendored.patch")
  fi
  rm -rf "$driver"
  mv "$driver.tmp" "$driver"
fi

ver=$(basename "$(dirname "$src")")
build="$cache/build-$ver-$PY_VERSION"
for f in "$@"; do build="$build$(echo "$f" | tr -c 'A-Za-z0-9=\n' _)"; done
if [ ! -x "$build/llama-bench" ]; then
  echo "llama-bench: building it in $build (llama.cpp from $src)" >&2
  cmake -S "$here" -B "$build" -DLLAMA_SRC="$src" -DLLAMA_BENCH_SRC="$driver" \
    -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF "$@" > "$build.log" 2>&1 ||
    { cat "$build.log" >&2; exit 1; }
  cmake --build "$build" --target llama-bench -j "$(nproc)" >> "$build.log" 2>&1 ||
    { tail -n 40 "$build.log" >&2; exit 1; }
fi
echo "$build/llama-bench"
