# Schemathesis (a property-based tester for OpenAPI documents, from PyPI) for the test that
# fuzzes `baton serve`'s /api/v1 over its own OpenAPI document
# (crates/cli/tests/schemathesis.rs), in a virtualenv under ~/.cache/baton. Installed only when
# missing or at another version.
SCHEMATHESIS_VENV ?= $(HOME)/.cache/baton/schemathesis-venv
SCHEMATHESIS_VERSION := 4.32.5

.PHONY: schemathesis-deps

schemathesis-deps:
	@if ! "$(SCHEMATHESIS_VENV)/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('schemathesis') != '$(SCHEMATHESIS_VERSION)')" 2>/dev/null; then \
	  echo "api: installing schemathesis $(SCHEMATHESIS_VERSION) in $(SCHEMATHESIS_VENV)"; \
	  { [ -x "$(SCHEMATHESIS_VENV)/bin/python" ] || python3 -m venv "$(SCHEMATHESIS_VENV)"; } && \
	  "$(SCHEMATHESIS_VENV)/bin/python" -m pip install -q --no-cache-dir "schemathesis==$(SCHEMATHESIS_VERSION)"; \
	fi

TEST_DEPS += schemathesis-deps
# The schemathesis test fails (instead of skipping loudly) when the tool is missing.
export BATON_REQUIRE_SCHEMATHESIS ?= 1
export BATON_SCHEMATHESIS ?= $(SCHEMATHESIS_VENV)/bin/schemathesis
