"""PSNR and SSIM of one image pair, as the PyNET-Bokeh authors' TensorFlow code and DMSHN's scikit-image code
compute them (the two metric profiles of :mod:`evaluation.metrics`).

* :func:`psnr`: ``10 log10(R^2 / MSE)`` over all pixels and channels, float64 (``tf.image.psnr``).
* :func:`ssim`: ``tf.image.ssim``: 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, population
  (co)variances, 'valid' region, mean over pixels then channels; equal to scikit-image's
  ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`` to 1e-6 and several
  times faster: separable symmetric filtering of the 'valid' region only, the per-pixel formula fused into one
  numba-compiled pass over strips of rows, strips run on a small thread pool.
* :func:`psnr_dmshn`, :func:`ssim_dmshn`: DMSHN / MPFNet ``eval.py``: 8-bit levels, scikit-image defaults.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["check_pair", "psnr", "psnr_dmshn", "ssim", "ssim_dmshn"]

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
    """The fused SSIM loop of one strip, compiled by numba on first use (and cached on disk, in the user's cache)."""
    from bokeh_model.cache import use_user_numba_cache

    use_user_numba_cache()
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
