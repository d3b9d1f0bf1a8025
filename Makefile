# Baton: `make run` starts the platform; `make test` runs every test; `make bench` measures
# Baton against its peers in one run. Each installs what it needs first.

SHELL := /bin/bash
CARGO ?= cargo
BATON := $(or $(CARGO_TARGET_DIR),target)/release/baton

# Extended by mk/*.mk (one file per area: extra packages, model files, benchmarks).
TEST_DEPS :=
RUN_DEPS :=
BENCH_TARGETS :=

# Where installed models live; the same order as baton_types::paths::models_dir.
MODELS_DIR ?= $(or $(BATON_MODELS_DIR),$(if $(BATON_HOME),$(BATON_HOME)/models,$(or $(XDG_DATA_HOME),$(HOME)/.local/share)/baton/models))

# Included before the rules below: prerequisites are expanded when a rule is read, so the
# areas' additions to TEST_DEPS/RUN_DEPS/BENCH_TARGETS must already be there.
include $(wildcard mk/*.mk)
.DEFAULT_GOAL := all

.PHONY: all run test bench build lint fmt rust-check test-rust

all: build

rust-check:
	@command -v $(CARGO) >/dev/null || { echo "error: cargo is not installed (Rust stable is required)"; exit 1; }

build: rust-check $(RUN_DEPS)
	$(CARGO) build --release -p baton-cli

# Builds, shows a first workflow run, then serves the API on 127.0.0.1:8787.
run: build
	$(BATON) run examples/hello.yaml
	$(BATON) serve

test: rust-check $(TEST_DEPS) test-rust

# CARGO_INCREMENTAL=0: a test run builds once; incremental caches only fill the disk.
test-rust: export CARGO_INCREMENTAL = 0
test-rust:
	$(CARGO) build -p baton-cli
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run --workspace --no-fail-fast; \
	else \
	  $(CARGO) test --workspace --no-fail-fast; \
	fi

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

bench: rust-check peer-bench-deps baton-bench $(BENCH_TARGETS)

