# FluxForge developer entry points.  Every target bootstraps .venv on first use
# with nothing but python3 -m venv + pip, so a fresh machine needs no extra tools.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo test test-unit test-appliance bench deb deb-arm64 lint clean

$(STAMP): pyproject.toml setup.py $(wildcard cython_ext/*.pyx cython_ext/*.pxd)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(PY) -m pip install --quiet -e '.[test,plot]'
	touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fluxforge demo

# Everything CI runs: unit + integration (+ reference/differential) tests, then the appliance boot test.
test: test-unit test-appliance

test-unit: $(STAMP)
	$(PY) -m pytest tests --ignore=tests/appliance $(PYTEST_ARGS)

test-appliance: $(STAMP)
	$(PY) -m pytest tests/appliance $(PYTEST_ARGS)

bench: $(STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf build *.egg-info fluxforge/_kernels/*.so cython_ext/*.c
