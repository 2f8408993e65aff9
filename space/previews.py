"""On a CPU, the learned methods other than PyNET render on a preview and get the full-resolution finish.

Bokehlicious at 1024x1536 takes tens of seconds on 2 cores (``benchmarks/render_speed.py``), BokehMe's scatter
costs N·K per photo and its IUNet runs at full size. So on a machine without CUDA they run at
``SpaceSettings.cpu_preview_side`` (long side, default 768 px), labelled on screen, and the guided finish brings the
result to the photo's size. PyNET has its own rule (its trained scale, :mod:`bokeh_model.pynet_scale`).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

__all__ = ["BOKEHME_METHODS", "CPU_PREVIEW_METHODS", "cpu_preview"]

CPU_PREVIEW_METHODS = {"bokehlicious": "Bokehlicious", "bokehme": "BokehMe", "bokehme_classical": "BokehMe classical"}
BOKEHME_METHODS = ("bokehme", "bokehme_classical")  # their blur amount K is in pixels: scaled with the preview


def _downscale(photo: np.ndarray, depth: np.ndarray | None, side: int) -> tuple[np.ndarray, np.ndarray | None]:
    height, width = photo.shape[:2]
    scale = side / max(height, width)
    size = (max(2, round(width * scale)), max(2, round(height * scale)))
    small = np.clip(cv2.resize(photo, size, interpolation=cv2.INTER_AREA), 0.0, 1.0)
    small_depth = None if depth is None else cv2.resize(depth, size, interpolation=cv2.INTER_AREA)
    return small, small_depth


def cpu_preview(
    method_name: str, method: Any, photo: np.ndarray, depth: Any, params: dict[str, Any], side: int
) -> tuple[np.ndarray, np.ndarray | None, str | None]:
    """``(source, source depth, note)``: the photo (and depth map) the method renders and the line saying so.

    ``depth`` is the Space's ``DepthResult`` or ``None``; ``params`` is updated in place (BokehMe's K scaled so that
    the blur keeps its size in the finished photo). Methods not listed, or photos already small, are unchanged.
    """
    depth_map = None if depth is None else depth.depth
    label = CPU_PREVIEW_METHODS.get(method_name)
    needs_depth = method_name in BOKEHME_METHODS
    if not label or not 0 < side < max(photo.shape[:2]) or (needs_depth and depth_map is None):
        return photo, depth_map, None
    source, source_depth = _downscale(photo, depth_map, side)
    scaled_k = ""
    if needs_depth:
        strength = params.get("strength", method.param_spec("strength").default)
        params["strength"] = float(strength) * max(source.shape[:2]) / max(photo.shape[:2])
        scaled_k = f" (blur amount K scaled to {params['strength']:.1f})"
    note = (
        f"{label} preview: computed at {source.shape[1]}x{source.shape[0]} px on this CPU{scaled_k}, then brought "
        f"to full size by guided upsampling; use a GPU or the CLI for {label} at full resolution."
    )
    return source, source_depth, note
