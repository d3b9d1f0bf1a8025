# Remote-provider adapters (crates/llm): the per-token overhead of streaming through an
# adapter, measured against the loopback cassette server. Prints one JSON line.

LLM_BENCH_TOKENS ?= 20000
LLM_BENCH_RUNS ?= 5

.PHONY: llm-bench

llm-bench:
	@cargo run -q --release -p baton-llm --example stream_overhead -- $(LLM_BENCH_TOKENS) $(LLM_BENCH_RUNS)

BENCH_TARGETS += llm-bench
