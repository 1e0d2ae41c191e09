# wdfusb: the two commands README.md documents, and their helpers.
#   make bench  — set up .venv and run the write benchmark on the built-in virtual device
#   make test   — set up .venv and run the whole test suite (lint, types, docs, tests, fake-libusb lane, wheel, kernel rig)

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: bench test check docs unit explore fakeusb rig asan tsan cross wheel clean

$(STAMP): pyproject.toml setup.py build_ffi.py $(wildcard csrc/*.c csrc/*.h)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,plot,compare,docs,wheel]'
	touch $(STAMP)

bench: $(STAMP)
	$(PY) -m wdfusb bench virtual:high --json bench-virtual.json --plot bench-virtual.png

check: $(STAMP)
	$(PY) -m ruff check wdfusb tests examples benchmarks docs/conf.py build_ffi.py setup.py
	$(PY) -m ruff format --check wdfusb tests examples benchmarks docs/conf.py build_ffi.py setup.py
	$(PY) -m mypy

# The documentation (docs/: Markdown pages, autodoc of the package, the CLI from its --help) as
# HTML in build/docs-html; any warning fails. Its code blocks run in `unit` (tests/test_docs.py).
docs: $(STAMP)
	$(PY) -m sphinx -E -W --keep-going -q -b html docs build/docs-html

# pytest exits 5 when it collected no test: that is a failure here, said out loud.
# (UNIT_ARGS: `make test` leaves tests/fakeusb to its own stage below, so it runs once.)
unit: $(STAMP)
	$(PY) -m pytest -q -m "not kernel" $(UNIT_ARGS) tests; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "unit: pytest collected no test"; fi; exit $$rc

# Hypothesis profiles (tests/conftest.py): the suite runs "ci" (derandomized, the same examples every
# run); "explore" draws thousands of random ones to look for new failures (each prints its blob).
explore: $(STAMP)
	HYPOTHESIS_PROFILE=explore $(PY) -m pytest -q tests/test_properties.py

# The fake-libusb lane: csrc/backend_libusb.c against a scripted fake libusb built from
# tests/fakeusb/fakeusb.c and loaded through WDFUSB_LIBUSB, in a fresh interpreter (no QEMU, no USB).
fakeusb: $(STAMP)
	$(PY) tests/fakeusb/build_fake.py
	$(PY) -m pytest -q tests/fakeusb; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "fakeusb: pytest collected no test"; fi; exit $$rc

# The kernel lane: tests/kernel inside a QEMU guest with the real Linux USB stack, at
# high and at super speed (tests/rig/qemu_rig.py installs QEMU and builds the image).
RIG_PYTEST = $(abspath $(PY)) -m pytest -q -p no:cacheprovider tests/kernel
rig: $(STAMP)
	$(PY) tests/rig/qemu_rig.py run --speed high --timeout 1800 -- $(RIG_PYTEST)
	$(PY) tests/rig/qemu_rig.py run --speed super --timeout 1800 -- $(RIG_PYTEST)

test: UNIT_ARGS = --ignore=tests/fakeusb
test: check docs unit fakeusb asan tsan cross wheel rig

asan:
	tests/asan/run.sh

# The concurrency tests against a ThreadSanitizer build of the shim: any data race fails.
tsan:
	tests/tsan/run.sh

# The engine built for Windows (MinGW-w64) and run under Wine, without Python.
cross: $(STAMP)
	PY=$(PY) tests/cross/run.sh

# The wheel: sdist and wheel (python -m build), auditwheel's manylinux tag, then the wheel installed
# in a fresh venv with no compiler on PATH and tested there, outside the checkout.
wheel: $(STAMP)
	PY=$(PY) tests/wheel/run.sh

clean:
	rm -rf $(VENV) build *.egg-info wdfusb/_native*.so
