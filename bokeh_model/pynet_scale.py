"""PyNET at the scale it was trained on, for photos of any size (the app and ``bokeh-model render``).

PyNET-Bokeh learned from EBB! photos, 1536x1024, which it takes halved (a 768x512 input, Ignatov et al.,
CVPRW 2020). Its blur is sized in pixels of that scale: run on a 768-px preview, its bokeh is half as wide
relative to the scene; on a 12 MP photo at 2048 px, 4/3 as wide. So a photo of any size is resized so that its
long side is :data:`PYNET_TRAINED_SIDE` (a 3:2 photo becomes 1536x1024 and PyNET's input 768x512), rendered
there, and brought to the photo's own size by the guided finish (:func:`bokeh_model.upsample.finish_full_resolution`:
edge-aware upsampling, the sharp photo where it was in focus).

A smaller side is a faster *preview*: an explicit choice (PyNET's ``max_side`` parameter), labelled as such.
The evaluation does not use this module: it scores EBB! at the dataset's own size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from .errors import InputError

__all__ = ["PYNET_TRAINED_SIDE", "ScaledRender", "render_pynet_at_scale", "resize_to_side", "trained_scale_size"]

PYNET_TRAINED_SIDE = 1536  # long side of EBB! photos; PyNET takes them halved (768 px)


def trained_scale_size(height: int, width: int, side: int = PYNET_TRAINED_SIDE) -> tuple[int, int]:
    """``(h, w)`` of a ``height`` x ``width`` photo resized so that its long side is ``side`` (aspect kept).

    >>> trained_scale_size(2828, 4243)
    (1024, 1536)
    """
    if side < 2:
        raise InputError(f"PyNET's working size must be at least 2 px, got {side}")
    scale = side / max(height, width)
    return max(2, round(height * scale)), max(2, round(width * scale))


def resize_to_side(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a float (H, W[, C]) array to ``size`` = (h, w): area averaging down, bicubic up, clipped to [0, 1]."""
    height, width = array.shape[:2]
    if (height, width) == tuple(size):
        return array
    shrink = size[0] * size[1] < height * width
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    resized = cv2.resize(np.asarray(array, dtype=np.float32), (size[1], size[0]), interpolation=interpolation)
    return np.clip(resized, 0.0, 1.0)


@dataclass
class ScaledRender:
    """A PyNET render at a chosen scale, brought to the photo's size."""

    image: np.ndarray | None  # float32 (H, W, 3) at the photo's size (None when the caller finishes it)
    scaled: np.ndarray  # the photo as PyNET's caller gave it (long side ``side``)
    rendered: np.ndarray  # PyNET's output at that size
    side: int  # long side PyNET's caller ran at
    trained: bool  # True: PyNET's trained scale; False: a preview (or larger) chosen explicitly
    input_size: tuple[int, int]  # (w, h) of PyNET's own input (half of ``scaled``)

    def note(self, photo_size: tuple[int, int] | None = None) -> str:
        """One line for the user: which scale ran and how the result got to the photo's size ((h, w); default:
        the size of :attr:`image`)."""
        height, width = photo_size or (self.image if self.image is not None else self.scaled).shape[:2]
        s_height, s_width = self.scaled.shape[:2]
        w, h = self.input_size
        finish = (
            f", then brought to the photo's {width}x{height} px by guided upsampling"
            if (s_height, s_width) != (height, width)
            else ""
        )
        if self.trained:
            return f"PyNET ran at its trained scale: photo at {s_width}x{s_height} px, network input {w}x{h}{finish}."
        return (
            f"PyNET PREVIEW (chosen): photo at {s_width}x{s_height} px, network input {w}x{h}, not PyNET's trained "
            f"scale (long side {PYNET_TRAINED_SIDE} px), so the blur is sized differently{finish}."
        )


def render_pynet_at_scale(
    method: Any,
    image: np.ndarray,
    depth: np.ndarray | None,
    params: dict[str, Any],
    *,
    base: np.ndarray | None = None,
    base_depth: np.ndarray | None = None,
    finish: bool = True,
) -> ScaledRender:
    """Render ``image`` with a PyNET method at its trained scale (or at ``params["max_side"]``, a preview) and bring
    the result to ``image``'s size with the guided finish.

    Args:
        method: the registered ``pynet`` method (called as ``method(photo, depth, **params)``).
        image: float32 (H, W, 3) in [0, 1], the photo at the size the result must have.
        depth: its disparity map (any size, near = 1), or ``None`` for an RGB-only model.
        params: PyNET's render parameters; ``max_side`` > 0 chooses a preview side instead of the trained scale.
        base, base_depth: a smaller copy of the same photo (and its depth) to resize from when it is at least as
            large as the working size (cheaper than resizing ``image``; the app's processing copy).
        finish: bring the result to ``image``'s size here (``False``: the caller does, e.g. to several sizes).
    """
    from .upsample import finish_full_resolution

    chosen = int(params.get("max_side") or 0)
    side = chosen or PYNET_TRAINED_SIDE
    size = trained_scale_size(*image.shape[:2], side=side)
    source, source_depth = image, depth
    if base is not None and max(base.shape[:2]) >= side:
        source, source_depth = base, base_depth if base_depth is not None else depth
    scaled = resize_to_side(source, size)
    scaled_depth = None if source_depth is None else resize_to_side(np.asarray(source_depth, np.float32), size)
    rendered = method(scaled, scaled_depth, **{**params, "max_side": 0})
    result = rendered
    if not finish:
        result = None
    elif scaled.shape[:2] != image.shape[:2]:
        result = finish_full_resolution(image, scaled, rendered)
    half = (max(1, round(size[1] / 2)), max(1, round(size[0] / 2)))
    return ScaledRender(result, scaled, rendered, side, side == PYNET_TRAINED_SIDE, half)
