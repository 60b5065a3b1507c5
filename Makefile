# The two commands of the README, plus the usual developer targets. Each one
# installs missing Debian packages, configures and builds on its own.
PRESET ?= release
BUILD := build/$(PRESET)
BATON := $(BUILD)/cli/baton
JOBS ?= $(shell nproc)

.PHONY: up test test-slow test-asan build deps configure format bench clean

up: build
	$(BATON) up

test: build
	ctest --preset $(PRESET) -j $(JOBS)

test-slow: build
	ctest --test-dir $(BUILD) -L slow --output-on-failure

test-asan:
	$(MAKE) PRESET=asan build
	ctest --preset asan -j $(JOBS)

build: configure
	cmake --build $(BUILD) -j $(JOBS)

configure: deps
	@test -f $(BUILD)/build.ninja || cmake --preset $(PRESET)

deps:
	@bash scripts/install-deps.sh

format:
	@bash scripts/format.sh

bench: build
	@bash scripts/bench.sh $(BUILD)

clean:
	rm -rf build
