"""Shared test setup: offline Hugging Face libraries, few threads, deterministic seeds."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

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

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))
