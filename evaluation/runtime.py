"""Runtime measurement and the environment record of a run (device, dtype, versions).

A method's runtime is the wall time of one ``method(image, depth, **params)`` call on one image, after
warm-up calls, with CUDA synchronised before and after. It includes the method's own pre/post-processing
(array to tensor and back) and excludes file I/O, decoding and the metrics.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["environment_info", "hardware_label", "synchronize_all", "timed_call"]

T = TypeVar("T")


def synchronize_all() -> None:
    """Wait for queued CUDA work on every visible GPU (no-op without CUDA)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index in range(torch.cuda.device_count()):
            torch.cuda.synchronize(index)


def timed_call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, float]:
    """Call ``fn`` and return ``(result, seconds)``, synchronising CUDA before and after.

    >>> result, seconds = timed_call(sum, [1, 2, 3])
    >>> result, seconds >= 0
    (6, True)
    """
    synchronize_all()
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    synchronize_all()
    return result, time.perf_counter() - start


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware_label(device: str = "cpu") -> str:
    """Short hardware string for the table's Hardware column, e.g. ``"NVIDIA H100 80GB HBM3"`` or ``"CPU: ..."``."""
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index or 0
        return torch.cuda.get_device_name(index)
    return f"CPU: {_cpu_name()} ({torch.get_num_threads()} threads)"


def environment_info(device: str = "cpu") -> dict[str, Any]:
    """Versions and hardware of this process, for ``run.json``."""
    import numpy
    import torch

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "device": str(device),
        "hardware": hardware_label(device),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
    }
    # Versions from the installed distributions (importlib.metadata), not module attributes: lpips 0.1.4 has
    # no __version__. JPEG decoding changes PSNR (up to 1.5 dB between decoders), so Pillow's libjpeg is kept.
    for key, distributions in _DISTRIBUTIONS.items():
        info[key] = _distribution_version(*distributions)
    info.update(_jpeg_decoder())
    return info


_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "skimage": ("scikit-image",),
    "lpips": ("lpips",),
    "datasets": ("datasets",),
    "pyarrow": ("pyarrow",),
    "cv2": ("opencv-python", "opencv-python-headless", "opencv-contrib-python"),
    "torchvision": ("torchvision",),
    "transformers": ("transformers",),
    "accelerate": ("accelerate",),
    "pillow": ("pillow",),
}


def _distribution_version(*names: str) -> str | None:
    from importlib import metadata

    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _jpeg_decoder() -> dict[str, Any]:
    """The libjpeg Pillow decodes JPEGs with (e.g. libjpeg-turbo 3.1.0)."""
    from PIL import features

    try:
        api = features.version("jpg")  # the libjpeg API level (6.2 / 8.0); turbo reports its own version
        turbo = features.version("libjpeg_turbo") if features.check_feature("libjpeg_turbo") else None
    except Exception:  # noqa: BLE001 - a Pillow without the feature API: record that it is unknown
        return {"libjpeg": None, "libjpeg_turbo": None}
    return {"libjpeg": f"libjpeg-turbo {turbo} (API {api})" if turbo else f"libjpeg {api}", "libjpeg_turbo": turbo}
