# Two commands for a newcomer: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint pytest system-deps venv bench clean notebooks-clean

# setup.py and qosinspect/_csrc build the optional C accelerator: a change reinstalls (rebuilds).
$(STAMP): pyproject.toml setup.py $(wildcard qosinspect/_csrc/*.c qosinspect/_csrc/*.h)
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

test: lint pytest

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

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
