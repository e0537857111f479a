# Two commands for a newcomer: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint pytest system-deps venv bench clean notebooks-clean soak

# setup.py builds the optional C accelerator (qosinspect/_csrc) and compiles the analysis with
# mypyc (the modules below): a change to any of them reinstalls (rebuilds), so the compiled
# modules never lag behind their source.
MYPYC_SOURCES := qosinspect/mqtt/transitions.py $(wildcard qosinspect/analysis/*.py) \
                 $(wildcard qosinspect/analysis/diagnoses/*.py)
$(STAMP): pyproject.toml setup.py $(wildcard qosinspect/_csrc/*.c qosinspect/_csrc/*.h) $(MYPYC_SOURCES)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,notebooks]'
	touch $(STAMP)

venv: $(STAMP)

system-deps:
	@scripts/ensure-system-deps.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check qosinspect tests benchmarks notebooks
	$(VENV)/bin/mypy

pytest: $(STAMP) system-deps
	$(VENV)/bin/pytest $(PYTEST_ARGS)
	# the rule tests once more on the interpreted analysis (the compiled one ran above)
	QOSINSPECT_PURE=1 $(VENV)/bin/pytest -q -p no:cacheprovider tests/analysis

test: lint pytest

# The soak test (minutes long, left out of `make test` by the `soak` marker, see pyproject.toml);
# QOSINSPECT_SOAK_MINUTES=3 make soak checks the harness.
soak: $(STAMP) system-deps
	$(VENV)/bin/pytest -m soak -s -p no:cacheprovider tests/live/test_soak.py

demo: $(STAMP) system-deps
	$(VENV)/bin/qosinspect demo

# Notebooks are committed without outputs (tests/notebooks checks it); run this before committing.
notebooks-clean: $(STAMP)
	$(PY) scripts/strip-notebooks.py

bench: $(STAMP) system-deps
	$(PY) benchmarks/codec.py
	$(PY) benchmarks/decode.py
	$(PY) benchmarks/report.py
	$(PY) benchmarks/broker.py
	$(PY) benchmarks/audit.py
	$(PY) benchmarks/html_report.py
	$(PY) benchmarks/batch.py
	$(PY) benchmarks/watch.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
