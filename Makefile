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

.PHONY: all lib install demo test test-swift test-python test-examples test-verl bench clean

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

# trmask.verl against verl 0.9.1 itself, and the torch.distributed tests (they skip without verl):
# verl goes into a venv of its own (.venv-verl, reusing this interpreter's torch, numpy, pytest and
# hypothesis) by python/verl-test/install, which any CI venv can run too (about 45 s, 400 MB).
VERL_VENV ?= .venv-verl
test-verl: lib
	test -x $(VERL_VENV)/bin/python || $(PYTHON) -m venv --system-site-packages $(VERL_VENV)
	python/verl-test/install $(VERL_VENV)/bin/python
	PYTHONPATH=python $(VERL_VENV)/bin/python -m pytest -q python/tests/test_verl.py python/tests/test_verl_patch.py \
		python/tests/test_distributed.py

bench: install
	$(PYTHON) bench/bench.py
	$(PYTHON) bench/exact_kl.py

clean:
	rm -rf .build .build-test .build-example $(LIB)
