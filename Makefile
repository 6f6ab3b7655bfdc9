# Every target creates .venv when missing and (re)installs the project only when
# pyproject.toml changed, so repeated runs are fast.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,report,dask]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/xmargin data validate datasets/sample
	$(BIN)/xmargin run examples/demo.toml --no-validate
	$(BIN)/xmargin report "$$(ls -d runs/demo-*/ | tail -1)"

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/run_bench.py

clean-venv:
	rm -rf $(VENV)
