# Quick start:  make demo  (set up .venv and start the app)   |   make test  (set up and run every test)
# Both targets are idempotent: the virtual environment is rebuilt only when the requirements change.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint format bench system-deps clean

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

setup: $(STAMP)

# Debian packages the browser and PostgreSQL tests use (installed only when running as root).
system-deps:
	@bash scripts/install_system_deps.sh

demo: setup
	$(PY) app.py

test: setup system-deps
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: setup
	@for script in benchmarks/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
