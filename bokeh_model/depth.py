"""Depth for the renderers: DPT (or any ``transformers`` depth model), user depth files, and an approximation.

* :class:`DepthEstimator` runs ``AutoModelForDepthEstimation`` + its image processor and returns relative
  inverse depth (disparity) at the photo's resolution, float32 in [0, 1], near = 1. Results are cached per
  image content (SHA-1 of the pixels, LRU), so moving the focus or the strength never recomputes depth.
* Depth models are named by :mod:`bokeh_model.depth_models` (``dpt-hybrid``, the default, and
  ``depth-anything-v2-small``) or given as any hub id or folder. Each model's own image processor sets the network
  input: DPT-Hybrid's 384x384, Depth Anything's 518-px short side with the aspect ratio kept and sides in multiples
  of 14, so large photos keep their shape; the prediction is resized back to the photo (bicubic).
* Models are only ever loaded from local files (a folder, or the Hugging Face cache); nothing is
  downloaded behind the user's back. ``python -m bokeh_model fetch depth`` (or the Space's background fetch,
  or a Space's ``preload_from_hub``) puts the default model into the cache on request. A missing model
  raises :class:`ModelUnavailableError` naming the model
  and how to provide it.
* :func:`approximate_depth` needs no learned weights (GrabCut subject mask grown from the focus point over
  a ground-plane prior). It is an **approximation** for offline use, and every caller should say so.
* :func:`to_pynet_depth` (from :mod:`bokeh_model.pynet`) converts a disparity map to PyNET's convention.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import os
import threading
from pathlib import Path

import numpy as np

from .depth_models import (
    DEPTH_MODEL_ENV,
    FALLBACK_DEPTH_MODEL,
    default_depth_model,
    depth_model_names,
    resolve_depth_model,
)
from .errors import InputError, ModelUnavailableError
from .pynet import to_pynet_depth
from .registry import check_image_array

__all__ = [
    "DEFAULT_DEPTH_MODEL",
    "DEPTH_MODEL_ENV",
    "FALLBACK_DEPTH_MODEL",
    "DepthEstimator",
    "approximate_depth",
    "default_depth_model",
    "depth_model_status",
    "focus_disparity_at",
    "get_depth_estimator",
    "normalize_disparity",
    "resolve_depth_model",
    "to_pynet_depth",
]

DEPTH_REVISION_ENV = "BOKEH_DEPTH_REVISION"


def depth_revision() -> str | None:
    """``$BOKEH_DEPTH_REVISION`` (a branch, tag or commit of the hub model), else ``None`` (= ``main``)."""
    return os.environ.get(DEPTH_REVISION_ENV, "").strip() or None


DEFAULT_DEPTH_MODEL = default_depth_model()

_WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
# Model types whose output is metric depth (far = large) rather than relative inverse depth. Depth Anything says
# which in its config (``depth_estimation_type``: ``relative`` for V2 Small, ``metric`` for its metric variants).
_METRIC_DEPTH_TYPES = {"glpn", "zoedepth", "depth_pro"}


def _is_metric(config: object) -> bool:
    return getattr(config, "model_type", "") in _METRIC_DEPTH_TYPES or (
        getattr(config, "depth_estimation_type", "relative") == "metric"
    )


def _how_to_provide(model_id: str) -> str:
    return (
        f"Run `python -m bokeh_model fetch depth --depth-model {model_id}` (known by short name: "
        f"{', '.join(depth_model_names())}), or provide the depth model "
        f"{model_id!r} as one of: the Hugging Face cache (run `hf download {model_id}` on a machine "
        "with internet, then copy ~/.cache/huggingface if needed), or a local folder "
        f"holding config.json, preprocessor_config.json and the weights (pass the folder as the model id, e.g. "
        f"--depth-model /path/to/dpt, or set {DEPTH_MODEL_ENV}). Or give a depth map file (--depth FILE), or use "
        "the approximate depth (--approximate-depth), which needs no weights."
    )


def depth_model_status(model_id: str) -> tuple[bool, str]:
    """Cheap check (no network, no loading) of whether ``model_id`` can be loaded here.

    Returns:
        ``(True, "")`` when the model is a complete local folder or is in the local Hugging Face cache,
        else ``(False, message)`` naming the model and how to provide it.
    """
    if not str(model_id or "").strip():
        return False, f"No depth model configured. {_how_to_provide(DEFAULT_DEPTH_MODEL)}"
    model_id = resolve_depth_model(model_id)
    path = Path(model_id).expanduser()
    if path.exists():
        if not path.is_dir():
            return False, f"depth model {model_id!r} is a file, not a folder. {_how_to_provide(model_id)}"
        missing = [name for name in ("config.json", "preprocessor_config.json") if not (path / name).is_file()]
        if not any((path / name).is_file() for name in _WEIGHT_FILES):
            missing.append("model.safetensors (or pytorch_model.bin)")
        if missing:
            return False, f"depth model folder {path} lacks {missing}. {_how_to_provide(model_id)}"
        return True, ""
    if model_id.count("/") > 1 or model_id.startswith((".", "/", "~")):
        return False, f"depth model folder {model_id!r} does not exist. {_how_to_provide(model_id)}"
    from huggingface_hub import try_to_load_from_cache

    revision = depth_revision()
    try:
        config = try_to_load_from_cache(model_id, "config.json", revision=revision)
        processor = try_to_load_from_cache(model_id, "preprocessor_config.json", revision=revision)
        weights = [try_to_load_from_cache(model_id, name, revision=revision) for name in _WEIGHT_FILES]
    except ValueError as exc:  # not a valid repo id
        return False, f"depth model {model_id!r} is neither a folder nor a hub id ({exc}). {_how_to_provide(model_id)}"
    if isinstance(config, str) and isinstance(processor, str) and any(isinstance(w, str) for w in weights):
        return True, ""
    return False, f"depth model {model_id!r} is not in the local Hugging Face cache. {_how_to_provide(model_id)}"


def normalize_disparity(raw: np.ndarray) -> np.ndarray:
    """Min-max normalise a relative disparity map to float32 [0, 1]; a constant map becomes all zeros.

    Raises:
        InputError: NaN or infinite values.
    """
    raw = np.asarray(raw, dtype=np.float32)
    if not np.all(np.isfinite(raw)):
        raise InputError("depth model produced NaN or infinite values")
    low, high = float(raw.min()), float(raw.max())
    if high - low <= 1e-12:
        return np.zeros_like(raw)
    return ((raw - low) / (high - low)).astype(np.float32)


def _content_key(image: np.ndarray) -> str:
    digest = hashlib.sha1(np.ascontiguousarray(image).view(np.uint8).ravel())
    digest.update(str(image.shape).encode())
    return digest.hexdigest()


class DepthEstimator:
    """Monocular depth with a ``transformers`` depth model (DPT, DPT-Hybrid, Depth Anything, ...).

    Args:
        model_id: a short name (``dpt-hybrid``, ``depth-anything-v2-small``), a hub id already in the local Hugging
            Face cache, or a local folder.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        cache_size: how many images' depth maps to keep (LRU, keyed by pixel content).

    >>> # DepthEstimator("Intel/dpt-hybrid-midas").estimate(image)  # (H, W) float32, near = 1
    """

    def __init__(self, model_id: str = DEFAULT_DEPTH_MODEL, device: str = "auto", cache_size: int = 8) -> None:
        self.model_id = resolve_depth_model(model_id)
        self.device = device
        self.cache_size = int(cache_size)
        self._cache: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()
        self._lock = threading.RLock()
        self._model = None
        self._processor = None
        self._torch_device = None

    def __repr__(self) -> str:
        return f"DepthEstimator(model_id={self.model_id!r}, device={self.device!r})"

    def availability(self) -> tuple[bool, str]:
        """Same as :func:`depth_model_status` for this estimator's model."""
        return depth_model_status(self.model_id)

    def _load(self) -> None:
        if self._model is not None:
            return
        ok, reason = depth_model_status(self.model_id)
        if not ok:
            raise ModelUnavailableError(reason)
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        from .device import resolve_device

        device = resolve_device(self.device)
        source = str(Path(self.model_id).expanduser()) if Path(self.model_id).expanduser().exists() else self.model_id
        try:
            # Never a hidden download: `python -m bokeh_model fetch depth` (or the Space's background fetch) does it.
            revision = None if source != self.model_id or Path(source).exists() else depth_revision()
            processor = AutoImageProcessor.from_pretrained(source, local_files_only=True, revision=revision)
            model = AutoModelForDepthEstimation.from_pretrained(source, local_files_only=True, revision=revision)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise ModelUnavailableError(
                f"could not load depth model {self.model_id!r}: {exc}. {_how_to_provide(self.model_id)}"
            ) from exc
        self._processor = processor
        self._model = model.to(device).eval()
        self._torch_device = device

    def estimate(self, image: np.ndarray) -> np.ndarray:
        """Disparity of ``image`` (float32 (H, W, 3) RGB in [0, 1]) as float32 (H, W) in [0, 1], near = 1.

        Raises:
            ModelUnavailableError: the model is not available locally (the message says how to provide it).
            InputError: a bad image.
        """
        image = check_image_array(image)
        key = _content_key(image)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key].copy()
            self._load()
            disparity = self._predict(image)
            self._cache[key] = disparity
            while len(self._cache) > max(self.cache_size, 0):
                self._cache.popitem(last=False)
            return disparity.copy()

    def estimate_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """:meth:`estimate` for several images, one forward pass per group of equally sized images.

        Used to precompute depth for a whole dataset (``python -m evaluation.ebb build --depth-model``);
        bypasses the per-image cache.

        Raises:
            ModelUnavailableError: the model is not available locally.
            InputError: a bad image.
        """
        images = [check_image_array(image) for image in images]
        results: list[np.ndarray | None] = [None] * len(images)
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, image in enumerate(images):
            groups.setdefault(image.shape, []).append(index)
        with self._lock:
            self._load()
            for members in groups.values():
                for index, disparity in zip(members, self._predict_many([images[i] for i in members]), strict=True):
                    results[index] = disparity
        return [r for r in results if r is not None]

    def _predict(self, image: np.ndarray) -> np.ndarray:
        return self._predict_many([image])[0]

    def _predict_many(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Disparity of equally sized images in one forward pass."""
        import torch

        height, width = images[0].shape[:2]
        pixels = [np.round(image * 255.0).astype(np.uint8) for image in images]
        inputs = self._processor(images=pixels, return_tensors="pt")
        inputs = {k: v.to(self._torch_device) for k, v in inputs.items() if hasattr(v, "to")}
        with torch.inference_mode():
            predicted = self._model(**inputs).predicted_depth
        if predicted.ndim == 3:
            predicted = predicted[:, None]
        predicted = torch.nn.functional.interpolate(
            predicted.float(), size=(height, width), mode="bicubic", align_corners=False
        )[:, 0]
        results = []
        for raw in predicted.cpu().numpy():
            if _is_metric(self._model.config):
                raw = 1.0 / np.maximum(raw, 1e-6)
            results.append(normalize_disparity(raw))
        return results


@functools.lru_cache(maxsize=4)
def _shared_estimator(model_id: str, device: str) -> DepthEstimator:
    return DepthEstimator(model_id, device)


def get_depth_estimator(model_id: str | None = None, device: str = "auto") -> DepthEstimator:
    """A shared :class:`DepthEstimator` per (model id, device), so weights and the depth cache are reused.

    ``model_id=None`` means :data:`DEFAULT_DEPTH_MODEL` (the ``BOKEH_DEPTH_MODEL`` environment variable, else
    ``Intel/dpt-hybrid-midas``); a short name and its hub id share one estimator.
    """
    return _shared_estimator(resolve_depth_model(model_id or DEFAULT_DEPTH_MODEL), str(device))


def focus_disparity_at(depth: np.ndarray, x: int, y: int, *, window: int | None = None) -> float:
    """Robust disparity under a clicked pixel: the median over a small square window around ``(x, y)``.

    Args:
        depth: float32 (H, W) disparity.
        x: column in pixels (0 = left).
        y: row in pixels (0 = top).
        window: half-size of the window; default ``max(2, min(H, W) // 100)``.

    Raises:
        InputError: the point lies outside the map.
    """
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise InputError(f"depth must have shape (H, W), got {depth.shape}")
    height, width = depth.shape
    try:
        x, y = int(x), int(y)
    except (TypeError, ValueError):
        raise InputError(f"focus point must be integer pixel coordinates, got ({x!r}, {y!r})") from None
    if not (0 <= x < width and 0 <= y < height):
        raise InputError(
            f"focus point ({x}, {y}) is outside the {width}x{height} image (x in [0, {width - 1}], "
            f"y in [0, {height - 1}])"
        )
    half = max(2, min(height, width) // 100) if window is None else max(0, int(window))
    patch = depth[max(0, y - half) : y + half + 1, max(0, x - half) : x + half + 1]
    patch = patch[np.isfinite(patch)]
    if patch.size == 0:
        raise InputError(f"depth around ({x}, {y}) has no finite values")
    return float(np.clip(np.median(patch), 0.0, 1.0))


def approximate_depth(image: np.ndarray, focus_xy: tuple[int, int] | None = None) -> np.ndarray:
    """APPROXIMATE disparity without learned weights: a subject mask over a ground-plane prior.

    This is a heuristic for offline use, not a depth estimate; label results made with it as approximate.

    1. Ground-plane prior: disparity 0.05 above a horizon at 45 % of the height, rising linearly to 0.7 at
       the bottom row (a camera looking at level ground).
    2. Subject: OpenCV GrabCut (3 iterations on a copy at most 224 px on its long side, about 0.2 s) seeded
       with a sure-foreground disc at the focus point (default: the image centre), a probable-foreground
       ellipse around it and a sure-background strip along the top, left and right borders. The subject gets
       disparity 0.8, with edges feathered over about 1 % of the image size.

    Args:
        image: float32 (H, W, 3) RGB in [0, 1].
        focus_xy: ``(x, y)`` pixel of the subject, e.g. the user's click.

    Returns:
        float32 (H, W) disparity in [0, 1], near = 1.
    """
    import cv2

    image = check_image_array(image)
    height, width = image.shape[:2]
    if focus_xy is None:
        fx, fy = width // 2, height // 2
    else:
        fx, fy = int(focus_xy[0]), int(focus_xy[1])
        if not (0 <= fx < width and 0 <= fy < height):
            raise InputError(f"focus point ({fx}, {fy}) is outside the {width}x{height} image")
    rows = (np.arange(height, dtype=np.float32) + 0.5) / height
    ground = np.where(rows < 0.45, 0.05, 0.05 + 0.65 * (rows - 0.45) / 0.55).astype(np.float32)
    disparity = np.repeat(ground[:, None], width, axis=1)
    if height < 8 or width < 8:
        return disparity

    scale = min(1.0, 224.0 / max(height, width))
    small_h, small_w = max(8, round(height * scale)), max(8, round(width * scale))
    small = cv2.resize(np.round(image * 255).astype(np.uint8), (small_w, small_h), interpolation=cv2.INTER_AREA)
    sx, sy = min(small_w - 1, int(fx * small_w / width)), min(small_h - 1, int(fy * small_h / height))
    mask = np.full((small_h, small_w), cv2.GC_PR_BGD, np.uint8)
    axes = (max(2, int(0.25 * small_w)), max(2, int(0.4 * small_h)))
    cv2.ellipse(mask, (sx, sy), axes, 0, 0, 360, int(cv2.GC_PR_FGD), -1)
    border = max(1, small_w // 40)
    mask[:border, :] = cv2.GC_BGD
    mask[:, :border] = cv2.GC_BGD
    mask[:, -border:] = cv2.GC_BGD
    cv2.circle(mask, (sx, sy), max(1, min(small_h, small_w) // 30), int(cv2.GC_FGD), -1)
    subject = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    try:
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.grabCut(cv2.cvtColor(small, cv2.COLOR_RGB2BGR), mask, None, bgd, fgd, 3, cv2.GC_INIT_WITH_MASK)
        subject = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
    except cv2.error:
        pass  # e.g. a flat image: keep the seed ellipse
    # keep the connected part that contains the focus point
    count, labels = cv2.connectedComponents(subject.astype(np.uint8))
    if count > 1 and labels[sy, sx] > 0:
        subject = labels == labels[sy, sx]
    soft = cv2.resize(subject.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    sigma = max(0.5, 0.01 * min(height, width))
    soft = np.clip(cv2.GaussianBlur(soft, (0, 0), sigma), 0.0, 1.0)
    return np.maximum(disparity, 0.8 * soft).astype(np.float32)
