# trmask build, wheel, demo, test and benchmark entry points.
#
#   make          the shared libraries (python/trmask/_lib/, one per CPU variant)
#   make wheel    dist/trmask-<version>-py3-none-manylinux_2_<N>_<arch>.whl and dist/trmask-<version>.tar.gz
#   make check-sdist  the wheel built again from the sdist, compared with the first
#   make demo     the wheel installed into the project's .venv, then the built-in demo batch
#   make test     every Swift test, and the Python suite against the wheel installed in a fresh venv
#                 outside the checkout, once per CPU variant this machine runs (what .ci/run calls)
#   make bench    speed ratios (BENCHMARKS.md)
# Nothing here installs outside the checkout: Python packages go into .venv (and a temporary venv).
#
# Release flags, and why:
#   -static-stdlib            the .so then needs only libc, libm, libstdc++, libgcc_s: it loads
#                             on machines without the Swift toolchain (RUNPATH $ORIGIN).
#   -march=x86-64-v3 / -v4    one build of the same sources per CPU level: v3 = AVX2 + FMA (any
#                             x86-64 since ~2015), v4 = AVX-512 F/BW/CD/DQ/VL (GPU servers' Xeon and
#                             EPYC). Without a target CPU, FMA becomes a libm call per lane (25x
#                             slower k3). Never `native`: that build dies with SIGILL elsewhere.
#                             The Python loader picks the variant by CPU features; a C program linked
#                             with an rpath to _lib gets the same choice from glibc's hwcaps search
#                             (hence the _lib/glibc-hwcaps/<variant>/ layout; docs/c-abi.md).
#                             aarch64 builds one library with the compiler's default target (NEON
#                             and FMA are baseline there).
#   --version-script          only trm_* symbols are exported.
#   -soname=libtrmask.so      a program linked against either variant, even by its full path,
#                             records the bare name, so glibc's hwcaps search can pick the variant.
#   -use-ld=lld               the toolchain's lld (gold, the default, kept five Swift metadata
#                             symbols in .dynsym with LOCAL binding; lld leaves only trm_*).
#   -s                        strip: 9 MB -> 6.5 MB.
# After changing them, `make clean`: SwiftPM reuses its cached link command in an existing
# scratch folder (.build-x86-64-v3, ...).
# These stay out of Package.swift: unsafeFlags there would stop other packages depending on it.

SWIFT ?= swift
PYTHON ?= python3
ARCH := $(shell uname -m)
# Where the libraries go. The wheel's build hook (python/hatch_build.py) sets it when it builds
# from an unpacked sdist.
LIB_DIR ?= python/trmask/_lib
RELEASE_FLAGS = -c release -Xswiftc -static-stdlib -Xswiftc -use-ld=lld \
	-Xlinker --version-script=$(CURDIR)/trmask.exports -Xlinker -soname=libtrmask.so -Xlinker -s
ifeq ($(ARCH),x86_64)
  VARIANTS := x86-64-v3 x86-64-v4
  LIBS := $(foreach variant,$(VARIANTS),$(LIB_DIR)/glibc-hwcaps/$(variant)/libtrmask.so)
else
  LIBS := $(LIB_DIR)/libtrmask.so
endif
# The baseline library (v3 on x86-64), which the C-ABI regression cases link.
LIB := $(firstword $(LIBS))
SOURCES := $(shell find Sources include -type f) Package.swift trmask.exports Makefile

# Python environments. .venv holds the build tools (hatchling, auditwheel) and, for `make demo`,
# the installed wheel. `make test` installs the wheel into a fresh venv outside the checkout, with
# numpy and the extras below; TEST_EXTRAS is the one list of the wheel's extras the tests need
# (add an extra here and its packages come with it). torch comes from the machine's local CPU
# wheel when there is one (PyPI's default torch pulls ~3 GB of CUDA wheels; torch is optional and
# its tests skip without it).
VENV := .venv
VENV_PYTHON := $(CURDIR)/$(VENV)/bin/python
TEST_EXTRAS ?= test,jax
# Run in that venv after the wheel: verl 0.9.1 for trmask.verl's differential tests
# (python/verl-test/install: verl without its dependency tree, plus what its helper imports).
TEST_POST_INSTALL ?= python/verl-test/install
TORCH_WHEEL := $(firstword $(wildcard /opt/wheels/torch-*.whl))
VERSION = $(shell sed -n 's/^\#define TRM_VERSION_STRING "\(.*\)"/\1/p' include/trmask.h)
SDIST = dist/trmask-$(VERSION).tar.gz

.PHONY: all lib wheel check-sdist demo test test-swift test-installed test-examples bench clean

all: lib

lib: $(LIBS)

# $* is the variant (x86-64-v3, x86-64-v4), built in its own scratch folder.
$(LIB_DIR)/glibc-hwcaps/%/libtrmask.so: $(SOURCES)
	$(SWIFT) build $(RELEASE_FLAGS) --scratch-path .build-$* -Xcc -march=$* --product trmask
	$(call place,.build-$*/release/libtrmask.so)

$(LIB_DIR)/libtrmask.so: $(SOURCES)
	$(SWIFT) build $(RELEASE_FLAGS) --scratch-path .build-release --product trmask
	$(call place,.build-release/release/libtrmask.so)

# A new file renamed into place: processes that have the old library mapped keep it intact.
place = mkdir -p $(@D) && cp $(1) $@.tmp && mv -f $@.tmp $@

$(VENV)/.tools: python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV_PYTHON) -m pip install --quiet hatchling auditwheel numpy
	touch $@

# The libraries built above go into the wheel as they are (TRMASK_LIB_DIR: no second build).
wheel: lib $(VENV)/.tools
	rm -rf dist && mkdir -p dist
	cd python && TRMASK_LIB_DIR=$(CURDIR)/$(LIB_DIR) $(VENV_PYTHON) -m hatchling build -d $(CURDIR)/dist
	$(VENV_PYTHON) tools/check_wheel.py dist/*.whl

# The sdist builds the same wheel where Swift is on PATH: a second full build of every variant, so
# not part of `make test`.
check-sdist: wheel
	rm -rf dist/from-sdist
	$(VENV_PYTHON) -m pip wheel --no-deps --no-build-isolation -w dist/from-sdist $(SDIST)
	$(VENV_PYTHON) tools/check_wheel.py dist/*.whl --same-as dist/from-sdist/*.whl

demo: wheel
	$(VENV_PYTHON) -m pip install --quiet --force-reinstall --no-deps dist/*.whl
	$(VENV)/bin/trmask demo

test: test-swift test-installed test-examples

test-swift:
	$(SWIFT) test --scratch-path .build-test

# The wheel installed into a fresh venv outside the checkout: the Python suite once per CPU
# variant this machine runs, the C example against the installed header and library.
test-installed: wheel
	$(PYTHON) tools/test_installed.py dist/*.whl --extras '$(TEST_EXTRAS)' --torch-wheel '$(TORCH_WHEEL)' \
		--post-install '$(TEST_POST_INSTALL)'

# The Swift consumer package (depends on this one by path).
test-examples:
	$(SWIFT) run --package-path examples/swift --scratch-path .build-example TRMaskExample

bench: lib
	PYTHONPATH=python $(PYTHON) bench/bench.py
	PYTHONPATH=python $(PYTHON) bench/exact_kl.py

clean:
	rm -rf .build .build-* dist $(LIB_DIR)/glibc-hwcaps $(LIB_DIR)/libtrmask.so

# ---- Hardening (issue 13): sanitizers, fuzzing, the C-ABI regression cases. fuzz/README.md.
#   make test-regressions  Tests/cabi/regressions.c (each case in a child process) against the
#                          release library and a debug build
#   make sanitize          sanitize-asan and sanitize-tsan
#   make sanitize-asan     Swift tests and the C-ABI regression cases under AddressSanitizer
#   make sanitize-tsan     the same under ThreadSanitizer
#   make fuzz              the libFuzzer target (fuzz/fuzz_trmask.c over a debug ASan library
#                          with coverage counters); run it with `make fuzz-run FUZZ_GROUP=mask`
#   make fuzz-ci           a bounded run (40 s per group, ~3.5 minutes) of every group from the committed corpus
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

test-regressions: lib
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

# die_after_fork=0: the worker pool's fork test forks a multi-threaded process on purpose.
sanitize-tsan:
	$(SANITIZER_ENV) TSAN_OPTIONS=die_after_fork=0 $(SWIFT) test --sanitize=thread --scratch-path .build-tsan
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
	for group in mask partials logits bounds correction; do \
		$(MAKE) --no-print-directory fuzz-run FUZZ_GROUP=$$group FUZZ_SECONDS=40 || exit 1; \
	done
