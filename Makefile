# trmask build, install, demo, test and benchmark entry points.
#
#   make          the shared library (python/trmask/_lib/libtrmask.so)
#   make demo     build, install the Python package, run the built-in demo batch
#   make test     build, install, run every Swift and Python test (what .ci/run calls)
#   make bench    speed ratios (BENCHMARKS.md)
#
# Release flags, and why:
#   -static-stdlib            the .so then needs only libc, libm, libstdc++, libgcc_s: it loads
#                             on machines without the Swift toolchain (RUNPATH $ORIGIN).
#   -march=x86-64-v3          AVX2 + FMA baseline (any x86-64 since ~2015). Without a target CPU,
#                             FMA becomes a libm call per lane (25x slower k3). Never `native`:
#                             an AVX-512 build dies with SIGILL elsewhere. aarch64 builds use the
#                             compiler's default target (NEON and FMA are baseline there).
#   --version-script          only trm_* symbols are exported.
#   -use-ld=lld               the toolchain's lld (gold, the default, kept five Swift metadata
#                             symbols in .dynsym with LOCAL binding; lld leaves only trm_*).
#   -s                        strip: 9 MB -> 6.5 MB.
# After changing them, `make clean`: SwiftPM reuses its cached link command in an existing .build.
# These stay out of Package.swift: unsafeFlags there would stop other packages depending on it.

SWIFT ?= swift
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
ARCH := $(shell uname -m)
ifeq ($(ARCH),x86_64)
  CPU_FLAGS := -Xcc -march=x86-64-v3
endif
RELEASE_FLAGS := -c release --scratch-path .build -Xswiftc -static-stdlib -Xswiftc -use-ld=lld $(CPU_FLAGS) \
	-Xlinker --version-script=$(CURDIR)/trmask.exports -Xlinker -s
LIB := python/trmask/_lib/libtrmask.so
SOURCES := $(shell find Sources include -type f) Package.swift trmask.exports Makefile
TORCH_WHEEL := $(firstword $(wildcard /opt/wheels/torch-*.whl))

.PHONY: all lib install demo test test-swift test-python test-examples bench clean

all: lib

lib: $(LIB)

$(LIB): $(SOURCES)
	$(SWIFT) build $(RELEASE_FLAGS) --product trmask
	mkdir -p $(dir $(LIB))
	# A new file renamed into place: processes that have the old library mapped keep it intact.
	cp .build/release/libtrmask.so $(LIB).tmp
	mv -f $(LIB).tmp $(LIB)

# The Python package (editable: it loads the library from python/trmask/_lib), its test
# dependencies, and torch from the machine's local CPU wheel when there is one (PyPI's default
# torch pulls ~3 GB of CUDA wheels; torch is optional, its tests skip without it).
install: lib
	$(PIP) install --quiet --disable-pip-version-check -e 'python[test]'
	@if [ -n "$(TORCH_WHEEL)" ]; then \
		$(PYTHON) -c 'import torch' 2>/dev/null || $(PIP) install --quiet --disable-pip-version-check $(TORCH_WHEEL); \
	else echo "no local torch wheel in /opt/wheels: torch tests will be skipped"; fi

demo: install
	$(PYTHON) -m trmask demo

test: install test-swift test-python test-examples

test-swift:
	$(SWIFT) test --scratch-path .build-test

test-python: install
	$(PYTHON) -m pytest -q python/tests

# The Swift consumer package (depends on this one by path). The C consumer is built and run by
# python/tests/test_abi.py, as C99 and as C++.
test-examples:
	$(SWIFT) run --package-path examples/swift --scratch-path .build-example TRMaskExample

bench: install
	$(PYTHON) bench/bench.py
	$(PYTHON) bench/exact_kl.py

clean:
	rm -rf .build .build-test .build-example .build-debug .build-asan .build-tsan .build-fuzz $(LIB)

# ---- Hardening (issue 13): sanitizers, fuzzing, the C-ABI regression cases. fuzz/README.md.
#   make test-regressions  Tests/cabi/regressions.c (each case in a child process) against the
#                          release library and a debug build
#   make sanitize          sanitize-asan and sanitize-tsan
#   make sanitize-asan     Swift tests and the C-ABI regression cases under AddressSanitizer
#   make sanitize-tsan     the same under ThreadSanitizer
#   make fuzz              the libFuzzer target (fuzz/fuzz_trmask.c over a debug ASan library
#                          with coverage counters); run it with `make fuzz-run FUZZ_GROUP=mask`
#   make fuzz-ci           a bounded run (~3 minutes) of every group from the committed corpus
# swiftc 6.3 has no UndefinedBehaviorSanitizer on Linux (-sanitize=undefined is refused); Swift
# traps on overflow and bad unwraps in debug builds, which the debug-build runs cover.
SWIFT_BIN := $(dir $(realpath $(shell command -v $(SWIFT))))
CLANG ?= $(SWIFT_BIN)clang
SANITIZER_ENV := SWIFT_BACKTRACE=enable=no
FUZZ_SWIFT_FLAGS := -Xswiftc -sanitize=fuzzer,address \
	-Xswiftc -sanitize-coverage=edge,trace-cmp,inline-8bit-counters,pc-table
FUZZ_BIN := .build-fuzz/fuzz_trmask
FUZZ_GROUP ?= mask
FUZZ_SECONDS ?= 3600
FUZZ_ENV := $(SANITIZER_ENV) ASAN_OPTIONS=allocator_may_return_null=1:detect_leaks=0
FUZZ_FLAGS := -timeout=10 -rss_limit_mb=2048 -max_len=512 -len_control=0
REGRESSIONS := Tests/cabi/regressions.c
# A C program linking the TSan Swift library needs the toolchain's libdispatch and BlocksRuntime.
SWIFT_RUNTIME := $(SWIFT_BIN)../lib/swift/linux
TSAN_C_FLAGS := -fsanitize=thread -L$(SWIFT_RUNTIME) -Wl,-rpath,$(SWIFT_RUNTIME) -ldispatch -lBlocksRuntime

.PHONY: test-regressions sanitize sanitize-asan sanitize-tsan fuzz fuzz-run fuzz-ci

# $(call regressions,<library dir>,<build dir>,<extra cc flags>): builds and runs the cases.
define regressions
	$(CLANG) -fuse-ld=lld -std=c99 -Wall -Wextra -Werror -Iinclude $(3) $(REGRESSIONS) -L$(1) -ltrmask \
		-Wl,-rpath,$(CURDIR)/$(1) -lm -o $(2)/regressions
	$(SANITIZER_ENV) $(2)/regressions
endef

test-regressions: $(LIB)
	$(SWIFT) build --scratch-path .build-debug --product trmask
	mkdir -p .build-debug
	$(call regressions,$(dir $(LIB)),.build-debug,)
	$(call regressions,.build-debug/debug,.build-debug,)

sanitize: sanitize-asan sanitize-tsan

# XCTest on Linux leaks its own test-case objects at exit (every report is inside libXCTest), so
# LeakSanitizer is off for the Swift tests; the C regression cases run with it on.
sanitize-asan:
	$(SANITIZER_ENV) ASAN_OPTIONS=detect_leaks=0 $(SWIFT) test --sanitize=address --scratch-path .build-asan
	$(SWIFT) build --sanitize=address --scratch-path .build-asan --product trmask
	$(call regressions,.build-asan/debug,.build-asan,-fsanitize=address)

sanitize-tsan:
	$(SANITIZER_ENV) $(SWIFT) test --sanitize=thread --scratch-path .build-tsan
	$(SWIFT) build --sanitize=thread --scratch-path .build-tsan --product trmask
	$(call regressions,.build-tsan/debug,.build-tsan,$(TSAN_C_FLAGS))

fuzz: $(FUZZ_BIN)

$(FUZZ_BIN): $(SOURCES) fuzz/fuzz_trmask.c
	$(SWIFT) build --scratch-path .build-fuzz --product trmask $(FUZZ_SWIFT_FLAGS)
	$(CLANG) -fuse-ld=lld -std=c11 -g -O1 -Wall -Wextra -Werror -fsanitize=fuzzer,address -Iinclude \
		fuzz/fuzz_trmask.c -L.build-fuzz/debug -ltrmask -Wl,-rpath,$(CURDIR)/.build-fuzz/debug -lm -o $@

# One group for FUZZ_SECONDS; new inputs go to .build-fuzz/corpus/<group>, the committed seeds
# are read from fuzz/corpus/<group>.
fuzz-run: $(FUZZ_BIN)
	mkdir -p .build-fuzz/corpus/$(FUZZ_GROUP) .build-fuzz/artifacts
	$(FUZZ_ENV) TRM_FUZZ_GROUP=$(FUZZ_GROUP) $(FUZZ_BIN) $(FUZZ_FLAGS) -max_total_time=$(FUZZ_SECONDS) \
		-artifact_prefix=.build-fuzz/artifacts/ .build-fuzz/corpus/$(FUZZ_GROUP) fuzz/corpus/$(FUZZ_GROUP)

fuzz-ci: $(FUZZ_BIN)
	for group in mask partials logits bounds; do \
		$(MAKE) --no-print-directory fuzz-run FUZZ_GROUP=$$group FUZZ_SECONDS=40 || exit 1; \
	done
