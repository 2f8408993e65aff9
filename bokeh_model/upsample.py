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
   full-resolution photo itself is used, with a weight that is itself guided-upsampled so that it follows
   the photo's edges.

Everything is O(pixels) with OpenCV box filters and resizes.
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


def _box(image: np.ndarray, radius: int) -> np.ndarray:
    return cv2.blur(image, (2 * radius + 1, 2 * radius + 1), borderType=cv2.BORDER_REFLECT)


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


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
        float32 (H, W, C) or (H, W): one channel per target channel. A single-channel target is guided by the
        guide's mean over channels.
    """
    guide_low = np.asarray(guide_low, dtype=np.float32)
    guide_full = np.asarray(guide_full, dtype=np.float32)
    target = np.asarray(target_low, dtype=np.float32)
    if guide_low.shape[:2] != target.shape[:2]:
        raise InputError(f"guide {guide_low.shape[:2]} and target {target.shape[:2]} differ in size")
    single = target.ndim == 2
    if single:
        guide_low = guide_low.mean(axis=2) if guide_low.ndim == 3 else guide_low
        guide_full = guide_full.mean(axis=2) if guide_full.ndim == 3 else guide_full
    elif guide_low.shape != target.shape:
        raise InputError(f"a colour target {target.shape} needs a guide of the same shape, got {guide_low.shape}")
    mean_i = _box(guide_low, radius)
    mean_p = _box(target, radius)
    cov_ip = _box(guide_low * target, radius) - mean_i * mean_p
    var_i = _box(guide_low * guide_low, radius) - mean_i * mean_i
    a = cov_ip / (var_i + np.float32(eps))
    b = mean_p - a * mean_i
    size = guide_full.shape[:2]
    mean_a = _resize(_box(a, radius), size)
    mean_b = _resize(_box(b, radius), size)
    return mean_a * guide_full + mean_b


def finish_full_resolution(photo_full: np.ndarray, photo_low: np.ndarray, result_low: np.ndarray) -> np.ndarray:
    """The bokeh result at the photo's own size: guided upsampling, then the sharp photo where it was in focus.

    Args:
        photo_full: float32 (H, W, 3) sRGB in [0, 1], the photo at its own size.
        photo_low: float32 (h, w, 3), the same photo at processing resolution (what the method rendered).
        result_low: float32 (h, w, 3), the method's output for ``photo_low``.

    Returns:
        float32 (H, W, 3) in [0, 1].
    """
    if photo_low.shape != result_low.shape:
        raise InputError(f"result {result_low.shape} and processed photo {photo_low.shape} differ in size")
    if photo_full.shape[:2] == photo_low.shape[:2]:
        return np.asarray(result_low, dtype=np.float32)
    photo_full = np.asarray(photo_full, dtype=np.float32)
    out = guided_upsample(photo_low, result_low, photo_full)
    difference = np.abs(np.asarray(result_low, np.float32) - np.asarray(photo_low, np.float32)).max(axis=2)
    sharp_low = np.clip(2.0 - difference / SHARP_TOLERANCE, 0.0, 1.0)  # 1 up to the tolerance, 0 from twice it
    sharp = np.clip(guided_upsample(photo_low, sharp_low, photo_full), 0.0, 1.0)[..., None]
    out = out + sharp * (photo_full - out)  # in place of sharp * photo + (1 - sharp) * out: one temporary less
    return np.clip(out, 0.0, 1.0, out=out)
