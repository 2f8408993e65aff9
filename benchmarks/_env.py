"""Shared header for benchmark scripts: versions and device, printed before the figures."""

from __future__ import annotations

import platform
from pathlib import Path

# The checkout: the benchmarks read its example photos and start its app.py (the packages themselves are imported
# from the installed package, `make setup`).
ROOT = Path(__file__).resolve().parents[1]

__all__ = ["ROOT", "environment_lines"]


def environment_lines() -> list[str]:
    import numpy
    import torch

    lines = [
        f"python {platform.python_version()}, torch {torch.__version__}, numpy {numpy.__version__}",
        f"cpu: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}",
    ]
    if torch.cuda.is_available():
        lines.append(f"cuda: {torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})")
    else:
        lines.append("cuda: not available")
    return lines
