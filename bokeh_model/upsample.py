"""Full-resolution finish: bring a bokeh result computed at processing resolution back to the photo's own size.

Depth estimation and defocus rendering run at a processing resolution (about 2 MP in the app); the photo
itself may be 24 MP. Upsampling the result with a plain bilinear or bicubic filter would make the in-focus
subject as soft as the processing resolution and blur its outline into the background. Instead:

1. **Guided upsampling** (the fast guided filter of He & Sun, "Fast Guided Filter", arXiv:1505.00996, after
   He, Sun, Tang, "Guided Image Filtering", ECCV 2010): at processing resolution, fit per window and per
   colour channel a linear model ``result ≈ a * photo + b``; upsample the smoothed coefficients ``a, b`` and
   apply them to the full-resolution photo. Where the result is the photo (in focus) ``a ≈ 1, b ≈ 0`` and the
   full-resolution detail comes through; where it is blurred ``a ≈ 0`` and ``b`` is the smooth blur; across
   an outline the model follows the photo's own edge, so the edge stays where the photo has it (no halo of
   upsampling blur).
2. **Sharp blend**: where the result equals the photo at processing resolution (on the focal plane) the
   full-resolution photo itself is used (folded into the same per-pixel linear map, see
   :func:`finish_full_resolution`).

Everything is O(pixels) with OpenCV box filters, resizes and in-place arithmetic: the full-resolution work is
two bilinear resizes and one multiply-add.
"""

from __future__ import annotations

import cv2
import numpy as np

from .errors import InputError

__all__ = ["guided_upsample", "finish_full_resolution"]

# Guided-filter window radius (processing-resolution pixels) and regularisation (in [0, 1]^2 intensity units):
# a small window keeps the edge model local; eps below the variance of real texture lets that texture through.
GUIDE_RADIUS = 2
GUIDE_EPS = 1e-4
# A processing-resolution pixel counts as "on the focal plane" when the result differs from the photo by less
# than this (all channels): the renderers leave such pixels untouched, up to rounding.
SHARP_TOLERANCE = 1.5 / 255.0
# Above this many processing-resolution pixels the coefficients are fitted on a half-size grid.
COEFFICIENT_MAX_PIXELS = 4_000_000


def _box(image: np.ndarray, radius: int) -> np.ndarray:
    return cv2.blur(image, (2 * radius + 1, 2 * radius + 1), borderType=cv2.BORDER_REFLECT)


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def _coefficients(guide: np.ndarray, target: np.ndarray, radius: int, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Window-averaged coefficients ``(a, b)`` of the guided filter: ``target ≈ a * guide + b`` (He et al.).

    OpenCV arithmetic (vectorised, fewer temporaries) is about twice as fast as the same NumPy expressions here.
    """
    mean_i = _box(guide, radius)
    mean_p = _box(target, radius)
    cov_ip = _box(cv2.multiply(guide, target), radius)
    cov_ip -= cv2.multiply(mean_i, mean_p)
    var_i = _box(cv2.multiply(guide, guide), radius)
    var_i -= cv2.multiply(mean_i, mean_i)
    var_i += np.float32(eps)
    a = cv2.divide(cov_ip, var_i)
    b = mean_p
    b -= cv2.multiply(a, mean_i)
    return _box(a, radius), _box(b, radius)


def _apply(a_low: np.ndarray, b_low: np.ndarray, guide_full: np.ndarray) -> np.ndarray:
    """``clip(a * guide + b, 0, 1)`` at full resolution with bilinearly upsampled coefficients.

    OpenCV's SIMD resize and in-place arithmetic: measured 3x faster on 12 MP than a fused compiled loop.
    """
    size = guide_full.shape[:2]
    out = _resize(a_low, size)
    cv2.multiply(out, np.ascontiguousarray(guide_full, dtype=np.float32), dst=out)
    cv2.add(out, _resize(b_low, size), dst=out)
    return np.clip(out, 0.0, 1.0, out=out)


def guided_upsample(
    guide_low: np.ndarray,
    target_low: np.ndarray,
    guide_full: np.ndarray,
    *,
    radius: int = GUIDE_RADIUS,
    eps: float = GUIDE_EPS,
) -> np.ndarray:
    """Upsample ``target_low`` to the size of ``guide_full`` following the edges of the guide (fast guided filter).

    Args:
        guide_low: float32 (h, w, C) the guide at processing resolution (the photo, downscaled).
        target_low: float32 (h, w, C) or (h, w) what to upsample (the rendered result, or a weight map).
        guide_full: float32 (H, W, C) the guide at full resolution.
        radius: window radius in processing-resolution pixels.
        eps: regularisation; larger = smoother, less guide detail.

    Returns:
        float32 (H, W, C) or (H, W) in [0, 1]: one channel per target channel. A single-channel target is guided
        by the guide's mean over channels.
    """
    guide_low = np.asarray(guide_low, dtype=np.float32)
    guide_full = np.asarray(guide_full, dtype=np.float32)
    target = np.asarray(target_low, dtype=np.float32)
    if guide_low.shape[:2] != target.shape[:2]:
        raise InputError(f"guide {guide_low.shape[:2]} and target {target.shape[:2]} differ in size")
    if target.ndim == 2:
        guide_low = guide_low.mean(axis=2) if guide_low.ndim == 3 else guide_low
        guide_full = guide_full.mean(axis=2) if guide_full.ndim == 3 else guide_full
    elif guide_low.shape != target.shape:
        raise InputError(f"a colour target {target.shape} needs a guide of the same shape, got {guide_low.shape}")
    a, b = _coefficients(guide_low, target, radius, eps)
    return _apply(a, b, np.ascontiguousarray(guide_full))


def finish_full_resolution(photo_full: np.ndarray, photo_low: np.ndarray, result_low: np.ndarray) -> np.ndarray:
    """The bokeh result at the photo's own size: guided upsampling, the sharp photo where it was in focus.

    Both steps are folded into one linear map per pixel, computed at processing resolution: with the guided
    filter's ``(a, b)`` and the in-focus weight ``w``, ``out = ((1 - w) a + w) * photo + (1 - w) b``. So on the
    focal plane (``w = 1``) the output *is* the full-resolution photo, and the full-resolution work is one
    upsampling of two coefficient images and a multiply-add.

    Args:
        photo_full: float32 (H, W, 3) sRGB in [0, 1], the photo at its own size.
        photo_low: float32 (h, w, 3), the same photo at processing resolution (what the method rendered).
        result_low: float32 (h, w, 3), the method's output for ``photo_low``.

    Returns:
        float32 (H, W, 3) in [0, 1].
    """
    if photo_low.shape != result_low.shape:
        raise InputError(f"result {result_low.shape} and processed photo {photo_low.shape} differ in size")
    photo_low = np.asarray(photo_low, dtype=np.float32)
    result_low = np.asarray(result_low, dtype=np.float32)
    if photo_full.shape[:2] == photo_low.shape[:2]:
        return result_low
    if photo_low.shape[0] * photo_low.shape[1] > COEFFICIENT_MAX_PIXELS:
        # The coefficients are smooth (box-averaged twice): a half-size grid costs a quarter and changes little.
        half = (max(1, photo_low.shape[1] // 2), max(1, photo_low.shape[0] // 2))
        photo_low = cv2.resize(photo_low, half, interpolation=cv2.INTER_AREA)
        result_low = cv2.resize(result_low, half, interpolation=cv2.INTER_AREA)
    a, b = _coefficients(photo_low, result_low, GUIDE_RADIUS, GUIDE_EPS)
    difference = np.abs(result_low - photo_low).max(axis=2)
    sharp = np.clip(2.0 - difference / SHARP_TOLERANCE, 0.0, 1.0)[..., None]  # 1 up to the tolerance, 0 at twice
    blur = np.repeat(1.0 - sharp, 3, axis=2)
    a = cv2.multiply(a, blur)
    a += sharp
    b = cv2.multiply(b, blur)
    return _apply(a, b, photo_full)
