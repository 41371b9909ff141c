# recplay: `make run` starts the whole system with demo data; `make test` runs lint and the whole test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 5000

.PHONY: install install-test install-bench run test lint jstest pytest bench bench-smoke clean

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[test]'
	touch $@

$(VENV)/.installed-bench: $(VENV)/.installed-test
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

install-bench: $(VENV)/.installed-bench

run: install
	PORT=$(PORT) $(PY) scripts/run.py

lint: install-test
	$(VENV)/bin/ruff check api tasks tests scripts bench celeryconfig.py flowerconfig.py gunicorn_access.py
	$(VENV)/bin/mypy api tasks gunicorn_access.py

# The web player's pure modules (polling and backoff, API client, time, keys, preferences): Node's test runner.
jstest:
	node --test frontend/tests/*.test.js

# Two pytest processes (pytest-xdist), a test file each at a time: most tests wait on real processes (workers,
# gunicorn, Chromium), so two share the cores well. Each process has its own redis-server, provider stand-in and
# PostgreSQL databases (tests/conftest.py, tests/postgres.py). PYTEST_PROCESSES=0 runs them in this process.
PYTEST_PROCESSES ?= 2
pytest: install-test
	$(PY) -m pytest -n $(PYTEST_PROCESSES) --dist loadfile --durations=15

test: lint jstest pytest

# Benchmarks (not part of the test suite): each scenario 5 times, results in bench/RESULTS.md. Needs redis-server,
# nginx and wrk. bench-smoke runs every scenario once at a tenth of its size (bench/out/RESULTS-smoke.md).
bench: install-bench
	$(PY) -m bench.run

bench-smoke: install-bench
	$(PY) -m bench.run --smoke

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache
