# Quickstart: `make demo` and `make test`. Both create .venv on first use and are idempotent.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
RUNTIME := $(VENV)/.installed
STAMP := $(VENV)/.installed-test

.PHONY: demo test lint typecheck bench bench-gpu bench-cpu clean chromium bias-experiment

$(RUNTIME): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt -e .
	touch $(RUNTIME)

$(STAMP): $(RUNTIME)
	$(PIP) install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(RUNTIME)
	$(VENV)/bin/camscope explain --out out/demo --method gradcam,gradcam++,xgradcam,layercam,eigencam,guided-gradcam

# The Grad-CAM paper's bias experiment, offline (docs/bias.md): a few minutes on 2 CPU cores.
bias-experiment: $(RUNTIME)
	$(VENV)/bin/camscope bias-experiment --out out/bias

lint: $(STAMP)
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/ruff check src tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# Debian's chromium drives the report test (tests/evaluation/test_report.py) through Playwright; never
# `playwright install` (no browser downloads).
chromium:
	command -v chromium || (apt-get update && apt-get install -y chromium chromium-driver)

test: lint typecheck chromium
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/one_pass.py

# Every headline figure in one table (benchmarks/results/): under 8 minutes on one GPU.
bench-gpu: $(STAMP)
	$(PY) benchmarks/run_all.py --device cuda --quick

bench-cpu: $(STAMP)
	$(PY) benchmarks/run_all.py --device cpu --quick

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
