"""Rendering a battle: both methods on one photo with ONE depth map, so only the methods differ.

A renderer is any object with ``methods() -> list[str]`` (the available ones) and
``render(photo, focus_xy, names) -> RenderedPair``. The Space passes its own (built on ``space/services.py``,
the same depth estimator, labelled fallback and finishing as its Render tab); :class:`BasicRenderer` is the
stand-alone one of ``python -m user_study serve``, built on ``bokeh_model`` alone.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

__all__ = ["BasicRenderer", "RenderedPair", "Renderer", "decode_photo", "png_bytes", "to_uint8"]


@dataclass
class RenderedPair:
    """The two renders (uint8 RGB, same size) in the order of ``names``, the depth's label and the parameters."""

    images: tuple[np.ndarray, np.ndarray]
    depth_source: str
    params: dict[str, dict[str, Any]] = field(default_factory=dict)


class Renderer(Protocol):
    """What the arena needs from a renderer."""

    def methods(self) -> list[str]: ...

    def render(self, photo: np.ndarray, focus_xy: tuple[int, int], names: tuple[str, str]) -> RenderedPair: ...


def to_uint8(image: np.ndarray) -> np.ndarray:
    """float [0, 1] (or uint8) RGB -> uint8 RGB."""
    if image.dtype == np.uint8:
        return image
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    """A metadata-free PNG of an RGB image."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def decode_photo(data: bytes, max_side: int, max_megapixels: float = 40.0) -> tuple[np.ndarray, tuple[int, int]]:
    """``(photo, (width, height))``: the upload as float32 RGB scaled to at most ``max_side``, and its own size.

    Raises:
        ValueError: Not an image this server can read, or too many pixels (the message says which).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            if width * height > max_megapixels * 1e6:
                raise ValueError(f"the photo is {width}x{height}; the arena takes up to {max_megapixels:g} MP")
            im.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale when that is enough
            rgb = im.convert("RGB")
    except (UnidentifiedImageError, Image.DecompressionBombError):
        raise ValueError("the upload is not an image this server can read (PNG, JPEG, WebP, ...)") from None
    except OSError as exc:
        raise ValueError(f"the photo could not be decoded (truncated or corrupt file?): {exc}") from None
    scale = min(1.0, max_side / max(rgb.size))
    if scale < 1.0:
        rgb = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))), Image.LANCZOS)
    return np.asarray(rgb, dtype=np.float32) / 255.0, (width, height)


class BasicRenderer:
    """Both methods from ``bokeh_model`` with one depth map: the depth model when installed, else the labelled
    approximate depth (subject mask from the focus point + ground-plane prior)."""

    def __init__(self, depth_model: str | None = None) -> None:
        self.depth_model = depth_model

    def methods(self) -> list[str]:
        from user_study.arena.pairing import available_methods

        return available_methods()

    def _depth(self, photo: np.ndarray, focus_xy: tuple[int, int]) -> tuple[np.ndarray, str]:
        from bokeh_model.depth import (
            DEFAULT_DEPTH_MODEL,
            approximate_depth,
            depth_model_status,
            get_depth_estimator,
        )

        model = self.depth_model or DEFAULT_DEPTH_MODEL
        if depth_model_status(model)[0]:
            return get_depth_estimator(model, "auto").estimate(photo), f"depth model {model}"
        return approximate_depth(photo, focus_xy), "APPROXIMATE depth (no learned depth model installed)"

    def render(self, photo: np.ndarray, focus_xy: tuple[int, int], names: tuple[str, str]) -> RenderedPair:
        from bokeh_model.depth import focus_disparity_at
        from bokeh_model.registry import create_method

        depth, label = self._depth(photo, focus_xy)
        images, params = [], {}
        for name in names:
            method = create_method(name)
            given: dict[str, Any] = {}
            if "focus_disparity" in method.param_names():
                given["focus_disparity"] = round(focus_disparity_at(depth, *focus_xy), 4)
            params[name] = {k: v for k, v in method.validate_params(given).items() if _jsonable(v)}
            images.append(to_uint8(method(photo, depth, **given)))
        return RenderedPair((images[0], images[1]), label, params)


def _jsonable(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))
