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

__all__ = ["check_pair", "dmshn_levels", "psnr", "psnr_dmshn", "pynet_levels", "ssim", "ssim_dmshn", "ssim_planes"]

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
    planes_x = [pred] if pred.ndim == 2 else [np.ascontiguousarray(pred[..., c]) for c in range(pred.shape[2])]
    planes_y = [target] if target.ndim == 2 else [np.ascontiguousarray(target[..., c]) for c in range(target.shape[2])]
    return ssim_planes(planes_x, planes_y, data_range=data_range)


def ssim_planes(planes_x: list[np.ndarray], planes_y: list[np.ndarray], *, data_range: float = 1.0) -> float:
    """:func:`ssim` of images given as lists of C-contiguous float64 channel planes (no checks: the caller has
    validated them, e.g. planes made from 8-bit levels, which are finite by construction)."""
    c1 = (_K1 * data_range) ** 2
    c2 = (_K2 * data_range) ** 2
    radius = (_WINDOW - 1) // 2
    height, width = planes_x[0].shape
    # Channel planes cut into horizontal strips (overlapping by the window) keep every intermediate map in
    # the CPU caches, and the strips run on a small thread pool (the compiled loop releases the GIL). The
    # partition does not depend on the number of threads and the strip sums are added in a fixed order, so
    # the result is deterministic.
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
    Computed by :func:`dmshn_levels` (exact integer window sums; equal to scikit-image to 1e-12).
    """
    pred, target = check_pair(pred, target)
    if min(pred.shape[:2]) < _BOX:
        raise ValueError(f"SSIM (7x7 window) needs images of at least 7x7 pixels, got {pred.shape[:2]}")
    levels_x = _to_uint8_levels(pred).astype(np.uint8)
    levels_y = _to_uint8_levels(target).astype(np.uint8)
    return dmshn_levels(levels_x, levels_y)[1]


# ---------------------------------------------------------------------------------------------- 8-bit levels
# The evaluation decodes 8-bit files to their uint8 levels and scores them here without float copies of the
# whole image: the same numbers as the float functions above (the dmshn ones exactly; the pynet ones use the
# same float64 planes, k / 255, as psnr() and ssim() receive).

_BOX = 7  # scikit-image's default window


@functools.cache
def _box_kernel() -> Callable[..., tuple[np.ndarray, int]]:
    """scikit-image's default SSIM of one channel (7x7 uniform window, sample covariance) on uint8 levels,
    with the sum of squared differences, compiled by numba on first use (and cached on disk)."""
    from numba import njit

    @njit(nogil=True, cache=True)
    def channel(x, y, c1, c2):  # pragma: no cover - numba
        rows, width = x.shape
        # Running column sums over 7 rows of x, y, x^2, y^2 and xy: integers, so every window sum is exact
        # (scipy's running float sums differ from these by about 1e-16 relative).
        cx = np.zeros(width, np.int64)
        cy = np.zeros(width, np.int64)
        cxx = np.zeros(width, np.int64)
        cyy = np.zeros(width, np.int64)
        cxy = np.zeros(width, np.int64)
        sse = 0
        for i in range(rows):
            for j in range(width):
                a = np.int64(x[i, j])
                b = np.int64(y[i, j])
                sse += (a - b) * (a - b)
                if i < 7:
                    cx[j] += a
                    cy[j] += b
                    cxx[j] += a * a
                    cyy[j] += b * b
                    cxy[j] += a * b
        cov = 49.0 / 48.0
        sums = np.zeros(rows - 6)
        for r in range(rows - 6):
            sx = 0
            sy = 0
            sxx = 0
            syy = 0
            sxy = 0
            for j in range(7):
                sx += cx[j]
                sy += cy[j]
                sxx += cxx[j]
                syy += cyy[j]
                sxy += cxy[j]
            total = 0.0
            for j in range(width - 6):
                if j > 0:
                    sx += cx[j + 6] - cx[j - 1]
                    sy += cy[j + 6] - cy[j - 1]
                    sxx += cxx[j + 6] - cxx[j - 1]
                    syy += cyy[j + 6] - cyy[j - 1]
                    sxy += cxy[j + 6] - cxy[j - 1]
                ux = sx / 49.0
                uy = sy / 49.0
                vx = cov * (sxx / 49.0 - ux * ux)
                vy = cov * (syy / 49.0 - uy * uy)
                vxy = cov * (sxy / 49.0 - ux * uy)
                a1 = 2.0 * ux * uy + c1
                a2 = 2.0 * vxy + c2
                b1 = ux**2 + uy**2 + c1
                b2 = vx + vy + c2
                total += (a1 * a2) / (b1 * b2)
            sums[r] = total
            if r + 7 < rows:
                for j in range(width):
                    a0 = np.int64(x[r, j])
                    b0 = np.int64(y[r, j])
                    a1_ = np.int64(x[r + 7, j])
                    b1_ = np.int64(y[r + 7, j])
                    cx[j] += a1_ - a0
                    cy[j] += b1_ - b0
                    cxx[j] += a1_ * a1_ - a0 * a0
                    cyy[j] += b1_ * b1_ - b0 * b0
                    cxy[j] += a1_ * b1_ - a0 * b0
        return sums, sse

    return channel


def _planes(image: np.ndarray) -> list[np.ndarray]:
    return [image] if image.ndim == 2 else [image[..., c] for c in range(image.shape[2])]


def _box_channel(job: tuple[np.ndarray, np.ndarray]) -> tuple[float, int, int]:
    x, y = job
    sums, sse = _box_kernel()(np.ascontiguousarray(x), np.ascontiguousarray(y), (_K1 * 255.0) ** 2, (_K2 * 255.0) ** 2)
    return math.fsum(sums), int(sse), sums.size * (x.shape[1] - _BOX + 1)


def dmshn_levels(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """``(psnr_dmshn, ssim_dmshn)`` of two uint8 (H, W[, C]) arrays of the same shape (at least 7x7).

    PSNR is exactly :func:`psnr_dmshn`'s (the squared differences of integers are summed exactly); SSIM is
    scikit-image's ``structural_similarity(data_range=255)`` with its defaults, mean over channels, from exact
    integer window sums (equal to scikit-image's running float sums to about 1e-13).
    """
    jobs = list(zip(_planes(pred), _planes(target), strict=True))
    parts = list(_pool().map(_box_channel, jobs)) if len(jobs) > 1 else [_box_channel(jobs[0])]
    mse = float(sum(p[1] for p in parts)) / pred.size
    value_psnr = float("inf") if mse == 0.0 else float(10.0 * np.log10(255.0**2 / mse))
    value_ssim = math.fsum(p[0] / p[2] for p in parts) / len(parts)
    return value_psnr, float(value_ssim)


@functools.cache
def _sse_kernel() -> Callable[..., int]:
    """Sum of squared differences of two uint8 (H, W, C) arrays (views allowed), exact in integers."""
    from numba import njit

    @njit(nogil=True, cache=True)
    def sse(x, y):  # pragma: no cover - numba
        total = 0
        for i in range(x.shape[0]):
            for j in range(x.shape[1]):
                for c in range(x.shape[2]):
                    d = np.int64(x[i, j, c]) - np.int64(y[i, j, c])
                    total += d * d
        return total

    return sse


def pynet_levels(pred: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """``(psnr, ssim)`` (the ``pynet`` profile's functions, range 1) of two uint8 (H, W, C) arrays, already cropped.

    SSIM gets the float64 planes k / 255 that :func:`ssim` would make (the same result); the PSNR's squared
    differences are summed exactly in integers (:func:`psnr` sums them in float64: about 1e-13 dB apart).
    """
    planes_x = [np.divide(p, 255.0, dtype=np.float64) for p in _planes(pred)]
    planes_y = [np.divide(p, 255.0, dtype=np.float64) for p in _planes(target)]
    sse = int(
        _sse_kernel()(pred if pred.ndim == 3 else pred[..., None], target if target.ndim == 3 else target[..., None])
    )
    mse = sse / 255.0**2 / pred.size
    value_psnr = float("inf") if mse == 0.0 else float(10.0 * np.log10(1.0 / mse))
    return value_psnr, ssim_planes(planes_x, planes_y)
