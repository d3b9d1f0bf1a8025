# PostgreSQL (crates/store's PostgreSQL backend): the store conformance suite and the CLI's
# PostgreSQL tests start a private server of their own from Debian's `postgresql` package
# (initdb in a temporary folder, a free port on 127.0.0.1, stopped when the test process ends;
# see crates/test-support/src/postgres.rs). No service of the machine is used or needed.

POSTGRES_DEBS ?= postgresql

.PHONY: postgres-deps

# Installs the package when no PostgreSQL server program is there (a no-op otherwise).
postgres-deps:
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || { \
	  echo "postgres: installing $(POSTGRES_DEBS)"; \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $(POSTGRES_DEBS) >/dev/null; \
	}
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || { echo "postgres: no server program after installing $(POSTGRES_DEBS)"; exit 1; }

TEST_DEPS += postgres-deps

# Installed above: a PostgreSQL test that would skip is a failure in `make test`.
test-rust: export BATON_REQUIRE_POSTGRES ?= 1
