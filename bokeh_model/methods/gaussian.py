"""``gaussian``: the "current solutions" baseline of the paper's introduction.

A soft in-focus mask from depth (pixels within ``focus_range`` of the focus disparity are sharp, fading out
over ``feather``) keeps the subject, and everything else is replaced by one Gaussian-blurred copy of the
photo (sigma = strength / 2, so the visible blur radius is about ``strength``). No per-depth blur, no
occlusion handling, no highlights.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ..errors import InputError
from ..registry import Method, ParamSpec, register_method
from .lens import depth_blur_params, resolve_focus

__all__ = ["GaussianMethod", "gaussian_blur", "render_gaussian"]


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; for sigma above 4 px it runs on a copy downscaled by ``floor(sigma / 4)`` (area) and is
    upscaled back (bilinear), which keeps the look and costs about 1/factor^3."""
    height, width = image.shape[:2]
    factor = max(1, min(int(sigma // 4), height // 4, width // 4))
    if factor == 1:
        return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
    small = cv2.resize(image, (max(1, width // factor), max(1, height // factor)), interpolation=cv2.INTER_AREA)
    small_sigma = float(np.sqrt(max(sigma**2 - factor**2 / 4.0, 0.25))) / factor
    small = cv2.GaussianBlur(small, (0, 0), sigmaX=small_sigma, borderType=cv2.BORDER_REFLECT)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def render_gaussian(
    image: np.ndarray,
    disparity: np.ndarray,
    *,
    strength: float,
    focus_disparity: float,
    focus_range: float = 0.1,
    feather: float = 0.1,
) -> np.ndarray:
    """Blend the photo with its Gaussian blur through a soft depth mask (float32 (H, W, 3) in [0, 1])."""
    if strength <= 0:
        return image.copy()
    blurred = gaussian_blur(image, strength / 2.0)
    distance = np.abs(disparity - np.float32(focus_disparity))
    if feather > 0:
        t = np.clip((distance - focus_range) / feather, 0.0, 1.0)
        sharp = 1.0 - t * t * (3 - 2 * t)
    else:
        sharp = (distance <= focus_range).astype(np.float32)
    sharp = sharp.astype(np.float32)[..., None]
    return sharp * image + (1.0 - sharp) * blurred


@register_method("gaussian")
class GaussianMethod(Method):
    """Soft depth mask + one Gaussian-blurred background."""

    name = "gaussian"
    description = "Baseline: soft in-focus mask from depth over a Gaussian-blurred background."
    needs_depth = True
    params = (
        *depth_blur_params(24.0),
        ParamSpec(
            "focus_range",
            "float",
            0.1,
            min=0.0,
            max=1.0,
            step=0.01,
            help="Disparities within this distance of the focus stay fully sharp.",
            label="in-focus range",
        ),
        ParamSpec(
            "feather",
            "float",
            0.1,
            min=0.0,
            max=1.0,
            step=0.01,
            help="Width (in disparity) of the transition from sharp to blurred.",
        ),
    )

    def __init__(self, device: str = "auto") -> None:
        self.device = device

    def render(self, image: np.ndarray, depth: np.ndarray | None, **params: Any) -> np.ndarray:
        if depth is None:
            raise InputError("method 'gaussian' needs a depth map")
        focus = resolve_focus(depth, params["focus_disparity"])
        return render_gaussian(
            image,
            depth,
            strength=params["strength"],
            focus_disparity=focus,
            focus_range=params["focus_range"],
            feather=params["feather"],
        )
