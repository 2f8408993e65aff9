"""``python -m benchmarks.gpu_speed``: argument checks, a clear exit without CUDA, and its code path on the CPU at a
tiny size."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m benchmarks.gpu_speed ...`` from the repository root, as the README runs it."""
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_speed", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_help_and_bad_arguments() -> None:
    result = _run("--help")
    assert result.returncode == 0 and "0.14 s" in result.stdout
    result = _run("--precisions", "fp8")
    assert result.returncode == 2 and "unknown precisions" in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_without_cuda_it_says_so_and_exits_3() -> None:
    result = _run("--repeats", "1")
    assert result.returncode == 3
    assert result.stderr.startswith("error: no CUDA GPU") and "--device cpu" in result.stderr


@pytest.mark.slow
def test_cpu_check_run_prints_the_table() -> None:
    result = _run(
        "--device", "cpu", "--size", "64", "96", "--repeats", "1", "--warmup", "0", "--no-compile",
        "--precisions", "fp32,bf16,fp16", "--lens-size", "64", "96",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    table = result.stdout.split("| run | ms |", 1)[1]
    for row in ("pynet fp32 eager", "pynet fp32 channels_last", "pynet bf16 eager", "lens 96x64 K=32"):
        assert f"| {row} |" in table
    assert "fp16 autocast needs CUDA" in result.stdout
