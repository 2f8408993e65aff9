"""Library calls behind the app: one place that composes bokeh_model, evaluation and user_study.

Everything here works on arrays and returns dataclasses; the tab modules only convert UI values.
Heavy objects (PyNET, the depth model) are created once per process and shared by all users.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from bokeh_model import InputError, create_method, list_methods, load_image
from bokeh_model.depth import approximate_depth, depth_model_status, focus_disparity_at, get_depth_estimator
from bokeh_model.depth_models import depth_model_info, depth_model_label, resolve_depth_model
from bokeh_model.errors import ModelUnavailableError
from bokeh_model.images import ImageSource, load_depth
from bokeh_model.pynet import weights_status
from bokeh_model.pynet_scale import ScaledRender, render_pynet_at_scale
from bokeh_model.registry import Method
from bokeh_model.upsample import finish_full_resolution
from evaluation.metrics import lpips_status

from .config import SpaceSettings
from .fetching import on_gpu
from .previews import cpu_preview
from .render_cache import ContentCache, content_key

__all__ = [
    "DEPTH_SOURCES",
    "DepthResult",
    "MethodInfo",
    "PreparedPhoto",
    "RenderResult",
    "check_depth_upload",
    "compute_depth",
    "depth_source_choices",
    "depth_source_model",
    "depth_source_note",
    "get_method",
    "method_infos",
    "photo_size_problem",
    "prepare_photo",
    "render_photo",
    "status_rows",
]

# The fixed depth sources. Besides these, each depth model a visitor may pick is a source of its own, keyed by its
# short name (``dpt-hybrid``, ``depth-anything-v2-small``); see depth_source_choices. ``model`` = the default model.
DEPTH_SOURCES = {
    "auto": "Auto: depth model if installed, else approximate",
    "model": "This Space's default depth model",
    "approximate": "Approximate (no learned model)",
    "upload": "My own depth map (upload)",
}
log = logging.getLogger(__name__)


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
    notes: list[str] = field(default_factory=list)  # e.g. "colour map converted to grey"


@dataclass
class RenderResult:
    image: np.ndarray  # float32 (H, W, 3) in [0, 1], at the size of ``full`` when one was given
    depth: DepthResult | None
    seconds: float  # render + finish
    notes: list[str] = field(default_factory=list)
    preview: np.ndarray | None = None  # the result at processing resolution (shown in the page)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage: depth, render, finish


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


@dataclass
class PreparedPhoto:
    """An upload decoded once: at its own size (the output size) and at processing resolution."""

    full: np.ndarray  # float32 (H, W, 3): the photo at its own size, which the download keeps
    work: np.ndarray  # float32 (h, w, 3): at most ``max_render_side`` px; depth and defocus are computed here
    scale: float  # work pixels per full-resolution pixel (1.0 when the photo is small enough)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def to_work(self, xy: tuple[int, int] | None) -> tuple[int, int] | None:
        """A point in the photo's own pixels -> the same point at processing resolution."""
        if xy is None:
            return None
        height, width = self.work.shape[:2]
        return min(int(xy[0] * self.scale), width - 1), min(int(xy[1] * self.scale), height - 1)


def photo_size_problem(path: str, max_megapixels: float, *, decode: bool = True) -> str | None:
    """Why an uploaded file cannot be used (not an image, too many pixels, truncated or corrupt), else ``None``.

    The pixel count comes from the header (milliseconds even for a 400 MP file); a photo within the limit is then
    decoded once (``decode``; a JPEG at 1/8 scale, which still reads all of its data), so a truncated file is
    refused when it arrives, not at the first render.
    """
    from PIL import Image, UnidentifiedImageError

    name = Path(path).name
    try:
        with Image.open(path) as image:
            width, height = image.size
            if decode and width * height <= max_megapixels * 1e6:
                if image.format == "JPEG":
                    image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                image.load()
    except UnidentifiedImageError:
        return f"{name} is not an image file this app can read (PNG, JPEG, WebP, TIFF, ...)."
    except (OSError, ValueError, SyntaxError) as exc:
        return f"{name} could not be decoded (truncated or corrupt file?): {exc}"
    except Image.DecompressionBombError:
        width, height = 10**9, 1  # PIL refuses to even describe it: far above any limit
    if width * height > max_megapixels * 1e6:
        return (
            f"{name} is {width * height / 1e6:.0f} MP ({width}x{height}); this app takes photos up to "
            f"{max_megapixels:g} MP. Downscale it first."
        )
    return None


def prepare_photo(source: ImageSource, max_side: int, max_megapixels: float = 24) -> PreparedPhoto:
    """Decode an upload; keep it at its own size (up to ``max_megapixels``) and make the processing copy."""
    start = time.perf_counter()
    if isinstance(source, (str, Path)):
        problem = photo_size_problem(str(source), max_megapixels, decode=False)  # load_image decodes it
        if problem:
            raise InputError(problem)
    full = load_image(source)
    decoded = time.perf_counter()
    height, width = full.shape[:2]
    notes: list[str] = []
    work, scale = full, 1.0
    if max_side and max(height, width) > max_side:
        scale = max_side / max(height, width)
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        work = np.clip(cv2.resize(full, (size[1], size[0]), interpolation=cv2.INTER_AREA), 0.0, 1.0)
        notes.append(
            f"Depth and blur computed at {size[1]}x{size[0]} px, then brought back to the photo's "
            f"{width}x{height} px with edge-aware (guided) upsampling."
        )
    timings = {"decode": decoded - start, "downscale": time.perf_counter() - decoded}
    return PreparedPhoto(full, work, scale, notes, timings)


def check_depth_upload(uploaded: ImageSource, photo_shape: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
    """Read a depth map the user uploaded for a photo of ``photo_shape`` (H, W); returns (map, notes).

    Refused with a message: a file that is not an image, and a map whose aspect ratio differs from the photo's
    by more than 2 % (it was made for another photo or cropped). A colour image is converted to grey with a note
    (a depth map is one channel, near = bright); a map of another size but the same shape is resized, with a note.
    """
    from PIL import Image, UnidentifiedImageError

    notes: list[str] = []
    name = Path(uploaded).name if isinstance(uploaded, (str, Path)) else "the depth map"
    if isinstance(uploaded, (str, Path)) and not str(uploaded).endswith(".npy"):
        try:
            with Image.open(uploaded) as image:
                mode = image.mode
                colour = mode in {"RGB", "RGBA", "P", "CMYK", "YCbCr", "LAB", "HSV"}
                if colour:
                    rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
                    colour = int(np.abs(np.diff(rgb, axis=2)).max(initial=0)) > 2
        except (UnidentifiedImageError, OSError, ValueError):
            raise InputError(f"{name} is not an image: upload a depth map as PNG (8 or 16 bit) or JPEG.") from None
        if colour:
            notes.append(
                f"{name} is a colour image; it was converted to grey (luminance) and read as near = bright. "
                "A colour-coded depth map (e.g. a rainbow palette) does not convert to depth this way."
            )
    depth = load_depth(uploaded)
    height, width = photo_shape
    d_height, d_width = depth.shape
    if abs((d_width / d_height) / (width / height) - 1.0) > 0.02:
        raise InputError(
            f"{name} is {d_width}x{d_height} (aspect {d_width / d_height:.2f}) but the photo is {width}x{height} "
            f"(aspect {width / height:.2f}): it is probably the depth map of another photo, or cropped."
        )
    if (d_height, d_width) != (height, width):
        depth = cv2.resize(depth, (width, height), interpolation=cv2.INTER_LINEAR)
        notes.append(f"Depth map resized from {d_width}x{d_height} to {width}x{height}.")
    return np.clip(depth, 0.0, 1.0).astype(np.float32), notes


def _model_source_key(model_id: str, settings: SpaceSettings) -> str:
    info = depth_model_info(model_id)
    if info is not None:
        return info.name
    return "model" if model_id == resolve_depth_model(settings.depth_model) else model_id


def _visitor_name(model_id: str, settings: SpaceSettings) -> str:
    """A depth model as a visitor reads it: its title, never a server path."""
    info = depth_model_info(model_id)
    if info is not None:
        return info.title
    return "This Space's depth model" if model_id == resolve_depth_model(settings.depth_model) else model_id


def depth_source_model(source: str, settings: SpaceSettings) -> str | None:
    """The depth model id that a depth source names (``model``, a short name, a hub id); ``None`` for the others."""
    if source == "model":
        return resolve_depth_model(settings.depth_model)
    if source in DEPTH_SOURCES or not str(source or "").strip():
        return None
    model_id = resolve_depth_model(source)
    return model_id if model_id in settings.depth_models else None


def depth_source_choices(settings: SpaceSettings) -> list[tuple[str, str]]:
    """The Depth choice of the Render tab, ``(label, key)``: auto, each depth model a visitor may pick, approximate,
    upload. Each model's label names it, its year and licence; availability is in :func:`depth_source_note`."""
    default = resolve_depth_model(settings.depth_model)
    choices = [(DEPTH_SOURCES["auto"], "auto")]
    for model_id in settings.depth_models:
        info = depth_model_info(model_id)
        label = _visitor_name(model_id, settings)
        if info is not None:
            label += f" ({info.year}, {info.license})"
        if model_id == default and info is not None:
            label += ", the default"
        choices.append((label, _model_source_key(model_id, settings)))
    return choices + [(DEPTH_SOURCES[key], key) for key in ("approximate", "upload")]


def depth_source_note(source: str, settings: SpaceSettings) -> str:
    """One line under the Depth choice: is the picked depth model installed here (checked now, files only)?"""
    model_id = depth_source_model(source, settings)
    if model_id is None:
        return ""
    name = _visitor_name(model_id, settings)
    info = depth_model_info(model_id)
    if depth_model_status(model_id)[0]:
        return f"✓ {info.summary() if info is not None else name}: installed."
    return (
        f"⚠ {name} is not installed on this Space (yet), so it cannot be used now: pick Auto or another depth source."
    )


def compute_depth(
    photo: np.ndarray,
    source: str,
    settings: SpaceSettings,
    *,
    focus_xy: tuple[int, int] | None = None,
    uploaded: ImageSource | None = None,
) -> DepthResult:
    """Depth for ``photo`` from the chosen source; the label says honestly where it came from."""
    chosen_model = depth_source_model(source, settings)
    if source not in DEPTH_SOURCES and chosen_model is None:
        keys = [key for _, key in depth_source_choices(settings)]
        raise InputError(f"depth source must be one of {keys}, got {source!r}")
    if source == "upload":
        if uploaded is None:
            raise InputError("Choose a depth map file to upload, or pick another depth source.")
        depth, notes = check_depth_upload(uploaded, photo.shape[:2])
        return DepthResult(depth, "your uploaded depth map", approximate=False, notes=notes)
    model_ok, _ = depth_model_status(settings.depth_model)
    if chosen_model is not None or (source == "auto" and model_ok):
        model_id = chosen_model or resolve_depth_model(settings.depth_model)
        name = _visitor_name(model_id, settings)
        if not depth_model_status(model_id)[0]:
            # a visitor gets a short line; the Status tab has the rest (how to install it)
            raise ModelUnavailableError(
                f"{name} is not installed on this Space (yet): pick Auto or another depth source. "
                "The Status tab shows whether it is being downloaded."
            )
        try:
            depth = get_depth_estimator(model_id, "auto").estimate(photo)
        except ModelUnavailableError as exc:
            log.warning("depth model %s could not be loaded: %s", model_id, exc)
            raise ModelUnavailableError(
                f"{name} could not be loaded on this Space: pick Auto or another depth source."
            ) from None
        # a known model by title and hub id; an operator's own folder by a name, not its server path
        shown = depth_model_label(model_id) if depth_model_info(model_id) is not None else name
        return DepthResult(depth, f"depth model {shown}", approximate=False)
    label = "APPROXIMATE depth (no learned depth model: subject mask from the focus point + ground-plane prior)"
    if source == "auto":
        label += "; the Status tab says how to install the depth model"
    return DepthResult(_cached_approximate_depth(photo, focus_xy), label, approximate=True)


_APPROXIMATE_DEPTHS: ContentCache[np.ndarray] = ContentCache(16)
# a 1536x1024 PyNET entry holds ~38 MB (the scaled photo and PyNET's output, float32)
PYNET_RENDERS: ContentCache[ScaledRender] = ContentCache(4)


def _cached_approximate_depth(photo: np.ndarray, focus_xy: tuple[int, int] | None) -> np.ndarray:
    # Changing the strength or the aperture must not redo GrabCut: key on the photo's content and the focus.
    key = (content_key(photo), focus_xy)
    return _APPROXIMATE_DEPTHS.get_or_make(key, lambda: approximate_depth(photo, focus_xy))[0]


def _cached_pynet(
    method: Any, photo: np.ndarray, depth: np.ndarray | None, params: dict[str, Any]
) -> tuple[ScaledRender, bool]:
    """PyNET at its trained scale, reused while photo, depth, parameters, weights and backend are the same.

    PyNET has no focus input: with a learned depth map, a click elsewhere on the same photo gives the same network
    output, so the second click costs the finish only (~1 s for 12 MP on 2 cores) instead of another 1.3 TFLOP
    pass. Approximate depth changes with the focus point, so its key changes too. Returns the render and whether
    it was reused.
    """
    key = (content_key(photo), content_key(depth), tuple(sorted(params.items())), method.weights, method.backend_name())
    return PYNET_RENDERS.get_or_make(key, lambda: render_pynet_at_scale(method, photo, depth, params, finish=False))


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
    full: np.ndarray | None = None,
) -> RenderResult:
    """Render ``photo`` (processing resolution) with one method, then finish it at the size of ``full``.

    A clicked focus point (processing-resolution pixels) sets ``focus_disparity`` where the method has one.
    With ``full`` (the same photo at its own size), the result is brought to that size by guided upsampling
    (:func:`bokeh_model.upsample.finish_full_resolution`). PyNET runs at its trained scale (the photo's long side
    at 1536 px, :mod:`bokeh_model.pynet_scale`), or at a preview size chosen explicitly, and gets the same finish.
    """
    method = get_method(method_name, settings.pynet_weights)
    available, reason = method.availability()
    if not available:
        raise InputError(f"{method_name} is not available here: {reason}")
    params = {k: v for k, v in (params or {}).items() if k in method.param_names()}
    notes: list[str] = []
    timings: dict[str, float] = {}
    start = time.perf_counter()
    if depth is None and (method.needs_depth or "focus_disparity" in method.param_names()):
        depth = compute_depth(photo, depth_source, settings, focus_xy=focus_xy, uploaded=uploaded_depth)
        notes += depth.notes
    timings["depth"] = time.perf_counter() - start
    if focus_xy is not None and depth is not None and "focus_disparity" in method.param_names():
        x, y = focus_xy
        height, width = depth.depth.shape
        if not (0 <= x < width and 0 <= y < height):
            raise InputError(f"focus point ({x}, {y}) lies outside the {width}x{height} photo")
        params["focus_disparity"] = round(focus_disparity_at(depth.depth, int(x), int(y)), 4)
        notes.append(f"Focus at disparity {params['focus_disparity']:.3f}.")
    source, source_depth = photo, None if depth is None else depth.depth
    if not torch.cuda.is_available():  # Bokehlicious and BokehMe run on a labelled preview on a CPU
        source, source_depth, note = cpu_preview(method_name, method, photo, depth, params, settings.cpu_preview_side)
        notes += [note] if note else []
    start = time.perf_counter()
    reused = False
    if method_name == "pynet":
        # PyNET at its trained scale on CPU and GPU alike (long side 1536 px, network input 768 px), unless a
        # preview size is chosen (the control, or BOKEH_PYNET_PREVIEW_SIDE): labelled either way.
        if not params.get("max_side") and settings.pynet_cpu_preview_side:
            params["max_side"] = settings.pynet_cpu_preview_side
        scaled, reused = _cached_pynet(method, photo, source_depth, params)
        source, rendered = scaled.scaled, scaled.rendered
        notes.append(scaled.note((full if full is not None else photo).shape[:2]))
        if reused:
            notes.append("PyNET's output was reused from the previous render of this photo and depth.")
        if focus_xy is not None and depth is not None and not depth.approximate:
            notes.append(
                "PyNET has no focus control: it keeps sharp what it learned to from EBB! photos (usually the main "
                "subject), so clicking elsewhere on this photo gives the same result."
            )
    else:
        rendered = method(source, source_depth, **params)
    timings["render"] = time.perf_counter() - start
    backend = getattr(method, "last_backend", None)
    if backend and not reused:  # which PyNET backend actually ran (the fastest measured one, bokeh_model.backends)
        notes.append(f"PyNET ran on the {backend} backend; render {timings['render']:.1f} s.")
    start = time.perf_counter()
    if full is not None and full.shape[:2] != photo.shape[:2]:
        image = finish_full_resolution(full, source, rendered)
        if source.shape[:2] == photo.shape[:2]:
            preview = rendered
        else:  # PyNET ran at its own scale: the page's preview is the finished result, downscaled (one finish)
            size = (photo.shape[1], photo.shape[0])
            preview = np.clip(cv2.resize(image, size, interpolation=cv2.INTER_AREA), 0.0, 1.0)
    else:
        preview = finish_full_resolution(photo, source, rendered) if source.shape[:2] != photo.shape[:2] else rendered
        image = preview
    timings["finish"] = time.perf_counter() - start
    seconds = timings["render"] + timings["finish"]
    return RenderResult(image, depth, seconds, notes, preview=preview, timings=timings)


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
    for model_id in settings.depth_models:  # the default first: the one Auto uses
        ok, reason = depth_model_status(model_id)
        info = depth_model_info(model_id)
        default = settings.depth_component(model_id) == "Depth model"
        rows.append(
            {
                "component": settings.depth_component(model_id),
                "state": "ready" if ok else ("missing (approximate depth used)" if default else "missing"),
                "ok": ok,
                "detail": depth_model_label(model_id) + (f": {info.summary()}" if info is not None else ""),
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
