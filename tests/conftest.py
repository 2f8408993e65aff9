"""Shared test setup: offline Hugging Face libraries, few threads, deterministic seeds."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The tests never reach the network: anything that tries must fail fast, as on users' offline machines.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.pop("BOKEH_PYNET_WEIGHTS", None)
# The registered PyNET method defaults to backend "auto", which may export ONNX once per model (slow); tests that
# are not about backends run eagerly, and tests/test_backends.py covers the others.
os.environ.setdefault("BOKEH_PYNET_BACKEND", "eager")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))
