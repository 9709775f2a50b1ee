# libfasvd — the front door. On a fresh Debian 12 machine:
#
#   make demo    install what is missing, build, run the CLI on a small example
#   make test    install what is missing, build, run every test and check:
#                  build/            the suite, then the repository checks
#                  build-asan/       the suite under ASan + UBSan
#                  build-valgrind/   the suite under valgrind memcheck
#                  build-tsan/       suite 'threads' under ThreadSanitizer
#                  bindings/python/tests with pytest (when present)
#
# Other targets: deps build install fuzz clean, and test-unit test-asan
# test-valgrind test-tsan test-python test-checks for one run of `make test`.
# `make -k test` runs every run even when an earlier one fails (.ci/run).
#
# Variables: BUILD (build dir, default build), MESON_SETUP_ARGS (extra
# `meson setup` options for a new build dir, e.g. --prefix=/usr),
# NINJA_ARGS (e.g. -j2), MESON_TEST_ARGS (e.g. --num-processes 2),
# FUZZ_SECONDS (per fuzz target, default 60), DESTDIR (make install).

PYTHON ?= /usr/bin/python3
MESON ?= meson
NINJA ?= ninja
BUILD ?= build
ASAN_BUILD ?= build-asan
VALGRIND_BUILD ?= build-valgrind
TSAN_BUILD ?= build-tsan
FUZZ_BUILD ?= build-fuzz
MESON_SETUP_ARGS ?=
NINJA_ARGS ?=
MESON_TEST_ARGS ?=
FUZZ_SECONDS ?= 60

# `make demo` runs this; switch to the second line once `fasvd demo` exists.
# DEMO_MODE = svdvals
DEMO_MODE = demo

# Debian 12 packages that building, testing and the demo need.
DEB_PACKAGES = build-essential meson ninja-build pkg-config libopenblas-dev \
	liblapacke-dev libcmocka-dev libjansson-dev python3-numpy python3-pytest \
	python3-matplotlib python3-pip valgrind abigail-tools clang libclang-rt-14-dev \
	openmpi-bin libopenmpi-dev

# Sanitizer runtime options. The suites also set OPENBLAS_NUM_THREADS=1
# (tests/meson.build); OpenBLAS is not instrumented for TSan.
ASAN_ENV = ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=1:print_summary=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
TSAN_ENV = TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=$(CURDIR)/tests/tsan.supp \
	OPENBLAS_NUM_THREADS=1

# Sanitizer and valgrind runs build without examples; the valgrind run keeps
# the default optimisation (memcheck is slow enough).
ASAN_SETUP = -Db_sanitize=address,undefined -Db_lundef=false -Dexamples=false
VALGRIND_SETUP = -Dexamples=false
TSAN_SETUP = -Db_sanitize=thread -Db_lundef=false -Dexamples=false
FUZZ_SETUP = -Db_sanitize=address,undefined -Db_lundef=false -Dexamples=false

# Memcheck runs numerical code 50-200x slower (and TSan 5-15x): more time.
SLOW_TEST_ARGS = --timeout-multiplier 4

# `meson setup DIR OPTIONS` unless DIR is configured already.
setup = test -f $(1)/build.ninja || $(MESON) setup $(1) $(MESON_SETUP_ARGS) $(2)
# Remove a run's previous results so that a failed run cannot report stale ones.
forget = rm -f $(1)/meson-logs/$(2).json $(1)/meson-logs/$(2).txt $(1)/meson-logs/$(2).junit.xml

# One run at a time: ninja and meson test parallelise within a run.
.NOTPARALLEL:

.PHONY: all deps build test test-unit test-checks test-asan test-valgrind test-tsan \
	test-python demo fuzz install clean ci-logs

all: build

deps:
	@if ! command -v dpkg-query >/dev/null 2>&1; then \
		echo "make deps: not a Debian system; install by hand: $(DEB_PACKAGES)"; exit 0; \
	fi; \
	missing=; \
	for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q ' installed$$' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "make deps: installing$$missing"; \
		sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		$$sudo apt-get update && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
	fi

# -Dpython: the interpreter whose site-packages `make install` puts the
# fasvd package into (the one the tests use).
build: deps
	$(call setup,$(BUILD),-Dpython=$(PYTHON))
	$(NINJA) -C $(BUILD) $(NINJA_ARGS)

# The suite of build/ (the checks run last, in test-checks).
test-unit: build
	$(call forget,$(BUILD),testlog)
	$(MESON) test -C $(BUILD) --no-rebuild --print-errorlogs --no-suite checks --no-suite threads $(MESON_TEST_ARGS)

test-asan: deps
	$(call setup,$(ASAN_BUILD),$(ASAN_SETUP))
	$(NINJA) -C $(ASAN_BUILD) $(NINJA_ARGS)
	$(call forget,$(ASAN_BUILD),testlog)
	$(ASAN_ENV) $(MESON) test -C $(ASAN_BUILD) --no-rebuild --print-errorlogs --no-suite threads $(MESON_TEST_ARGS)

# Compiled tests run under memcheck; script tests run directly
# (scripts/valgrind-wrap.sh tells them apart). meson names the log of a
# wrapped run after the wrapper.
VALGRIND_LOG = testlog-valgrind-wrap.sh
test-valgrind: deps
	$(call setup,$(VALGRIND_BUILD),$(VALGRIND_SETUP))
	$(NINJA) -C $(VALGRIND_BUILD) $(NINJA_ARGS)
	$(call forget,$(VALGRIND_BUILD),$(VALGRIND_LOG))
	$(MESON) test -C $(VALGRIND_BUILD) --no-rebuild --print-errorlogs --no-suite checks --no-suite threads \
		--wrap=$(CURDIR)/scripts/valgrind-wrap.sh $(SLOW_TEST_ARGS) $(MESON_TEST_ARGS)

test-tsan: deps
	$(call setup,$(TSAN_BUILD),$(TSAN_SETUP))
	$(NINJA) -C $(TSAN_BUILD) $(NINJA_ARGS)
	$(call forget,$(TSAN_BUILD),testlog)
	$(TSAN_ENV) $(MESON) test -C $(TSAN_BUILD) --no-rebuild --print-errorlogs --suite threads \
		$(SLOW_TEST_ARGS) $(MESON_TEST_ARGS)

# pytest exit status 5 means "no tests collected": not a failure.
test-python: build
	@rm -f $(BUILD)/pytest-junit.xml
	@if [ -d bindings/python/tests ]; then \
		echo "pytest bindings/python/tests"; \
		FASVD_LIBRARY=$(CURDIR)/$(BUILD)/lib/libfasvd.so.0 \
		FASVD_TESTSUPPORT_LIBRARY=$(CURDIR)/$(BUILD)/tests/support/libfasvd-testsupport.so \
		LD_LIBRARY_PATH=$(CURDIR)/$(BUILD)/lib$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH} \
		PYTHONPATH=$(CURDIR)/bindings/python$${PYTHONPATH:+:$$PYTHONPATH} \
		PYTHONDONTWRITEBYTECODE=1 \
		$(PYTHON) -m pytest -q -p no:cacheprovider bindings/python/tests \
			--junitxml=$(CURDIR)/$(BUILD)/pytest-junit.xml; \
		rc=$$?; [ $$rc = 5 ] && rc=0; exit $$rc; \
	else \
		echo "pytest: no bindings/python/tests yet"; \
	fi

# Repository checks of build/: symbols, headers, install tree, ABI.
test-checks: build
	$(call forget,$(BUILD),checklog)
	$(MESON) test -C $(BUILD) --no-rebuild --print-errorlogs --suite checks --logbase checklog $(MESON_TEST_ARGS)

test: test-unit test-asan test-valgrind test-tsan test-python test-checks

# The result files of `make test`, one "RUN PATH" per line (.ci/run reads them).
ci-logs:
	@echo "unit $(BUILD)/meson-logs/testlog.json"
	@echo "asan $(ASAN_BUILD)/meson-logs/testlog.json"
	@echo "valgrind $(VALGRIND_BUILD)/meson-logs/$(VALGRIND_LOG).json"
	@echo "tsan $(TSAN_BUILD)/meson-logs/testlog.json"
	@if [ -d bindings/python/tests ]; then echo "pytest $(BUILD)/pytest-junit.xml"; fi
	@echo "checks $(BUILD)/meson-logs/checklog.json"

demo: build
ifeq ($(DEMO_MODE),svdvals)
	$(PYTHON) scripts/gen-demo.py $(BUILD)/demo.safetensors
	$(BUILD)/tools/fasvd svdvals $(BUILD)/demo.safetensors attn.weight --dtype f64
else
	$(BUILD)/tools/fasvd demo
endif

# libFuzzer targets (docs/fuzzing.md): built with clang in $(FUZZ_BUILD), each run
# for FUZZ_SECONDS from its seed corpus tests/fuzz/corpora/<target>/
# (scripts/run-fuzz.sh).
fuzz: deps
	scripts/run-fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(MESON_SETUP_ARGS) $(FUZZ_SETUP)

install: build
	$(MESON) install -C $(BUILD) --no-rebuild $(if $(DESTDIR),--destdir $(DESTDIR))

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(VALGRIND_BUILD) $(TSAN_BUILD) $(FUZZ_BUILD) build-abi
