"""Gradio controls built from a method's declared ParamSpecs, and the conversions around them."""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import cv2
import gradio as gr
import numpy as np
from PIL import Image

from bokeh_model import InputError
from bokeh_model.registry import ParamSpec

__all__ = [
    "MAIN_PARAMS",
    "UI_HIDDEN_PARAMS",
    "control_for",
    "depth_preview",
    "export_image",
    "parse_params",
    "photo_input",
]

_EXPORT_DIR = Path(tempfile.gettempdir()) / "bokeh-space-outputs"
_EXPORT_MAX_AGE_S = 15 * 60
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


_PATH_ONLY_IDS: set[str] = set()  # elem_ids of the photo_input components
_IMAGE_PREPROCESS = gr.Image.preprocess


def _preprocess(self: gr.Image, payload: Any) -> Any:
    if getattr(self, "elem_id", None) in _PATH_ONLY_IDS:
        return None if payload is None else str(payload.path)
    return _IMAGE_PREPROCESS(self, payload)


def photo_input(**kwargs: Any) -> gr.Image:
    """A ``gr.Image`` that hands the uploaded file's path to the app without decoding it first.

    Gradio's own pre-processing opens uploads with PIL and answers a broken file with a generic error;
    passing the path lets :func:`bokeh_model.load_image` name the problem (truncated, not an image, too
    large, odd mode) in the page. The path-only pre-processing is keyed on ``elem_id`` (required) in a wrapper of
    ``gr.Image.preprocess``, not set on the instance: any handler that returns an update (``gr.skip()``) to the
    component makes Gradio build a fresh ``gr.Image`` for the session, and a per-instance method was lost then
    (the next broken upload failed in Gradio's own decoding). A subclass would make Gradio write a ``.pyi`` stub
    into the source tree.
    """
    if gr.Image.preprocess is not _preprocess:
        gr.Image.preprocess = _preprocess  # type: ignore[method-assign]
    _PATH_ONLY_IDS.add(kwargs["elem_id"])
    return gr.Image(type="filepath", **kwargs)


# Set by clicking on the photo rather than with a slider.
UI_HIDDEN_PARAMS = {"focus_disparity"}
# Shown beside the photo; every other parameter sits in the "Advanced" accordion. Bokehlicious has no strength:
# its aperture is its one main control (in Advanced, its card showed no control at all beside the photo).
MAIN_PARAMS = {"strength", "aperture"}


def _choice_label(name: str, value: Any) -> str:
    if name == "blades":
        return "round (disc)" if value == 0 else f"{value} blades"
    return str(value)


def control_for(method: str, spec: ParamSpec) -> gr.components.Component:
    """One input component for ``spec``; ``elem_id`` is ``f"{method}-{name}"`` for tests and CSS."""
    common: dict[str, Any] = {
        "label": spec.display_label,
        "info": spec.help or None,
        "elem_id": f"{method}-{spec.name}",
        "interactive": True,
    }
    if spec.kind == "bool":
        return gr.Checkbox(value=bool(spec.default), **common)
    if spec.kind == "choice":  # only the values the method accepts (e.g. blades: round or 3-16, never 1 or 2)
        choices = [(_choice_label(spec.name, value), value) for value in spec.choices]
        return gr.Dropdown(choices=choices, value=spec.default, **common)
    if spec.kind in {"float", "int"} and spec.min is not None and spec.max is not None and spec.default is not None:
        step = spec.step or (1 if spec.kind == "int" else (spec.max - spec.min) / 100)
        return gr.Slider(minimum=spec.min, maximum=spec.max, step=step, value=spec.default, **common)
    if spec.kind in {"float", "int"}:
        return gr.Number(value=spec.default, precision=0 if spec.kind == "int" else None, **common)
    return gr.Textbox(value="" if spec.default is None else str(spec.default), **common)


def parse_params(text: str | None) -> dict[str, Any]:
    """The ``params`` argument of the API: a JSON object of method parameters (may be empty)."""
    if text is None or not str(text).strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f'params must be a JSON object such as {{"strength": 24}}: {exc}') from None
    if not isinstance(value, dict):
        raise InputError(f"params must be a JSON object, got {type(value).__name__}")
    return value


def depth_preview(depth: np.ndarray) -> np.ndarray:
    """Disparity as an 8-bit grayscale picture (near = bright), as the EBB! depth maps look."""
    return np.round(np.clip(depth, 0.0, 1.0) * 255.0).astype(np.uint8)


def export_image(image: np.ndarray, kind: str = "png", name: str | None = None) -> str:
    """Write an output image to a temporary file and return its path, for Gradio to serve.

    Encoding ourselves is much faster than Gradio's defaults for a 1-megapixel result (measured: PNG at
    compression level 1 in 0.12 s instead of 0.52 s; JPEG q92 for previews in 7 ms instead of WebP's 0.17 s).
    Files older than 15 minutes are removed on the way (Gradio keeps its own copy).

    Args:
        image: float (H, W, 3) in [0, 1] or uint8 (H, W[, 3]).
        kind: ``"png"`` (lossless), ``"download"`` (JPEG q95 without chroma subsampling, for large results)
            or ``"jpeg"`` (previews).
        name: the file's name without extension (what a download is saved as, e.g. ``chelsea_lens``); each
            file gets a folder of its own, so equal names never collide. Default: a random id.
    """
    _EXPORT_DIR.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in _EXPORT_DIR.iterdir():
        try:
            if now - old.stat().st_mtime > _EXPORT_MAX_AGE_S:
                shutil.rmtree(old) if old.is_dir() else old.unlink()
        except OSError:
            pass  # another request removed it first
    if image.dtype != np.uint8:  # OpenCV rounds and saturates in one pass: 10x faster than NumPy on 12 MP
        image = cv2.convertScaleAbs(np.clip(image, 0.0, 1.0, dtype=np.float32), alpha=255.0)
    picture = Image.fromarray(image)
    suffix = "png" if kind == "png" else "jpg"
    if name:
        folder = _EXPORT_DIR / uuid.uuid4().hex  # unique: nobody reads it yet
        folder.mkdir()
        path = folder / f"{_SAFE_NAME.sub('_', name).strip('._')[:120] or 'image'}.{suffix}"
    else:
        path = _EXPORT_DIR / f"{uuid.uuid4().hex}.{suffix}"
    if kind == "png":
        picture.save(path, format="PNG", compress_level=1)
    elif kind == "download":  # full-resolution photos: visually lossless, a fraction of a PNG's size and time
        picture.convert("RGB").save(path, format="JPEG", quality=95, subsampling=0)
    else:
        picture.convert("RGB").save(path, format="JPEG", quality=92)
    return str(path)
