"""Shared test setup: offline Hugging Face libraries, few threads, deterministic seeds, a clean method registry.

The tests import the installed package (``make setup`` installs this checkout in editable mode); the helper
modules beside the tests (``_tiny_models``, ``_postgres``, ...) are importable because pytest puts this folder on
the module search path (tests/ is not a package).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile

# The tests never reach the network: anything that tries must fail fast, as on users' offline machines.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.pop("BOKEH_PYNET_WEIGHTS", None)
# Weights fetched on this machine (~/.cache/bokeh_model) must not leak into tests: an empty cache per session.
os.environ["BOKEH_CACHE"] = tempfile.mkdtemp(prefix="bokeh-cache-")
# datasets keys its cache by folder name + file hashes: two test folders both called "ebb_hf" (or another run on
# this machine) could otherwise read each other's cached tables.
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="hf-datasets-")
for _folder in (os.environ["BOKEH_CACHE"], os.environ["HF_DATASETS_CACHE"]):
    atexit.register(shutil.rmtree, _folder, ignore_errors=True)
# The registered PyNET method defaults to backend "auto", which may export ONNX once per model (slow); tests that
# are not about backends run eagerly, and tests/test_backends.py covers the others.
os.environ.setdefault("BOKEH_PYNET_BACKEND", "eager")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="module", autouse=True)
def _method_registry_unchanged(request):
    """A test module may register test-only methods only for its own tests (``registered_methods`` in a fixture):
    whatever it leaves behind is removed and reported, so that other modules (and the contract tests generated
    from ``list_methods()``) see only the real methods."""
    from bokeh_model.registry import list_methods, unregister_method

    before = set(list_methods())
    yield
    leftover = sorted(set(list_methods()) - before)
    for name in leftover:
        unregister_method(name)
    if leftover:
        pytest.fail(
            f"{request.module.__name__} left test-only methods registered: {leftover}; register them with "
            "bokeh_model.registry.registered_methods(...) inside a fixture",
            pytrace=False,
        )


@pytest.fixture
def temporary_methods():
    """Register method classes for one test: ``temporary_methods(MyMethod, ...)``; removed after the test."""
    from bokeh_model.registry import registered_methods

    with contextlib.ExitStack() as stack:
        yield lambda *factories: stack.enter_context(registered_methods(*factories))
