"""Full-reference image metrics for bokeh evaluation: PSNR, SSIM, LPIPS, and the two metric profiles.

Pure functions over arrays, no file I/O. The conventions follow the PyNET-Bokeh authors' evaluation
(``aiff22/PyNET-Bokeh:test_model.py``, TensorFlow ``tf.image.psnr`` / ``tf.image.ssim``):

* :func:`psnr`: ``10 log10(R^2 / MSE)`` with the MSE over all pixels and channels of one image, in float64.
* :func:`ssim`: Wang et al. SSIM as TensorFlow computes it: 11x11 Gaussian window with sigma 1.5,
  K1 = 0.01, K2 = 0.03, population (co)variances, only the 'valid' region (no padding), mean over the
  pixels of each channel, then mean over the channels. It equals
  ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, channel_axis=-1, data_range=R)`` (tested to 1e-6) and is several times faster
  (separable symmetric float64 filtering of the 'valid' region only, four filtered maps instead of five and the
  per-pixel formula fused into one numba-compiled pass, strips of rows run on a small thread pool).
* :func:`lpips_distance`: LPIPS v0.1 with the AlexNet trunk on inputs scaled to [-1, 1] (the ``lpips``
  package's own network). The network is built lazily, once, and never downloads by itself: the AlexNet trunk
  must be in the torch hub cache (:func:`alexnet_trunk_path`; ``python -m bokeh_model fetch lpips`` or
  ``evaluation/run.py`` put it there on request); otherwise :class:`LPIPSUnavailableError` says where to
  place ``alexnet-owt-7be5be79.pth``. :func:`verify_lpips_trunk` checks it is torchvision's published file.

Two profiles (:data:`PROFILES`):

* ``pynet`` (default): 32-px border crop on every side, RGB floats in [0, 1], the functions above.
* ``dmshn``: the settings of published Val294 tables (DMSHN / MPFNet ``eval.py``): no crop, uint8 levels,
  scikit-image defaults (PSNR with data range 255; SSIM with a 7x7 uniform window and sample covariance),
  LPIPS on the full image.

>>> import numpy as np
>>> a = np.random.default_rng(0).random((32, 32, 3))
>>> round(ssim(a, a), 6), psnr(a, a)
(1.0, inf)
"""

from __future__ import annotations

import functools
import math
import os
import re
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bokeh_model.errors import InputError, ModelUnavailableError

__all__ = [
    "ALEXNET_FILE",
    "ALEXNET_URL",
    "DEFAULT_PROFILE",
    "METRICS",
    "PROFILES",
    "LPIPSUnavailableError",
    "MetricProfile",
    "MetricSpec",
    "alexnet_trunk_path",
    "bootstrap_ci",
    "build_lpips",
    "check_pair",
    "get_lpips_model",
    "get_profile",
    "lpips_distance",
    "lpips_status",
    "lpips_trunk_info",
    "official_sha256_prefix",
    "verify_lpips_trunk",
    "psnr",
    "psnr_dmshn",
    "score_pair",
    "ssim",
    "ssim_dmshn",
    "summarize",
]

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = f"https://download.pytorch.org/models/{ALEXNET_FILE}"

_K1, _K2 = 0.01, 0.03
_WINDOW, _SIGMA = 11, 1.5  # the compiled SSIM loop is written for these 11 taps


# ---------------------------------------------------------------------------------------------- checks


def check_pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate a prediction/target pair and return both as float64 arrays.

    Raises:
        ValueError: the shapes differ (both are named), an array is not (H, W) or (H, W, C), or a value is
            NaN or infinite.
    """
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from target shape {target.shape}")
    if pred.ndim not in (2, 3):
        raise ValueError(f"images must be (H, W) or (H, W, C) arrays, got shape {pred.shape}")
    pred = pred.astype(np.float64, copy=False)
    target = target.astype(np.float64, copy=False)
    if not np.all(np.isfinite(pred)):
        raise ValueError("prediction contains NaN or infinite values")
    if not np.all(np.isfinite(target)):
        raise ValueError("target contains NaN or infinite values")
    return pred, target


# ---------------------------------------------------------------------------------------------- PSNR / SSIM


def psnr(pred: np.ndarray, target: np.ndarray, *, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio of one image in dB (``tf.image.psnr`` / skimage convention).

    Args:
        pred: float (H, W, 3) (or (H, W)) prediction.
        target: reference of the same shape.
        data_range: peak value R (1.0 for [0, 1] floats, 255 for 8-bit levels).

    Returns:
        ``10 log10(R^2 / MSE)``; ``inf`` for identical images.

    Raises:
        ValueError: shape mismatch, non-finite values or a non-positive ``data_range``.
    """
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range!r}")
    pred, target = check_pair(pred, target)
    diff = (pred - target).reshape(-1)
    mse = float(np.dot(diff, diff)) / diff.size  # one BLAS pass instead of square + mean
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(float(data_range) ** 2 / mse))


@functools.lru_cache(maxsize=4)
def _gaussian_kernel(size: int = _WINDOW, sigma: float = _SIGMA) -> np.ndarray:
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    kernel.setflags(write=False)
    return kernel


def ssim(pred: np.ndarray, target: np.ndarray, *, data_range: float = 1.0) -> float:
    """SSIM as TensorFlow's ``tf.image.ssim`` computes it (Wang et al. settings), mean over channels.

    Gaussian window 11x11, sigma 1.5, K1 = 0.01, K2 = 0.03, population (co)variances, 'valid' region only.
    Computed in float64.

    Args:
        pred: float (H, W, C) or (H, W) prediction; H and W at least 11.
        target: reference of the same shape.
        data_range: dynamic range R of the values (1.0 for [0, 1], 255 for 8-bit levels).

    Returns:
        Mean SSIM in [-1, 1]; 1.0 for identical images.

    Raises:
        ValueError: shape mismatch, non-finite values, images smaller than the window, or a bad ``data_range``.
    """
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range!r}")
    pred, target = check_pair(pred, target)
    if pred.shape[0] < _WINDOW or pred.shape[1] < _WINDOW:
        raise ValueError(f"SSIM needs images of at least {_WINDOW}x{_WINDOW} pixels, got {pred.shape[:2]}")
    c1 = (_K1 * data_range) ** 2
    c2 = (_K2 * data_range) ** 2
    radius = (_WINDOW - 1) // 2
    height, width = pred.shape[:2]
    # Channel planes cut into horizontal strips (overlapping by the window) keep every intermediate map in
    # the CPU caches, and the strips run on a small thread pool (the compiled loop releases the GIL). The
    # partition does not depend on the number of threads and the strip sums are added in a fixed order, so
    # the result is deterministic.
    planes_x = [pred] if pred.ndim == 2 else [np.ascontiguousarray(pred[..., c]) for c in range(pred.shape[2])]
    planes_y = [target] if target.ndim == 2 else [np.ascontiguousarray(target[..., c]) for c in range(target.shape[2])]
    valid_rows = height - 2 * radius
    jobs = [
        (
            x[start : min(start + _STRIP_ROWS, valid_rows) + 2 * radius],
            y[start : min(start + _STRIP_ROWS, valid_rows) + 2 * radius],
            c1,
            c2,
        )
        for x, y in zip(planes_x, planes_y, strict=True)
        for start in range(0, valid_rows, _STRIP_ROWS)
    ]
    sums = list(_pool().map(_ssim_strip_sum, jobs)) if len(jobs) > 1 else [_ssim_strip_sum(jobs[0])]
    strips = len(range(0, valid_rows, _STRIP_ROWS))
    count = valid_rows * (width - 2 * radius)
    per_channel = [math.fsum(sums[c * strips : (c + 1) * strips]) / count for c in range(len(planes_x))]
    return float(math.fsum(per_channel) / len(per_channel))


_STRIP_ROWS = 64
_POOL: ThreadPoolExecutor | None = None


_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="ssim")
        return _POOL


# Relaxed floating-point rules for the compiled SSIM loop: reassociation lets the row sums vectorise; results move by
# about 1e-15 against the step-by-step float64 formula, far inside the 1e-6 agreement with scikit-image.
_FASTMATH = {"reassoc", "nsz", "contract"}


@functools.cache
def _strip_kernel() -> Callable[..., float]:
    """The fused SSIM loop of one strip, compiled by numba on first use (and cached on disk)."""
    from numba import njit

    @njit(nogil=True, cache=True, fastmath=_FASTMATH)
    def row_filter(src, out, w0, w1, w2, w3, w4, w5):  # pragma: no cover - numba
        # Symmetric 11 taps, 'valid' part only: out[j] = sum_k w[k] * src[j + k].
        for j in range(out.shape[0]):
            out[j] = (
                w0 * src[j + 5]
                + w1 * (src[j + 4] + src[j + 6])
                + w2 * (src[j + 3] + src[j + 7])
                + w3 * (src[j + 2] + src[j + 8])
                + w4 * (src[j + 1] + src[j + 9])
                + w5 * (src[j] + src[j + 10])
            )

    @njit(nogil=True, cache=True, fastmath=_FASTMATH)
    def strip_sum(x, y, kernel, c1, c2):  # pragma: no cover - numba
        w0, w1, w2, w3, w4, w5 = kernel[5], kernel[4], kernel[3], kernel[2], kernel[1], kernel[0]
        rows, width = x.shape
        out_width = width - 10
        # Horizontal pass of the four maps x, y, x^2 + y^2, xy (only the sum of the variances is needed).
        across = np.empty((4, rows, out_width))
        squares = np.empty(width)
        cross = np.empty(width)
        for i in range(rows):
            xr = x[i]
            yr = y[i]
            for j in range(width):
                squares[j] = xr[j] * xr[j] + yr[j] * yr[j]
                cross[j] = xr[j] * yr[j]
            row_filter(xr, across[0, i], w0, w1, w2, w3, w4, w5)
            row_filter(yr, across[1, i], w0, w1, w2, w3, w4, w5)
            row_filter(squares, across[2, i], w0, w1, w2, w3, w4, w5)
            row_filter(cross, across[3, i], w0, w1, w2, w3, w4, w5)
        # Vertical pass, one output row at a time, straight into the SSIM formula and the sum.
        means = np.empty((4, out_width))
        total = 0.0
        for i in range(rows - 10):
            for c in range(4):
                a = across[c]
                m = means[c]
                for j in range(out_width):
                    m[j] = (
                        w0 * a[i + 5, j]
                        + w1 * (a[i + 4, j] + a[i + 6, j])
                        + w2 * (a[i + 3, j] + a[i + 7, j])
                        + w3 * (a[i + 2, j] + a[i + 8, j])
                        + w4 * (a[i + 1, j] + a[i + 9, j])
                        + w5 * (a[i, j] + a[i + 10, j])
                    )
            row = 0.0
            for j in range(out_width):
                mx = means[0, j]
                my = means[1, j]
                mxy = mx * my
                msq = mx * mx + my * my
                numerator = (2.0 * mxy + c1) * (2.0 * (means[3, j] - mxy) + c2)
                denominator = (msq + c1) * (means[2, j] - msq + c2)
                row += numerator / denominator
            total += row
        return total

    return strip_sum


def _ssim_strip_sum(job: tuple[np.ndarray, np.ndarray, float, float]) -> float:
    """Sum of the SSIM map over the 'valid' pixels of one strip of one channel plane (float64).

    Separable 11x11 Gaussian (sigma 1.5) means of x, y, x^2 + y^2 and xy, computed for the 'valid' region only,
    then the per-pixel SSIM formula, fused into one compiled pass that keeps the strip in the CPU caches.
    """
    pred, target, c1, c2 = job
    return float(_strip_kernel()(np.ascontiguousarray(pred), np.ascontiguousarray(target), _gaussian_kernel(), c1, c2))


def _to_uint8_levels(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0) * 255.0)


def psnr_dmshn(pred: np.ndarray, target: np.ndarray) -> float:
    """PSNR as DMSHN/MPFNet ``eval.py`` computes it: 8-bit levels, data range 255, no crop.

    Inputs are float [0, 1] arrays; they are rounded to 8-bit levels first (what a saved PNG/JPEG holds).
    """
    pred, target = check_pair(pred, target)
    return psnr(_to_uint8_levels(pred), _to_uint8_levels(target), data_range=255.0)


def ssim_dmshn(pred: np.ndarray, target: np.ndarray) -> float:
    """SSIM with scikit-image defaults on 8-bit levels (7x7 uniform window, sample covariance, range 255).

    This is ``compare_ssim(multichannel=True)`` of the DMSHN/MPFNet evaluation; not comparable with :func:`ssim`.
    """
    from skimage.metrics import structural_similarity

    pred, target = check_pair(pred, target)
    if min(pred.shape[:2]) < 7:
        raise ValueError(f"SSIM (7x7 window) needs images of at least 7x7 pixels, got {pred.shape[:2]}")
    return float(
        structural_similarity(
            _to_uint8_levels(target),
            _to_uint8_levels(pred),
            data_range=255.0,
            channel_axis=-1 if pred.ndim == 3 else None,
        )
    )


# ---------------------------------------------------------------------------------------------- LPIPS


class LPIPSUnavailableError(ModelUnavailableError):
    """The AlexNet trunk that LPIPS needs is not on this machine, or is not the official file."""


def alexnet_trunk_path() -> Path:
    """Where torchvision/torch hub keep the AlexNet trunk: ``<torch hub dir>/checkpoints/alexnet-owt-7be5be79.pth``.

    The hub dir is ``$TORCH_HOME/hub`` (default ``~/.cache/torch/hub``) or whatever ``torch.hub.set_dir`` chose.
    """
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE


def lpips_status() -> tuple[bool, str]:
    """Cheap check (no network, no loading) of whether real LPIPS can be computed here.

    Returns:
        ``(True, "")`` or ``(False, one-line reason with the exact path to place the trunk file)``.
    """
    import importlib.util

    # find_spec, not import: importing lpips pulls in torchvision's models (seconds), too slow for a status check.
    if importlib.util.find_spec("lpips") is None:  # pragma: no cover - lpips is a pinned requirement
        return False, "LPIPS unavailable: the 'lpips' package is not installed; pip install lpips==0.1.4"
    path = alexnet_trunk_path()
    if not path.is_file():
        return False, (
            f"LPIPS unavailable: AlexNet trunk not found at {path}; run `python -m bokeh_model fetch lpips`, or "
            f"download {ALEXNET_URL} and place it there (or point TORCH_HOME at a folder holding "
            f"hub/checkpoints/{ALEXNET_FILE})"
        )
    return True, ""


def official_sha256_prefix(file_name: str) -> str:
    """The SHA-256 prefix torch hub file names carry (``alexnet-owt-7be5be79.pth`` -> ``7be5be79``)."""
    match = re.search(r"-([0-9a-f]{8,})\.[A-Za-z0-9]+$", file_name)
    if match is None:
        raise ValueError(f"{file_name!r} carries no SHA-256 prefix")
    return match.group(1)


def lpips_trunk_info(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Which AlexNet trunk LPIPS uses: ``{"path", "sha256", "official"}`` (for run records).

    ``official`` says whether the SHA-256 starts with the prefix in the official file name, i.e. whether it is
    torchvision's published file. Reads the whole file (about 233 MB, under a second).

    Raises:
        LPIPSUnavailableError: the file is missing.
    """
    from bokeh_model.fetch import sha256_file

    trunk = Path(path) if path is not None else alexnet_trunk_path()
    if not trunk.is_file():
        raise LPIPSUnavailableError(lpips_status()[1] if path is None else f"AlexNet trunk not found at {trunk}")
    digest = sha256_file(trunk)
    return {"path": str(trunk), "sha256": digest, "official": digest.startswith(official_sha256_prefix(ALEXNET_FILE))}


def verify_lpips_trunk(*, allow_unofficial: bool = False) -> dict[str, Any]:
    """:func:`lpips_trunk_info` of the cached trunk; a file that is not the official one is an error.

    Raises:
        LPIPSUnavailableError: missing, or (unless ``allow_unofficial``) its SHA-256 does not start with the
            prefix in the official file name, so LPIPS values would not be comparable with published ones.
    """
    info = lpips_trunk_info()
    if not info["official"] and not allow_unofficial:
        prefix = official_sha256_prefix(ALEXNET_FILE)
        raise LPIPSUnavailableError(
            f"the AlexNet trunk at {info['path']} is not torchvision's file (SHA-256 {info['sha256'][:16]}... does "
            f"not start with {prefix}); delete it and run `python -m bokeh_model fetch lpips`, or pass "
            "--allow-unofficial-lpips to score with it anyway"
        )
    return info


def build_lpips(trunk_path: str | os.PathLike | None = None) -> Any:
    """Build LPIPS v0.1 (AlexNet) from the ``lpips`` package's heads and a local AlexNet trunk file.

    The network is created with a random trunk (which downloads nothing) and the trunk weights are then
    loaded from ``trunk_path`` (default :func:`alexnet_trunk_path`) with a strict key check, so the result is
    the same network ``lpips.LPIPS(net="alex")`` builds from the torch hub cache.

    Raises:
        LPIPSUnavailableError: the trunk file is missing or is not an AlexNet state dict.
    """
    import lpips
    import torch

    path = Path(trunk_path) if trunk_path is not None else alexnet_trunk_path()
    if not path.is_file():
        raise LPIPSUnavailableError(lpips_status()[1] if trunk_path is None else f"AlexNet trunk not found at {path}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchvision's "pretrained is deprecated" notes
        model = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
    try:
        trunk = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
        raise LPIPSUnavailableError(
            f"AlexNet trunk {path} could not be read ({exc}); replace it with {ALEXNET_URL}"
        ) from None
    slice_of = {}
    for slice_name, module in model.net.named_children():
        for index in module._modules:
            slice_of[index] = slice_name
    mapped = {}
    for key, value in trunk.items():
        parts = key.split(".")
        if parts[0] != "features":
            continue  # the classifier is not part of LPIPS
        if parts[1] not in slice_of:
            raise LPIPSUnavailableError(f"{path} is not an AlexNet checkpoint (unexpected key {key!r})")
        mapped[f"{slice_of[parts[1]]}.{'.'.join(parts[1:])}"] = value
    try:
        model.net.load_state_dict(mapped, strict=True)
    except RuntimeError as exc:
        raise LPIPSUnavailableError(f"{path} does not match AlexNet: {exc}") from None
    return model.eval()


_LPIPS_LOCK = threading.Lock()
_LPIPS_CACHE: dict[str, Any] = {}


def get_lpips_model(device: str = "cpu") -> Any:
    """The real LPIPS network on ``device``, built on first use and cached.

    Raises:
        LPIPSUnavailableError: the AlexNet trunk is not in the torch hub cache (message names the path).
    """
    key = f"{alexnet_trunk_path()}|{device}"
    with _LPIPS_LOCK:
        if key not in _LPIPS_CACHE:
            ok, reason = lpips_status()
            if not ok:
                raise LPIPSUnavailableError(reason)
            _LPIPS_CACHE[key] = build_lpips().to(device)
        return _LPIPS_CACHE[key]


def lpips_distance(pred: np.ndarray, target: np.ndarray, *, model: Any = None, device: str | None = None) -> float:
    """LPIPS v0.1 AlexNet distance of one image pair (lower is better).

    Args:
        pred: float (H, W, 3) RGB in [0, 1].
        target: reference of the same shape.
        model: an ``lpips.LPIPS`` network; default: the cached real one (:func:`get_lpips_model`).
        device: where to run; default: the model's device (CPU for the cached model).

    Raises:
        ValueError: bad shapes or values.
        LPIPSUnavailableError: no model given and the AlexNet trunk is missing.
    """
    import torch

    pred, target = check_pair(pred, target)
    if pred.ndim != 3 or pred.shape[2] != 3:
        raise ValueError(f"LPIPS needs RGB images of shape (H, W, 3), got {pred.shape}")
    if model is None:
        model = get_lpips_model(device or "cpu")
    run_device = next(model.parameters()).device

    def to_tensor(image: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))[None]
        return (tensor * 2.0 - 1.0).to(run_device)

    with torch.inference_mode():
        value = model(to_tensor(pred), to_tensor(target))
    return float(value.reshape(-1)[0].item())


# ---------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its name, function ``fn(pred, target) -> float``, direction and whether it needs a target."""

    name: str
    fn: Callable[..., float]
    lower_better: bool
    needs_reference: bool = True

    @property
    def label(self) -> str:
        """Column label with the direction arrow, e.g. ``"PSNR ↑"``."""
        return f"{self.name.upper().replace('_', '-')} {'↓' if self.lower_better else '↑'}"


METRICS: dict[str, MetricSpec] = {
    "psnr": MetricSpec("psnr", psnr, lower_better=False),
    "ssim": MetricSpec("ssim", ssim, lower_better=False),
    "lpips": MetricSpec("lpips", lpips_distance, lower_better=True),
}


@dataclass(frozen=True)
class MetricProfile:
    """How images are prepared and scored: border crop and the PSNR / SSIM functions on [0, 1] floats."""

    name: str
    description: str
    border: int
    psnr: Callable[[np.ndarray, np.ndarray], float]
    ssim: Callable[[np.ndarray, np.ndarray], float]
    quantize: bool = True
    notes: tuple[str, ...] = field(default_factory=tuple)

    def crop(self, image: np.ndarray) -> np.ndarray:
        """Remove ``border`` pixels from every side (no-op for 0).

        Raises:
            ValueError: the image is too small for the crop.
        """
        if self.border <= 0:
            return image
        height, width = image.shape[:2]
        if height <= 2 * self.border or width <= 2 * self.border:
            raise ValueError(
                f"profile {self.name!r} crops {self.border} px per side; image {width}x{height} is too small"
            )
        return image[self.border : height - self.border, self.border : width - self.border]


PROFILES: dict[str, MetricProfile] = {
    "pynet": MetricProfile(
        name="pynet",
        description="PyNET-Bokeh authors' protocol: 32-px border crop, RGB in [0, 1], TF PSNR/SSIM, LPIPS-alex v0.1",
        border=32,
        psnr=psnr,
        ssim=ssim,
        notes=("SSIM: Gaussian 11, sigma 1.5, valid region, population statistics, mean of channels",),
    ),
    "dmshn": MetricProfile(
        name="dmshn",
        description="Published Val294 tables (DMSHN/MPFNet eval.py): no crop, uint8, scikit-image defaults",
        border=0,
        psnr=psnr_dmshn,
        ssim=ssim_dmshn,
        notes=("SSIM: 7x7 uniform window, sample covariance, data range 255 (not comparable with 'pynet')",),
    ),
}
DEFAULT_PROFILE = "pynet"


def get_profile(name: str) -> MetricProfile:
    """The profile called ``name``.

    Raises:
        InputError: unknown name (the known ones are listed).
    """
    if name not in PROFILES:
        raise InputError(f"unknown metric profile {name!r}; choose one of {sorted(PROFILES)}")
    return PROFILES[name]


def score_pair(
    pred: np.ndarray,
    target: np.ndarray,
    profile: MetricProfile | str = DEFAULT_PROFILE,
    *,
    lpips_model: Any = None,
) -> dict[str, float]:
    """PSNR, SSIM (and LPIPS when ``lpips_model`` is given) of one pair under a profile.

    Args:
        pred: float (H, W, 3) in [0, 1], the full-size prediction.
        target: float (H, W, 3) in [0, 1], the full-size target.
        profile: a :class:`MetricProfile` or its name.
        lpips_model: an ``lpips.LPIPS`` network, or ``None`` to skip LPIPS (reported as NaN).

    Returns:
        ``{"psnr": ..., "ssim": ..., "lpips": ...}``.
    """
    if isinstance(profile, str):
        profile = get_profile(profile)
    pred, target = check_pair(pred, target)
    pred, target = profile.crop(pred), profile.crop(target)
    scores = {"psnr": profile.psnr(pred, target), "ssim": profile.ssim(pred, target)}
    scores["lpips"] = lpips_distance(pred, target, model=lpips_model) if lpips_model is not None else float("nan")
    return scores


# ---------------------------------------------------------------------------------------------- aggregation


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, *, level: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean (seeded, so tables are reproducible).

    Returns ``(nan, nan)`` for no finite values and ``(v, v)`` for a single value.
    """
    data = np.asarray(values, dtype=np.float64)
    data = data[np.isfinite(data)]
    if data.size == 0:
        return float("nan"), float("nan")
    if data.size == 1:
        return float(data[0]), float(data[0])
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(n_resamples, data.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def summarize(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Mean, median, 95% bootstrap CI and count of the finite values (``inf`` PSNR counts as not finite)."""
    data = np.asarray(values, dtype=np.float64)
    finite = data[np.isfinite(data)]
    low, high = bootstrap_ci(finite)
    return {
        "mean": float(finite.mean()) if finite.size else float("nan"),
        "median": float(np.median(finite)) if finite.size else float("nan"),
        "ci_low": low,
        "ci_high": high,
        "n": int(finite.size),
    }
