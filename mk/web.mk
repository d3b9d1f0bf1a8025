# The web app (web/: React + TypeScript + Vite). `make web` installs its npm packages when
# package.json or the lockfile changed, and builds web/dist when a source changed; the next
# cargo build embeds web/dist into the binary (crates/server/build.rs). `make run` builds it
# first; `make test` runs its component tests (Vitest) here and its browser tests in
# Debian's Chromium through crates/cli/tests/web.rs, with BATON_REQUIRE_BROWSER=1 so a missing
# browser fails instead of skipping.

NPM ?= npm
WEB_SOURCES := $(shell find web/src web/public -type f 2>/dev/null) web/index.html web/vite.config.ts web/tsconfig.json web/package.json web/scripts/gzip.mjs

.PHONY: web web-test web-browser

web/node_modules/.package-lock.json: web/package.json web/package-lock.json
	@command -v $(NPM) >/dev/null || { echo "error: npm is not installed (Node.js 20.19+ builds the web app)"; exit 1; }
	cd web && $(NPM) ci --no-audit --no-fund
	@touch $@

web/dist/index.html: web/node_modules/.package-lock.json $(WEB_SOURCES)
	cd web && $(NPM) run build

web: web/dist/index.html

web-browser:
	@test -x /usr/bin/chromium || { echo "web: installing chromium (apt)"; \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo="sudo"; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium >/dev/null; }

web-test: web web-browser
	cd web && $(NPM) test

RUN_DEPS += web
TEST_DEPS += web-test
export BATON_REQUIRE_BROWSER ?= 1

# The run viewer's frame rate under a busy run (docs/benchmarks.md, "Web"): a real `baton serve`
# and a run emitting 500 events/s for WEB_FPS_SECONDS, followed live in Debian's Chromium;
# prints the worst 1-second window's fps, the p50 fps and the dropped events. `make bench` runs it.
WEB_FPS_SECONDS ?= 60
.PHONY: web-fps-bench
web-fps-bench: rust-check web web-browser
	$(CARGO) build --release -p baton-cli
	cd web && BATON_WEB_DIR=$(CURDIR)/web/dist node bench/viewer-fps.mjs --baton $(abspath $(BATON)) --seconds $(WEB_FPS_SECONDS)
BENCH_TARGETS += web-fps-bench
