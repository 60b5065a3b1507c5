# The two commands of the README, plus the usual developer targets. Each one
# installs missing Debian packages, configures and builds on its own.
PRESET ?= release
BUILD := build/$(PRESET)
BATON := $(BUILD)/cli/baton
JOBS ?= $(shell nproc)
# Compiler cache hits across clones and checkouts in other folders (CI
# builds a fresh clone each time).
export CCACHE_BASEDIR := $(CURDIR)
export CCACHE_NOHASHDIR := true

.PHONY: up test test-slow test-asan test-tsan test-sanitizers-ci fuzz build deps node-deps configure format bench clean

# The main job: a local cluster on loopback serving the built-in default model
# disaggregated (1 prefill + 1 decode instance, the gateway on port 8000, the
# controller), until Ctrl-C.
up: build
	$(BATON) up --port 8000

test: build node-deps
	ctest --preset $(PRESET) -j $(JOBS)

test-slow: build
	ctest --test-dir $(BUILD) -L slow --output-on-failure

test-asan:
	$(MAKE) PRESET=asan build
	ctest --preset asan -j $(JOBS)

# The concurrency tests (engine, scheduler, KV transfer, gateway, HTTP
# server, thread pool and queues) under ThreadSanitizer.
test-tsan:
	$(MAKE) PRESET=tsan build
	ctest --preset tsan -j $(JOBS)

# The sanitizer subset CI runs (scripts/sanitizers-ci.sh): the common and
# protocol unit tests under ASan + UBSan; the concurrency primitives, the HTTP
# server and the KV transport under TSan.
test-sanitizers-ci: deps
	@bash scripts/sanitizers-ci.sh

# Every fuzz target under libFuzzer + ASan + UBSan (clang), FUZZ_SECONDS each;
# see docs/reliability.md.
FUZZ_SECONDS ?= 20
FUZZ_SEED ?= 0
fuzz: deps
	bash fuzz/run.sh -t $(FUZZ_SECONDS) -s $(FUZZ_SEED) -j $(JOBS)

build: configure
	cmake --build $(BUILD) -j $(JOBS)

configure: deps
	@test -f $(BUILD)/build.ninja || cmake --preset $(PRESET)

deps:
	@bash scripts/install-deps.sh

# The openai npm client for the integration tests, pinned by package-lock.json.
node-deps:
	@test -d tests/node/node_modules/openai || (cd tests/node && npm ci --no-audit --no-fund)

format:
	@bash scripts/format.sh

bench: build
	@bash scripts/bench.sh $(BUILD)

clean:
	rm -rf build
