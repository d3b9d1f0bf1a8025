# The HTTP API's benchmark (`make bench` runs it): wrk from Debian against `baton serve`, each
# figure beside a bare axum route answering the same bytes, measured in the same run.

BENCH_TARGETS += http-bench
HTTP_BENCH_SECONDS ?= 10

.PHONY: http-bench

http-bench: rust-check
	@command -v wrk >/dev/null || { echo "http-bench: installing wrk (apt)"; apt-get install -y -q wrk >/dev/null; }
	$(CARGO) build --release -p baton-cli
	python3 bench/http_bench.py --baton $(BATON) --seconds $(HTTP_BENCH_SECONDS)
