"""Shared optics maths of the classical renderers: sRGB transfer, defocus radii and aperture kernels.

Pure NumPy functions, no I/O. The conventions follow the issue "Depth from DPT and the competing bokeh
renderers": disparity ``d`` in [0, 1] (near = 1), focus disparity ``d_f``, strength ``K`` = the largest blur
radius in pixels, signed defocus radius ``r = K * (d - d_f)`` (positive = in front of the focal plane).
"""

from __future__ import annotations

import functools

import numpy as np

from ..errors import InputError

__all__ = [
    "aperture_kernel",
    "aperture_sdf",
    "auto_focus_disparity",
    "check_aperture",
    "highlight_gain",
    "linear_to_srgb",
    "signed_radius",
    "srgb_to_linear",
]


def srgb_to_linear(image: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 sRGB decode of values in [0, 1] (float32 in, float32 out)."""
    x = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(image: np.ndarray) -> np.ndarray:
    """Inverse of :func:`srgb_to_linear`; input is clipped to [0, 1] first."""
    x = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1.0 / 2.4) - 0.055).astype(np.float32)


def signed_radius(disparity: np.ndarray, strength: float, focus_disparity: float) -> np.ndarray:
    """Signed circle-of-confusion radius in pixels, ``K * (d - d_f)``; positive in front of the focal plane."""
    return (float(strength) * (np.asarray(disparity, dtype=np.float32) - np.float32(focus_disparity))).astype(
        np.float32
    )


def auto_focus_disparity(disparity: np.ndarray) -> float:
    """Automatic focus: the disparity of the most prominent near subject.

    Rule (documented for the app): take the pixels whose disparity is in the top 30 % of the map's range
    (the near part of the scene), weight them by closeness to the image centre (a Gaussian with sigma =
    1/3 of the shorter side), and return their weighted median. For a portrait this is the person, for a
    flat map it is that flat value.
    """
    d = np.asarray(disparity, dtype=np.float32)
    low, high = float(d.min()), float(d.max())
    if high - low < 1e-6:
        return float(np.clip(high, 0.0, 1.0))
    height, width = d.shape
    ys = (np.arange(height, dtype=np.float32) - (height - 1) / 2) / (min(height, width) / 3)
    xs = (np.arange(width, dtype=np.float32) - (width - 1) / 2) / (min(height, width) / 3)
    weight = np.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2))
    near = d >= low + 0.7 * (high - low)
    values, weights = d[near], weight[near]
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    index = int(np.searchsorted(cumulative, cumulative[-1] / 2))
    return float(values[order][min(index, len(order) - 1)])


def check_aperture(blades: int, rotation_deg: float) -> tuple[int, float]:
    """Validate the aperture shape: ``blades`` 0 (disc) or 3..16 (regular polygon), finite rotation."""
    blades = int(blades)
    if blades != 0 and not 3 <= blades <= 16:
        raise InputError(f"blades must be 0 (round disc) or between 3 and 16, got {blades}")
    if not np.isfinite(rotation_deg):
        raise InputError(f"rotation_deg must be finite, got {rotation_deg}")
    return blades, float(rotation_deg)


def aperture_sdf(dx: np.ndarray, dy: np.ndarray, radius: float, blades: int, rotation_deg: float) -> np.ndarray:
    """Signed distance (pixels, negative inside) to an aperture of circumradius ``radius`` centred at 0.

    ``blades = 0`` is a disc; otherwise a regular polygon with that many sides whose vertices lie on the
    circle of ``radius``, rotated by ``rotation_deg`` (image y axis points down). For polygons the value
    is the largest edge-plane distance, exact on the edges and a close bound near the corners.
    """
    if blades == 0:
        return np.hypot(dx, dy) - radius
    apothem = radius * np.cos(np.pi / blades)
    angles = np.deg2rad(rotation_deg) + np.pi / blades + 2 * np.pi * np.arange(blades) / blades
    distances = [dx * np.cos(a) + dy * np.sin(a) for a in angles]
    return np.max(np.stack(distances), axis=0) - apothem


@functools.lru_cache(maxsize=512)
def _kernel_cached(radius_key: int, blades: int, rotation_key: int) -> np.ndarray:
    radius = radius_key / 1000.0
    rotation = rotation_key / 1000.0
    if radius < 0.5:
        return np.ones((1, 1), dtype=np.float64)
    half = int(np.ceil(radius + 0.5))
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    dy, dx = np.meshgrid(offsets, offsets, indexing="ij")
    coverage = np.clip(0.5 - aperture_sdf(dx, dy, radius, blades, rotation), 0.0, 1.0)
    kernel = coverage / coverage.sum()
    kernel.setflags(write=False)
    return kernel


def aperture_kernel(radius: float, blades: int = 0, rotation_deg: float = 0.0) -> np.ndarray:
    """Normalised (sum 1), anti-aliased aperture kernel of circumradius ``radius`` pixels (float64, odd size).

    Pixel coverage is ``clip(0.5 - sdf, 0, 1)`` (a one-pixel linear edge). A radius below 0.5 px is a
    single pixel, so pixels on the focal plane are left untouched.
    """
    blades, rotation_deg = check_aperture(blades, rotation_deg)
    return _kernel_cached(int(round(abs(float(radius)) * 1000)), blades, int(round(rotation_deg * 1000)))


# Highlight boost: a pixel is a highlight when its sRGB luma is in the top band (0.8 -> 1.0, smoothstep), and
# a *small* highlight when few of its neighbours are highlights too (the bright share of a window around it is
# below HIGHLIGHT_MAX_SHARE). Only small highlights are boosted: a specular glint or a street lamp blooms into
# a bokeh ball, while an overcast sky or a white wall (every neighbour bright) keeps its brightness.
HIGHLIGHT_MAX_SHARE = 0.3


def highlight_gain(image: np.ndarray, radius: np.ndarray, boost: float) -> np.ndarray:
    """Per-pixel linear-light gain of the highlight boost: ``1 + boost * bright * small * defocused``.

    Args:
        image: float32 (H, W, 3) sRGB in [0, 1].
        radius: float32 (H, W) signed defocus radius in pixels.
        boost: 0 = off; a small, fully defocused highlight is multiplied by ``1 + boost``.

    ``bright`` is a smoothstep of the luma from 0.8 to 1.0; ``small`` falls from 1 to 0 as the bright share of a
    window (half-size: half the largest defocus radius, 2 to 32 px) grows from 0 to :data:`HIGHLIGHT_MAX_SHARE`;
    ``defocused`` ramps from 0 to 1 between 1 and 2 px of blur radius, so the focal plane is never touched.

    Returns:
        float32 (H, W) gains >= 1 (all ones when ``boost`` is 0).
    """
    import cv2

    height, width = radius.shape
    if boost <= 0:
        return np.ones((height, width), np.float32)
    x = np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)
    luma = 0.2126 * x[..., 0] + 0.7152 * x[..., 1] + 0.0722 * x[..., 2]
    t = np.clip((luma - 0.8) / 0.2, 0.0, 1.0)
    bright = t * t * (3.0 - 2.0 * t)
    half = int(np.clip(round(0.5 * float(np.abs(radius).max(initial=0.0))), 2, 32))
    share = cv2.blur(bright, (2 * half + 1, 2 * half + 1), borderType=cv2.BORDER_REFLECT)
    small = np.clip(1.0 - share / HIGHLIGHT_MAX_SHARE, 0.0, 1.0)
    defocused = np.clip(np.abs(radius) - 1.0, 0.0, 1.0)
    return (1.0 + float(boost) * bright * small * small * defocused).astype(np.float32)
