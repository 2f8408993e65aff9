# Quick start:  make demo  (set up .venv and start the app)   |   make test  (set up and run every test)
# Both targets are idempotent: the virtual environment is rebuilt only when the requirements change.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# A separate environment with TensorFlow, used only by the test that checks the converted PyNET against
# TensorFlow itself (kept apart: TensorFlow pins numpy/protobuf versions the app does not want).
TF_VENV := .venv-tf
TF_STAMP := $(TF_VENV)/.installed
# A separate environment with litert-torch for `python -m bokeh_model export ... --format litert` (it brings its own
# TF Lite converter and JAX, which the app does not want).
LITERT_VENV := .venv-litert
LITERT_STAMP := $(LITERT_VENV)/.installed

.PHONY: setup tf-env litert-env demo models test lint format bench system-deps clean

# The checkout itself is installed in editable mode (pyproject.toml): `import bokeh_model` and the console scripts
# (bokeh-model, bokeh-eval, ...) use this folder's code, wherever they are started from.
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

setup: $(STAMP)

# Best effort: if TensorFlow cannot be installed, the TensorFlow parity test is skipped with a reason.
$(TF_STAMP):
	-@test -x $(TF_VENV)/bin/python || $(PYTHON) -m venv $(TF_VENV)
	-$(TF_VENV)/bin/python -m pip install --quiet --disable-pip-version-check "tensorflow-cpu==2.21.0" numpy \
		&& touch $(TF_STAMP)

tf-env: $(TF_STAMP)

# Best effort: if litert-torch cannot be installed, the LiteRT export test is skipped with a reason.
$(LITERT_STAMP):
	-@test -x $(LITERT_VENV)/bin/python || $(PYTHON) -m venv $(LITERT_VENV)
	-$(LITERT_VENV)/bin/python -m pip install --quiet --disable-pip-version-check "litert-torch==0.10.0" "torch==2.14.1" \
		&& touch $(LITERT_STAMP)

litert-env: $(LITERT_STAMP)

# Debian packages the browser and PostgreSQL tests use (installed only when running as root).
system-deps:
	@bash scripts/install_system_deps.sh

# Download what is missing (PyNET-Bokeh weights, depth model, LPIPS trunk) into the standard caches; exit 3 if not.
models: setup
	$(PY) -m bokeh_model fetch all

# Fetches the app's missing models first when online (offline: one note per model), then starts as always.
demo: setup
	$(PY) -m bokeh_model fetch pynet depth bokehlicious bokehme --optional
	$(PY) app.py

test: setup system-deps tf-env litert-env
	$(PY) -m ruff check .
	BOKEH_TF_PYTHON=$$(test -f $(TF_STAMP) && echo $(CURDIR)/$(TF_VENV)/bin/python) $(PY) -m pytest

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: setup
	@# each benchmark runs as a module (python -m benchmarks.NAME); exit code 3 = skipped for a missing device
	@# (gpu_speed without CUDA)
	@for script in benchmarks/[a-z]*.py; do name=$$(basename $$script .py); echo "== python -m benchmarks.$$name"; \
		$(PY) -m benchmarks.$$name; rc=$$?; test $$rc -eq 0 -o $$rc -eq 3 || exit 1; done

clean:
	rm -rf $(VENV) $(TF_VENV) $(LITERT_VENV) .pytest_cache .ruff_cache build *.egg-info
