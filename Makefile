# The README's commands. Each target sets itself up on a fresh machine (a .venv with the package
# installed editable, its test extras, the cffi extension built), then runs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FUZZ_SECONDS ?= 60

.PHONY: setup test test-python test-c certify bench clean

$(STAMP): pyproject.toml setup.py core/_ffi_build.py csrc/dlb.c csrc/dlb.h
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

setup: $(STAMP)

# C tests, sanitizer build and fuzzer (the fuzzer needs clang: CI installs it; without clang it is
# skipped with a message, except under CI=true where a missing clang is an error), then the Python suite.
test: setup test-c test-python

test-c:
	$(MAKE) -C csrc test sanitize
	@if command -v clang >/dev/null 2>&1; then \
		$(MAKE) -C csrc fuzz FUZZ_SECONDS=$(FUZZ_SECONDS); \
	elif [ "$${CI:-}" = "true" ]; then \
		echo "clang is required for the fuzz step in CI" >&2; exit 1; \
	else \
		echo "SKIPPED fuzz: clang not installed (apt-get install clang; CI installs it)"; \
	fi

test-python: setup
	$(PY) -m pytest

certify: setup
	$(PY) -m dlbrig.rig.cli certify

# One report with every performance figure (out/bench/bench.json); BENCH_FLAGS=--skip-certify or
# --quick for development runs.
bench: setup
	$(MAKE) -C csrc bench
	$(PY) -m dlbrig.rig.cli bench $(BENCH_FLAGS)

clean:
	$(MAKE) -C csrc clean
	rm -rf build *.egg-info core/_dlb*.so core/_dlb.c
