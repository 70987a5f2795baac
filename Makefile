# vscbench: two commands matter. `make suite` runs the main job (the safety suite) offline; `make test` runs every check.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo suite test lint imports typecheck pytest clean

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh "$(PY)" "$(VENV)"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m vscbench.demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks vsc_fixtures tests_safety conftest.py

# The layering contracts in pyproject.toml ([tool.importlinter]; ARCHITECTURE.md): no upward import, no circle.
imports: $(STAMP)
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -p pytester tests

test: lint imports typecheck pytest

# Keeps ./vscbench_runs/ (the default store: paid-for responses and labels); delete it by hand if you mean to.
clean:
	rm -rf $(VENV) demo_out
	@if [ -e vscbench_runs ]; then echo "kept ./vscbench_runs/ (the default store); remove it by hand to start from nothing"; fi

# The main job: the safety suite on the embedded defaults (offline tiny random model: meaningless numbers).
suite: $(STAMP)
	$(BIN)/pytest --model=tiny --vsc-sample=120
