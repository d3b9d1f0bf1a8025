# Sandboxed code execution (crates/sandbox): what its tests need on the machine, and its
# benchmark. The tests run every tier that works here and skip (with the reason) the others.

# OCI runtimes (oci tier: crun or runc) and gVisor (gvisor tier); python3 and bash are used by
# the hostile-payload suite.
SANDBOX_DEBS ?= runc crun runsc python3 bash
SANDBOX_BENCH_RUNS ?= 100
SANDBOX_BENCH_CONCURRENT ?= 100

.PHONY: sandbox-deps sandbox-test sandbox-bench

# Installs only what is missing (a no-op in well under a second when all is there).
sandbox-deps:
	@missing=""; \
	for p in $(SANDBOX_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "sandbox: installing$$missing"; \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@command -v bandit >/dev/null 2>&1 || { \
	  echo "sandbox: installing Bandit (pip)"; \
	  python3 -m pip install --quiet bandit 2>/dev/null || python3 -m pip install --quiet --break-system-packages bandit; \
	  command -v pyenv >/dev/null 2>&1 && pyenv rehash || true; \
	}

sandbox-test: sandbox-deps
	cargo test -p baton-sandbox

sandbox-bench: sandbox-deps
	@cargo run -q --release -p baton-sandbox --example bench -- $(SANDBOX_BENCH_RUNS) $(SANDBOX_BENCH_CONCURRENT)

TEST_DEPS += sandbox-deps
BENCH_TARGETS += sandbox-bench
