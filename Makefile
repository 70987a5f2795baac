# vscbench: two commands matter. `make demo` runs the main job end to end offline; `make test` runs every check.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo suite test lint typecheck pytest clean

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh "$(PY)" "$(VENV)"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m vscbench.demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks vsc_fixtures tests_safety conftest.py

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -p pytester tests

test: lint typecheck pytest

clean:
	rm -rf $(VENV) vscbench_runs demo_out

# The main job: the safety suite on the embedded defaults (offline tiny random model: meaningless numbers).
suite: $(STAMP)
	$(BIN)/pytest --model=tiny --vsc-sample=120
