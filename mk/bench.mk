# Baton against its peers (../shared/peer-bench): the same workloads on Baton (`baton bench`),
# LangGraph, graph-flow and durare, in one run on one machine; then the table of ratios.
# Nothing is built or installed inside the repository: the peers' virtualenv and build output
# live under ~/.cache/baton. Results: $(BENCH_OUT)/results-<UTC time>.jsonl (and latest.jsonl).
#
#   make bench                  everything (LangGraph at 10,000 concurrent runs takes ~70 s)
#   make bench BENCH_QUICK=1    skips LangGraph's 10,000-run workload
#   make peer-bench-deps baton-bench    only this comparison (not the other areas' benchmarks)

PEER_BENCH_DIR ?= ../shared/peer-bench
PEERS_VENV ?= $(HOME)/.cache/baton/peers-venv
PEER_BENCH_TARGET ?= $(HOME)/.cache/baton/peer-bench-target
PEER_RUST = $(PEER_BENCH_TARGET)/release/peer-bench-rust
PEERS_PY = $(PEERS_VENV)/bin/python
BENCH_OUT ?= $(or $(CARGO_TARGET_DIR),target)/bench
BENCH_RUNS ?= 200
BENCH_COLD_RUNS ?= 20
BENCH_APP_RUNS ?= 5
BENCH_QUICK ?=
LANGGRAPH_VERSION := 1.2.24
LANGGRAPH_SQLITE_VERSION := 3.1.2

.PHONY: peer-bench-deps baton-bench

# Idempotent: installs LangGraph only when the virtualenv lacks those versions; cargo rebuilds
# the Rust peers only when needed.
peer-bench-deps:
	@test -f "$(PEER_BENCH_DIR)/langgraph_bench.py" || { echo "error: peer-bench not found at $(PEER_BENCH_DIR) (set PEER_BENCH_DIR)"; exit 1; }
	@command -v python3 >/dev/null || { echo "error: python3 is needed for the LangGraph peer"; exit 1; }
	@if ! "$(PEERS_PY)" -c "import importlib.metadata as m, sys; sys.exit(not (m.version('langgraph') == '$(LANGGRAPH_VERSION)' and m.version('langgraph-checkpoint-sqlite') == '$(LANGGRAPH_SQLITE_VERSION)'))" 2>/dev/null; then \
	  echo "peer-bench: installing langgraph $(LANGGRAPH_VERSION) in $(PEERS_VENV)"; \
	  { [ -x "$(PEERS_PY)" ] || python3 -m venv "$(PEERS_VENV)"; } && \
	  "$(PEERS_PY)" -m pip install -q "langgraph==$(LANGGRAPH_VERSION)" "langgraph-checkpoint-sqlite==$(LANGGRAPH_SQLITE_VERSION)"; \
	fi
	@cd "$(PEER_BENCH_DIR)/rust" && CARGO_TARGET_DIR="$(PEER_BENCH_TARGET)" $(CARGO) build --release -q

# Every workload on every framework, JSON lines into one file, then the table.
baton-bench: rust-check
	$(CARGO) build --release -p baton-cli
	@set -eo pipefail; \
	mkdir -p "$(BENCH_OUT)"; \
	out="$(BENCH_OUT)/results-$$(date -u +%Y%m%dT%H%M%SZ).jsonl"; \
	meta() { printf '{"meta": {"when": "%s", "step": "%s", "load": "%s", "cpus": %s}}\n' \
	  "$$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$$1" "$$(cut -d' ' -f1-3 /proc/loadavg)" "$$(nproc)" >> "$$out"; }; \
	run() { echo "bench: $$*" >&2; "$$@" >> "$$out"; }; \
	meta start; \
	run $(BATON) bench w1 w2 w3 w4 w4full --runs $(BENCH_RUNS); \
	run $(BATON) bench w3 --concurrency 10000; \
	run $(BATON) bench w5 --cold-runs $(BENCH_COLD_RUNS); \
	run $(BATON) bench team --runs $(BENCH_RUNS); \
	run env BATON_MODEL=scripted/app-todo $(BATON) bench app --workflow examples/app-team.yaml --runs $(BENCH_APP_RUNS); \
	run $(PEER_RUST) w1 w2 w3 w4 --runs $(BENCH_RUNS); \
	run $(PEER_RUST) w3 --concurrency 10000; \
	run $(PEER_RUST) w5 --runs $(BENCH_COLD_RUNS); \
	run $(PEER_RUST) --peer durare w1 w2 w3 w4 --runs $(BENCH_RUNS); \
	run $(PEER_RUST) --peer durare w3 --concurrency 10000; \
	run $(PEER_RUST) --peer durare w5 --runs $(BENCH_COLD_RUNS); \
	run $(PEERS_PY) $(PEER_BENCH_DIR)/langgraph_bench.py w1 w2 w3 w4 --runs $(BENCH_RUNS); \
	if [ -z "$(BENCH_QUICK)" ]; then run $(PEERS_PY) $(PEER_BENCH_DIR)/langgraph_bench.py w3 --concurrency 10000; \
	else echo "bench: BENCH_QUICK set: skipping LangGraph at 10,000 concurrent runs" >&2; fi; \
	run $(PEERS_PY) bench/langgraph_cold.py --runs $(BENCH_COLD_RUNS); \
	meta end; \
	cp "$$out" "$(BENCH_OUT)/latest.jsonl"; \
	echo "bench: results in $$out" >&2; \
	python3 bench/report.py "$$out"
