"""``lens``: a physically based thin-lens bokeh renderer, occlusion-aware, on the CPU and GPU.

The image model (shared by the slow reference and the fast renderer):

1. Work in linear light (sRGB decode), optionally boosting out-of-focus highlights.
2. Each pixel ``q`` has a signed defocus radius ``r_q = K * (d_q - d_f)`` (positive = in front of the focal
   plane) and spreads its colour over an aperture kernel (disc or regular polygon) of radius ``|r_q|``
   whose weights sum to one, so energy is conserved.
3. Pixels are grouped into *defocus layers* by their rounded signed radius ``round(r_q)`` (one layer per
   pixel of blur). Inside a layer the spread colours and their coverage simply add up (one surface does
   not occlude itself). Layers are composited front to back with the *over* operator:
   ``out += T * C_layer`` and ``T *= 1 - A_layer``, where ``A_layer`` is the layer's coverage (clipped to
   1). So a sharp foreground hides what lies behind it while a blurred foreground, whose coverage fades
   out over its blur radius, spreads over the layers behind it.
4. The composite is divided by its total coverage ``1 - T``: where a blurred background is cut by a
   sharper foreground, the background is renormalised instead of darkening (no halo), and flat fields
   keep their mean exactly.
5. Back to sRGB.

:func:`render_lens_reference` evaluates this model literally (per-pixel scatter of each pixel's exact
kernel), which is slow and meant for small images, tests and synthetic targets. The registered ``lens``
method evaluates the same model fast (see :mod:`bokeh_model.methods._lens_fast`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..registry import Method, ParamSpec, check_depth_array, check_image_array, register_method
from ._optics import (
    aperture_kernel,
    check_aperture,
    highlight_gain,
    linear_to_srgb,
    signed_radius,
    srgb_to_linear,
)

__all__ = [
    "APERTURE_BLADES",
    "REFERENCE_MAX_PIXELS",
    "LensMethod",
    "depth_blur_params",
    "render_on",
    "render_lens_reference",
    "reference_fingerprint",
    "resolve_focus",
    "warm_up",
]

REFERENCE_MAX_PIXELS = 256 * 256
# What check_aperture accepts: a round disc (0) or a polygon of 3 to 16 blades (1 and 2 are not apertures).
APERTURE_BLADES = (0, *range(3, 17))


def _check_common(
    image: np.ndarray, disparity: np.ndarray, strength: float, focus_disparity: float
) -> tuple[np.ndarray, np.ndarray]:
    image = check_image_array(image)
    disparity = check_depth_array(disparity)
    if disparity.shape != image.shape[:2]:
        raise InputError(f"disparity shape {disparity.shape} differs from the image's {image.shape[:2]}")
    if not np.isfinite(strength) or strength < 0:
        raise InputError(f"strength must be a finite number >= 0, got {strength}")
    if not np.isfinite(focus_disparity) or not 0.0 <= focus_disparity <= 1.0:
        raise InputError(f"focus_disparity must be in [0, 1], got {focus_disparity}")
    return image, disparity


def render_lens_reference(
    image: np.ndarray,
    disparity: np.ndarray,
    *,
    strength: float,
    focus_disparity: float,
    blades: int = 0,
    rotation_deg: float = 0.0,
    linear_light: bool = True,
    highlight_boost: float = 0.0,
    max_pixels: int = REFERENCE_MAX_PIXELS,
) -> np.ndarray:
    """Slow, exact evaluation of the layered thin-lens model (module docstring) by direct scatter.

    Every pixel scatters its own anti-aliased aperture kernel of radius ``strength * |d - focus_disparity|``
    (no quantisation of the radius); layers are the rounded signed radii, composited front to back.
    Cost is O(H * W * K^2): meant for images up to :data:`REFERENCE_MAX_PIXELS` pixels; a caller that accepts the
    cost (the synthetic benchmark at a size its user asked for) raises the limit with ``max_pixels``.

    Args:
        image: float32 (H, W, 3) sRGB in [0, 1].
        disparity: float32 (H, W) in [0, 1], near = 1.
        strength: K, the blur radius in pixels of a pixel at disparity distance 1 from the focal plane.
        focus_disparity: d_f in [0, 1]; pixels at this disparity stay sharp.
        blades: 0 for a round aperture, else the number of sides of a regular polygon (3..16).
        rotation_deg: rotation of the polygon in degrees.
        linear_light: scatter in linear light (sRGB decode/encode) rather than on sRGB values.
        highlight_boost: gain of small defocused highlights (:func:`~bokeh_model.methods._optics.highlight_gain`).
        max_pixels: the largest image (H * W) accepted.

    Returns:
        float32 (H, W, 3) sRGB in [0, 1].

    Raises:
        InputError: bad shapes or values, or an image above ``max_pixels``.
    """
    image, disparity = _check_common(image, disparity, strength, focus_disparity)
    blades, rotation_deg = check_aperture(blades, rotation_deg)
    height, width = disparity.shape
    if height * width > max_pixels:
        raise InputError(
            f"render_lens_reference is an O(N K^2) direct scatter for small images; {width}x{height} is above "
            f"{max_pixels} pixels. Use create_method('lens') for large images."
        )
    radius = signed_radius(disparity, strength, focus_disparity)
    gain = highlight_gain(image, radius, highlight_boost).astype(np.float64)[..., None]
    colour = (srgb_to_linear(image).astype(np.float64) if linear_light else image.astype(np.float64)) * gain
    radius = radius.astype(np.float64)
    layer_of = np.rint(radius).astype(np.int64)
    out = np.zeros((height, width, 3))
    transmittance = np.ones((height, width))
    for layer in np.unique(layer_of)[::-1]:  # nearest (largest signed radius) first
        acc_colour = np.zeros((height, width, 3))
        acc_alpha = np.zeros((height, width))
        for y, x in zip(*np.nonzero(layer_of == layer), strict=True):
            kernel = aperture_kernel(abs(radius[y, x]), blades, rotation_deg)
            half = kernel.shape[0] // 2
            y0, y1 = max(0, y - half), min(height, y + half + 1)
            x0, x1 = max(0, x - half), min(width, x + half + 1)
            part = kernel[y0 - (y - half) : y1 - (y - half), x0 - (x - half) : x1 - (x - half)]
            acc_alpha[y0:y1, x0:x1] += part
            acc_colour[y0:y1, x0:x1] += part[..., None] * colour[y, x]
        scale = 1.0 / np.maximum(acc_alpha, 1.0)  # a layer covers a pixel at most once
        out += (transmittance * scale)[..., None] * acc_colour
        transmittance *= 1.0 - acc_alpha * scale
    out /= np.maximum(1.0 - transmittance, 1e-12)[..., None]
    out = out.astype(np.float32)
    return linear_to_srgb(out) if linear_light else np.clip(out, 0.0, 1.0)


# The focus parameter every depth-driven method shares (lens, gaussian, disk, BokehMe); the app sets it by a click.
FOCUS_DISPARITY = ParamSpec(
    "focus_disparity",
    "float",
    None,
    min=0.0,
    max=1.0,
    step=0.01,
    help="Disparity in [0, 1] (near = 1) that stays sharp; empty = automatic: the weighted median "
    "disparity of the nearest 30 percent of the depth range, weighted towards the image centre.",
    label="focus disparity",
)


def depth_blur_params(default_strength: float) -> tuple[ParamSpec, ...]:
    """The ``strength`` and ``focus_disparity`` parameters every depth-driven blur shares (lens, gaussian, disk)."""
    return (
        ParamSpec(
            "strength",
            "float",
            default_strength,
            min=0.0,
            max=64.0,
            step=1.0,
            help="K: blur radius in pixels of the output image for the nearest or farthest possible point "
            "(radius = K * |d - d_focus|).",
            label="blur strength (px)",
        ),
        FOCUS_DISPARITY,
    )


def resolve_focus(depth: np.ndarray, focus_disparity: float | None) -> float:
    """The focus disparity to use: the given value, or the automatic rule of :func:`auto_focus_disparity`."""
    from ._optics import auto_focus_disparity

    return auto_focus_disparity(depth) if focus_disparity is None else float(focus_disparity)


def render_on(device: str, image: np.ndarray, radius: np.ndarray, **kwargs: Any) -> np.ndarray:
    """sRGB photo -> sRGB bokeh with the layered renderer where ``device`` says.

    CUDA runs the batched PyTorch/FFT implementation; the CPU runs the compiled Numba kernels. Keyword
    arguments are those of :func:`bokeh_model.methods._lens_fast.render_image`.
    """
    from ..device import resolve_device

    resolved = resolve_device(device)
    if resolved.type == "cuda":
        from ._lens_torch import render_image_torch

        return render_image_torch(image, radius, device=resolved, **kwargs)
    from ._lens_fast import render_image

    return render_image(image, radius, **kwargs)


def reference_fingerprint() -> str:
    """SHA-256 of the source of the exact lens model (this module and its optics), for caches of its renders.

    The synthetic benchmark keys its rendered targets on it, so a change to the model invalidates them.
    """
    import hashlib
    import inspect
    import sys

    from . import _optics

    source = inspect.getsource(sys.modules[__name__])
    return hashlib.sha256((source + inspect.getsource(_optics)).encode()).hexdigest()


def warm_up() -> None:
    """Compile (or load from Numba's on-disk cache) the CPU kernels of the lens renderer; call once at app start."""
    from ._lens_fast import warm_up as warm_up_kernels

    warm_up_kernels()


@register_method("lens")
class LensMethod(Method):
    """Thin-lens bokeh: occlusion-aware layered scatter in linear light with a disc or polygon aperture."""

    name = "lens"
    description = (
        "Physically based thin-lens blur from depth: linear light, disc or polygonal aperture, occlusion-aware "
        "layered compositing (CPU and GPU)."
    )
    needs_depth = True
    params = (
        *depth_blur_params(24.0),
        ParamSpec(
            "blades",
            "choice",
            0,
            choices=APERTURE_BLADES,
            help="Aperture shape: 0 = round disc, 3..16 = regular polygon with that many blades.",
            label="aperture blades",
        ),
        ParamSpec(
            "rotation_deg",
            "float",
            0.0,
            min=0.0,
            max=360.0,
            step=1.0,
            help="Rotation of a polygonal aperture in degrees.",
            label="aperture rotation",
        ),
        ParamSpec(
            "highlight_boost",
            "float",
            1.0,
            min=0.0,
            max=8.0,
            step=0.1,
            help="Extra brightness for small out-of-focus highlights (sRGB luma > 0.8, few bright neighbours) so "
            "they bloom into bokeh balls; large bright areas such as a sky are left alone; 0 = off.",
            label="highlight boost",
        ),
        ParamSpec(
            "linear_light",
            "bool",
            True,
            help="Blur in linear light (sRGB decode/encode), as a lens does; off = blur the sRGB values.",
            label="linear light",
        ),
    )

    def __init__(self, device: str = "auto") -> None:
        self.device = device

    def render(self, image: np.ndarray, depth: np.ndarray | None, **params: Any) -> np.ndarray:
        if depth is None:
            raise InputError("method 'lens' needs a depth map")
        focus = resolve_focus(depth, params["focus_disparity"])
        blades, rotation = check_aperture(params["blades"], params["rotation_deg"])
        return render_on(
            self.device,
            image,
            signed_radius(depth, params["strength"], focus),
            blades=blades,
            rotation_deg=rotation,
            linear_light=params["linear_light"],
            highlight_boost=params["highlight_boost"],
        )
