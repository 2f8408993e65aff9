"""``disk``: naive per-pixel disc blur without any occlusion handling (the paper's description of the Pixel).

Every pixel is spread over a disc of radius ``K * |d - d_f|`` on the sRGB values and all discs are simply
summed and normalised (a gather-free scatter). Without a depth test, a blurred background smears into a
sharp foreground and highlights do not bloom: it is the honest "cheap" baseline against ``lens``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..registry import Method, register_method
from ._optics import signed_radius
from .lens import depth_blur_params, render_on, resolve_focus

__all__ = ["DiskMethod"]


@register_method("disk")
class DiskMethod(Method):
    """Naive disc blur: per-pixel disc scatter, summed, no occlusion, no linear light."""

    name = "disk"
    description = "Naive disc blur from depth without occlusion handling (as the paper attributes to the Pixel)."
    needs_depth = True
    params = depth_blur_params(24.0)

    def __init__(self, device: str = "auto") -> None:
        self.device = device

    def render(self, image: np.ndarray, depth: np.ndarray | None, **params: Any) -> np.ndarray:
        if depth is None:
            raise InputError("method 'disk' needs a depth map")
        focus = resolve_focus(depth, params["focus_disparity"])
        radius = signed_radius(depth, params["strength"], focus)
        return render_on(self.device, image, radius, additive=True, linear_light=False)
