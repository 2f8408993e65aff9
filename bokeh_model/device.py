"""Device and precision choices shared by PyNET, the depth models and the GPU renderers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from .errors import InputError

__all__ = ["PRECISIONS", "autocast", "resolve_device", "synchronize"]

PRECISIONS = ("fp32", "bf16", "fp16")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is checked and returned."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} was requested but this machine has no CUDA GPU")
    return resolved


@contextlib.contextmanager
def autocast(device: torch.device, precision: str = "fp32") -> Iterator[None]:
    """Mixed-precision context: fp32 is a no-op; bf16/fp16 autocast on CUDA (bf16 also on CPU)."""
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        yield
        return
    if precision == "fp16" and device.type != "cuda":
        raise InputError("fp16 autocast needs a CUDA device; use fp32 or bf16 on the CPU")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that timings measure the computation, not the launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
