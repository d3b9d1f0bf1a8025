# The HTTP API's benchmark (`make bench` runs it): wrk from Debian against `baton serve`, each
# figure beside a bare axum route answering the same bytes, measured in the same run.

BENCH_TARGETS += http-bench
HTTP_BENCH_SECONDS ?= 10

.PHONY: http-bench

http-bench: rust-check
	@command -v wrk >/dev/null || { echo "http-bench: installing wrk (apt)"; \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends wrk >/dev/null; }
	$(CARGO) build --release -p baton-cli
	python3 bench/http_bench.py --baton $(BATON) --seconds $(HTTP_BENCH_SECONDS)

# docs/api.md's curl requests are run by crates/cli/tests/api_docs.rs with Debian's curl (and
# openssl, for the signed webhook request); the test fails instead of skipping when curl is
# missing.
.PHONY: api-docs-deps
api-docs-deps:
	@command -v curl >/dev/null && command -v openssl >/dev/null || { echo "api-docs: installing curl and openssl (apt)"; \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends curl openssl >/dev/null; }
TEST_DEPS += api-docs-deps
export BATON_REQUIRE_CURL ?= 1
