# Two set-up commands for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
# torch first, pinned to the CPU build this project is developed against, so that
# the package's range never pulls a multi-GB CUDA build.
TORCH ?= torch==2.13.0
REPORT ?= reports/demo

.PHONY: demo test lint bench bench-gpu clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install $(TORCH)
	$(PIP) install -e .
	touch $@

$(VENV)/.test-installed: $(VENV)/.installed
	$(PIP) install -e '.[test]'
	touch $@

$(VENV)/.bench-installed: $(VENV)/.installed
	$(PIP) install -e '.[bench]'
	# torchattacks' metadata pulls a CUDA torch and torchvision; it never imports torchvision
	# (nor requests), so: no deps, plus the two it does import when loaded, scipy and tqdm.
	$(PIP) install --no-deps torchattacks==3.5.1
	$(PIP) install scipy tqdm
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/bastion assess --out $(REPORT)
	@echo "Report: $(REPORT)/report.html (also report.json and junit.xml)"

test: $(VENV)/.test-installed
	bash scripts/system-deps.sh
	$(PY) -m pytest -q

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy

# The figures and the exact commands behind them are in docs/BENCHMARKS.md.
bench: $(VENV)/.bench-installed
	$(PY) bench/bench_evasion.py --device cpu
	$(PY) bench/bench_memory.py

# Makes its own venv (bench/.venv-gpu) with a CUDA torch: see bench/run_gpu.sh.
bench-gpu:
	bash bench/run_gpu.sh

# Issue 3: black-box attacks and model stealing against ART, same queries (docs/BENCHMARKS.md).
.PHONY: bench-blackbox
bench-blackbox: $(VENV)/.bench-installed
	$(PY) bench/bench_blackbox.py

# Issue 4: the gateway's throughput against a bare endpoint, and its monitors' detection (docs/BENCHMARKS.md).
.PHONY: bench-gateway
bench-gateway: $(VENV)/.bench-installed
	$(PY) bench/bench_gateway.py --profile

# Issue 6: adversarial training (PGD-AT, TRADES) against ART's trainers, same start and budget (docs/BENCHMARKS.md).
.PHONY: bench-harden
bench-harden: $(VENV)/.bench-installed
	$(PY) bench/bench_harden.py

# Issue 7: the coverage-guided fuzzer against random mutation, and mutant validity (docs/BENCHMARKS.md).
.PHONY: bench-fuzz
bench-fuzz: $(VENV)/.bench-installed
	$(PY) bench/bench_fuzz.py

clean:
	rm -rf $(VENV) reports .pytest_cache .mypy_cache .ruff_cache
