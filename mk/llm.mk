# Remote-provider adapters (crates/llm): the per-token overhead of streaming through an
# adapter, measured against the loopback cassette server. Prints one JSON line.

LLM_BENCH_TOKENS ?= 20000
LLM_BENCH_RUNS ?= 5

.PHONY: llm-bench

llm-bench:
	@cargo run -q --release -p baton-llm --example stream_overhead -- $(LLM_BENCH_TOKENS) $(LLM_BENCH_RUNS)

BENCH_TARGETS += llm-bench

# A real third-party OpenAI-compatible server for the adapter tests (crates/llm/tests/real_server.rs):
# llama-cpp-python's server, plus the official `openai` Python client (for `baton serve`'s /v1
# routes), in a virtualenv under ~/.cache/baton. Installed only when missing; building llama.cpp
# inside it takes several minutes. Built portable: a native build (-march=native) faults in
# libggml-cpu on CPUs that advertise AMX/AVX-512 (docs/providers.md).
LLAMA_SERVER_VENV ?= $(HOME)/.cache/baton/llama-server-venv
LLAMA_SERVER_PY = $(LLAMA_SERVER_VENV)/bin/python
LLAMA_CPP_PYTHON_VERSION := 0.3.36
OPENAI_PY_VERSION := 3.60.0
LLAMA_SERVER_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_AVX512=OFF

.PHONY: llama-server-deps

llama-server-deps:
	@if ! "$(LLAMA_SERVER_PY)" -c "import importlib.metadata as m, sys, llama_cpp.server, openai; sys.exit(not (m.version('llama-cpp-python') == '$(LLAMA_CPP_PYTHON_VERSION)' and m.version('openai') == '$(OPENAI_PY_VERSION)'))" 2>/dev/null; then \
	  echo "llm: installing llama-cpp-python[server] $(LLAMA_CPP_PYTHON_VERSION) and openai $(OPENAI_PY_VERSION) in $(LLAMA_SERVER_VENV) (builds llama.cpp: minutes)"; \
	  { [ -x "$(LLAMA_SERVER_PY)" ] || python3 -m venv "$(LLAMA_SERVER_VENV)"; } && \
	  CMAKE_ARGS="$(LLAMA_SERVER_CMAKE_ARGS)" "$(LLAMA_SERVER_PY)" -m pip install -q --no-cache-dir \
	    "llama-cpp-python[server]==$(LLAMA_CPP_PYTHON_VERSION)" "openai==$(OPENAI_PY_VERSION)"; \
	fi

TEST_DEPS += llama-server-deps model
# The adapter tests against the real server fail (instead of skipping loudly) when it is missing.
export BATON_REQUIRE_LLAMA_SERVER ?= 1
export BATON_LLAMA_SERVER_PYTHON ?= $(LLAMA_SERVER_PY)
