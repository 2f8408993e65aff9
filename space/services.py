"""Library calls behind the app: one place that composes bokeh_model, evaluation and user_study.

Everything here works on arrays and returns dataclasses; the tab modules only convert UI values.
Heavy objects (PyNET, the depth model) are created once per process and shared by all users.
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from bokeh_model import InputError, create_method, list_methods, load_image
from bokeh_model.depth import approximate_depth, depth_model_status, focus_disparity_at, get_depth_estimator
from bokeh_model.images import ImageSource, load_depth, resize_array
from bokeh_model.pynet import weights_status
from bokeh_model.registry import Method
from evaluation.metrics import lpips_status

from .config import SpaceSettings
from .fetching import on_gpu

__all__ = [
    "DEPTH_SOURCES",
    "DepthResult",
    "MethodInfo",
    "RenderResult",
    "compute_depth",
    "get_method",
    "method_infos",
    "prepare_photo",
    "render_photo",
    "status_rows",
]

DEPTH_SOURCES = {
    "auto": "Auto: depth model if installed, else approximate",
    "model": "Depth model (DPT via transformers)",
    "approximate": "Approximate (no learned model)",
    "upload": "My own depth map (upload)",
}


@dataclass(frozen=True)
class MethodInfo:
    name: str
    description: str
    available: bool
    reason: str
    method: Method


@dataclass
class DepthResult:
    depth: np.ndarray  # float32 (H, W) disparity in [0, 1], near = 1
    label: str  # shown on screen: where the depth came from
    approximate: bool


@dataclass
class RenderResult:
    image: np.ndarray  # float32 (H, W, 3) in [0, 1]
    depth: DepthResult
    seconds: float
    notes: list[str] = field(default_factory=list)


@functools.lru_cache(maxsize=16)
def get_method(name: str, pynet_weights: str | None) -> Method:
    """One shared instance per method (PyNET loads its weights once, lazily, on first use)."""
    kwargs: dict[str, Any] = {"weights": pynet_weights} if name == "pynet" else {}
    return create_method(name, **kwargs)


def method_infos(settings: SpaceSettings) -> list[MethodInfo]:
    infos = []
    for name in list_methods():
        method = get_method(name, settings.pynet_weights)
        available, reason = method.availability()
        infos.append(MethodInfo(name, method.description, available, reason, method))
    return infos


def prepare_photo(source: ImageSource, max_side: int) -> tuple[np.ndarray, float, list[str]]:
    """Decode an upload and cap its size; returns (photo, scale applied, notes for the user)."""
    photo = load_image(source)
    height, width = photo.shape[:2]
    notes: list[str] = []
    scale = 1.0
    if max_side and max(height, width) > max_side:
        scale = max_side / max(height, width)
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        photo = np.clip(resize_array(photo, size, resample="area"), 0.0, 1.0)
        notes.append(f"Photo downscaled from {width}x{height} to {size[1]}x{size[0]} for this demo.")
    return photo, scale, notes


def compute_depth(
    photo: np.ndarray,
    source: str,
    settings: SpaceSettings,
    *,
    focus_xy: tuple[int, int] | None = None,
    uploaded: ImageSource | None = None,
) -> DepthResult:
    """Depth for ``photo`` from the chosen source; the label says honestly where it came from."""
    if source not in DEPTH_SOURCES:
        raise InputError(f"depth source must be one of {list(DEPTH_SOURCES)}, got {source!r}")
    if source == "upload":
        if uploaded is None:
            raise InputError("Choose a depth map file to upload, or pick another depth source.")
        depth = resize_array(load_depth(uploaded), photo.shape[:2], resample="bilinear")
        return DepthResult(np.clip(depth, 0.0, 1.0), "your uploaded depth map", approximate=False)
    model_ok, _ = depth_model_status(settings.depth_model)
    if source == "model" or (source == "auto" and model_ok):
        estimator = get_depth_estimator(settings.depth_model, "auto")
        return DepthResult(estimator.estimate(photo), f"depth model {settings.depth_model}", approximate=False)
    label = "APPROXIMATE depth (no learned depth model: subject mask from the focus point + ground-plane prior)"
    if source == "auto":
        label += "; the Status tab says how to install the depth model"
    return DepthResult(_cached_approximate_depth(photo, focus_xy), label, approximate=True)


_APPROXIMATE_CACHE: OrderedDict[tuple[str, tuple[int, int] | None], np.ndarray] = OrderedDict()
_APPROXIMATE_LOCK = threading.Lock()


def _cached_approximate_depth(photo: np.ndarray, focus_xy: tuple[int, int] | None) -> np.ndarray:
    # Changing the strength or the aperture must not redo GrabCut: key on the photo's content and the focus.
    key = (hashlib.blake2b(np.ascontiguousarray(photo).data, digest_size=16).hexdigest(), focus_xy)
    with _APPROXIMATE_LOCK:
        if key in _APPROXIMATE_CACHE:
            _APPROXIMATE_CACHE.move_to_end(key)
            return _APPROXIMATE_CACHE[key]
    depth = approximate_depth(photo, focus_xy)
    with _APPROXIMATE_LOCK:
        _APPROXIMATE_CACHE[key] = depth
        while len(_APPROXIMATE_CACHE) > 16:
            _APPROXIMATE_CACHE.popitem(last=False)
    return depth


@on_gpu  # ZeroGPU: a GPU is attached only inside spaces.GPU calls; a no-op elsewhere
def render_photo(
    photo: np.ndarray,
    method_name: str,
    settings: SpaceSettings,
    *,
    params: dict[str, Any] | None = None,
    focus_xy: tuple[int, int] | None = None,
    depth: DepthResult | None = None,
    depth_source: str = "auto",
    uploaded_depth: ImageSource | None = None,
) -> RenderResult:
    """Render ``photo`` with one method; a clicked focus point sets ``focus_disparity`` where the method has one."""
    method = get_method(method_name, settings.pynet_weights)
    available, reason = method.availability()
    if not available:
        raise InputError(f"{method_name} is not available here: {reason}")
    params = {k: v for k, v in (params or {}).items() if k in method.param_names()}
    notes: list[str] = []
    if depth is None and (method.needs_depth or "focus_disparity" in method.param_names()):
        depth = compute_depth(photo, depth_source, settings, focus_xy=focus_xy, uploaded=uploaded_depth)
    if focus_xy is not None and depth is not None and "focus_disparity" in method.param_names():
        x, y = focus_xy
        height, width = depth.depth.shape
        if not (0 <= x < width and 0 <= y < height):
            raise InputError(f"focus point ({x}, {y}) lies outside the {width}x{height} photo")
        params["focus_disparity"] = round(focus_disparity_at(depth.depth, int(x), int(y)), 4)
        notes.append(f"Focus at pixel ({x}, {y}): disparity {params['focus_disparity']:.3f}.")
    if method_name == "pynet" and not torch.cuda.is_available() and not params.get("max_side"):
        params["max_side"] = settings.pynet_cpu_preview_side
        if params["max_side"]:
            notes.append(
                f"PyNET preview: computed at {params['max_side']} px on this CPU (about 10 s per full-size photo) "
                "and upscaled; use the CLI or a GPU for full resolution."
            )
    start = time.perf_counter()
    result = method(photo, None if depth is None else depth.depth, **params)
    seconds = time.perf_counter() - start
    return RenderResult(result, depth, seconds, notes)


def status_rows(settings: SpaceSettings) -> list[dict[str, Any]]:
    """What is installed and what is missing, with how to provide it (the Status tab's cards).

    Checked at every call (cheap: file lookups only), so models fetched in the background show up at once.
    Each row: ``component``, ``state``, ``ok`` (bool), ``detail``, ``how to provide`` and, while a background
    fetch runs, ``progress`` (the :func:`space.fetching.fetch_snapshot` entry of that component).
    """
    from bokeh_model.pynet import resolve_pynet_weights

    from .fetching import fetch_snapshot

    fetching = {entry["item"]: entry for entry in fetch_snapshot()}
    rows: list[dict[str, Any]] = []
    ok, reason = weights_status(settings.pynet_weights)
    rows.append(
        {
            "component": "PyNET-Bokeh weights",
            "state": "ready" if ok else "missing",
            "ok": ok,
            "detail": resolve_pynet_weights(settings.pynet_weights)
            + (" (licence CC BY-NC-SA 4.0, academic use; Ignatov, Patel, Timofte, CVPRW 2020)" if ok else ""),
            "how to provide": reason,
        }
    )
    ok, reason = depth_model_status(settings.depth_model)
    rows.append(
        {
            "component": "Depth model",
            "state": "ready" if ok else "missing (approximate depth used)",
            "ok": ok,
            "detail": settings.depth_model,
            "how to provide": reason,
        }
    )
    ok, reason = lpips_status()
    rows.append(
        {
            "component": "LPIPS AlexNet trunk",
            "state": "ready" if ok else "missing",
            "ok": ok,
            "detail": "evaluation only",
            "how to provide": reason,
        }
    )
    for info in method_infos(settings):
        rows.append(
            {
                "component": f"method: {info.name}",
                "state": "ready" if info.available else "unavailable",
                "ok": info.available,
                "detail": info.description,
                "how to provide": info.reason,
            }
        )
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU only"
    rows.append(
        {
            "component": "Compute",
            "state": device,
            "ok": True,
            "detail": f"torch {torch.__version__}",
            "how to provide": "",
        }
    )
    for row in rows:
        progress = fetching.get(row["component"])
        if progress is not None and not (row["ok"] and progress["state"] != "ready"):
            row["progress"] = progress
    return rows
