"""PyNET-Bokeh inference: weights, pre-processing as in the authors' code, and the registered method.

Pre-processing follows ``aiff22/PyNET-Bokeh``: the photo is downscaled x0.5 (bicubic), the depth map
is resized to that half resolution and quantised to 8 bits (near = bright), and the level-1 output comes
back at the photo's resolution.

Depth convention. The authors' loader divides their 8-bit depth PNG by 255 and changes nothing else (their
maps happen to span 0..255 because they were min-max stretched when written). So a depth map that already
has a fixed range (an 8-bit or 16-bit PNG, or floats in [0, 1]) is fed as it is; only depth without a fixed
range (a depth model's raw output, float maps outside [0, 1]) is min-max normalised first. A map spanning
40..200 therefore reaches the model as 0.16..0.78, as in the authors' code.

Weights are never invented: without a trained checkpoint every entry point raises
:class:`ModelUnavailableError` saying how to provide one. Without ``--weights`` or ``BOKEH_PYNET_WEIGHTS``
the weights are looked up in :func:`default_pynet_dir` (``~/.cache/bokeh_model/pynet-bokeh``), where
``python -m bokeh_model fetch pynet`` puts them.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .backends import AUTO, get_runner, resolve_backend
from .cache import CACHE_ENV, bokeh_cache_dir  # noqa: F401  (re-exported: pynet.bokeh_cache_dir is public)
from .device import autocast, resolve_device
from .errors import InputError, ModelUnavailableError
from .images import ImageSource, array_to_pil, load_depth, load_image, resize_array
from .modeling_pynet import PyNET
from .registry import Method, ParamSpec, register_method

__all__ = [
    "ABLATIONS",
    "CACHE_ENV",
    "PYNET_BACKEND_ENV",
    "PYNET_WEIGHTS_ENV",
    "PyNETMethod",
    "bokeh_cache_dir",
    "default_pynet_dir",
    "load_pynet",
    "predict",
    "resolve_pynet_weights",
    "run_pynet",
    "to_pynet_depth",
    "weights_status",
]

PYNET_WEIGHTS_ENV = "BOKEH_PYNET_WEIGHTS"
PYNET_BACKEND_ENV = "BOKEH_PYNET_BACKEND"  # default backend of the registered method (else "auto")
WEIGHT_FILES = ("config.json", "model.safetensors")


def default_pynet_dir() -> Path:
    """The default PyNET weights folder: ``<bokeh_cache_dir()>/pynet-bokeh`` (written by ``fetch pynet``)."""
    return bokeh_cache_dir() / "pynet-bokeh"


def resolve_pynet_weights(weights: str | os.PathLike | None = None) -> str:
    """The weights to use: ``weights`` if given, else ``$BOKEH_PYNET_WEIGHTS``, else :func:`default_pynet_dir`.

    Read at every call (not at import), so weights fetched while a process runs are found without a restart.
    """
    if weights is not None and str(weights).strip():
        return str(weights)
    return os.environ.get(PYNET_WEIGHTS_ENV, "").strip() or str(default_pynet_dir())


# The paper's Fig. 8: which levels are switched off (their activations passed upwards set to zero).
ABLATIONS: dict[str, tuple[int, ...]] = {
    "none": (),
    "7": (7,),
    "6+": (6, 7),
    "5+": (5, 6, 7),
    "4+": (4, 5, 6, 7),
}

_HOW_TO_PROVIDE = (
    "Run `python -m bokeh_model fetch pynet` (downloads the authors' checkpoint, converts it and installs it "
    "where every entry point finds it), or provide trained PyNET-Bokeh weights as one of: a folder written by "
    "PyNET.save_pretrained "
    "(config.json + model.safetensors), a Hugging Face Hub model id already in the local cache "
    "(`hf download ID` on a machine with internet), or a conversion of the authors' "
    "TensorFlow checkpoint (`python -m bokeh_model convert-tf CKPT_PREFIX OUT_DIR`). "
    f"Pass it with --weights or set {PYNET_WEIGHTS_ENV}."
)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def weights_status(weights: str | os.PathLike | None = None) -> tuple[bool, str]:
    """Cheap check (no loading, no network) of whether ``weights`` can be loaded here.

    ``None`` checks what :func:`resolve_pynet_weights` picks (the environment variable, else the default folder).
    """
    weights = resolve_pynet_weights(weights)
    path = Path(weights).expanduser()
    if path == default_pynet_dir() and not path.exists():
        return False, f"PyNET weights are not installed (nothing at {path}). {_HOW_TO_PROVIDE}"
    if path.exists():
        if not path.is_dir():
            return False, f"PyNET weights must be a folder, got the file {path}. {_HOW_TO_PROVIDE}"
        missing = [name for name in WEIGHT_FILES if not (path / name).is_file()]
        if missing:
            return False, f"PyNET weights folder {path} lacks {missing}. {_HOW_TO_PROVIDE}"
        return True, ""
    if _HUB_ID.match(str(weights)):
        from huggingface_hub import try_to_load_from_cache

        cached = [try_to_load_from_cache(str(weights), name) for name in WEIGHT_FILES]
        if all(isinstance(item, str) for item in cached):
            return True, ""
        return False, f"PyNET weights {weights!r} are not in the local Hugging Face cache. {_HOW_TO_PROVIDE}"
    return False, f"PyNET weights {str(weights)!r} are neither an existing folder nor a hub id. {_HOW_TO_PROVIDE}"


@functools.lru_cache(maxsize=4)
def _load_cached(weights: str, device: str) -> PyNET:
    path = Path(weights).expanduser()
    try:
        if path.exists():
            ok, reason = weights_status(path)
            if not ok:
                raise ModelUnavailableError(reason)
            model = PyNET.from_pretrained(str(path), strict=True)
        elif _HUB_ID.match(weights):
            model = PyNET.from_pretrained(weights, strict=True)
        else:
            raise ModelUnavailableError(weights_status(weights)[1])
    except ModelUnavailableError:
        raise
    except (OSError, ValueError, RuntimeError) as exc:
        # Hub unreachable, file missing or a checkpoint of another shape (strict load).
        raise ModelUnavailableError(f"Could not load PyNET weights {weights!r}: {exc}. {_HOW_TO_PROVIDE}") from exc
    return model.to(device).eval()


def load_pynet(weights: str | os.PathLike | None = None, device: str | torch.device = "auto") -> PyNET:
    """Load trained PyNET weights (folder or hub id) once per (weights, device) and return the model.

    ``weights=None`` uses ``$BOKEH_PYNET_WEIGHTS``, else the default folder written by
    ``python -m bokeh_model fetch pynet`` (:func:`default_pynet_dir`).

    Raises:
        ModelUnavailableError: the weights are missing or not loadable; the message says how to fix it.
    """
    return _load_cached(resolve_pynet_weights(weights), str(resolve_device(device)))


def to_pynet_depth(depth: np.ndarray, size: tuple[int, int], *, normalize: bool | None = None) -> np.ndarray:
    """A disparity map (any size, near = large) in the authors' convention at ``size`` = (H, W).

    The authors' loader reads an 8-bit PNG at half resolution (near = bright) and divides it by 255, nothing
    more. So a map with a fixed range, values in [0, 1] (an 8-bit PNG read as /255, a 16-bit one as /65535,
    a depth model's output already normalised by :class:`~bokeh_model.depth.DepthEstimator`), is resized and
    quantised to 8 bits *unchanged*. A map without a fixed range (values outside [0, 1], e.g. raw model
    output) is min-max normalised first.

    Args:
        depth: float disparity (H, W).
        size: output (H, W).
        normalize: ``True`` always min-max normalises, ``False`` never does (values are clipped to [0, 1]),
            ``None`` (default) normalises only values outside [0, 1].
    """
    depth = np.asarray(depth, dtype=np.float32)
    if not np.all(np.isfinite(depth)):
        raise InputError("depth map contains NaN or infinite values")
    if depth.size == 0:
        raise InputError("depth map is empty")
    depth = resize_array(depth, size, resample="bilinear")  # at half resolution, like the authors' maps
    low, high = float(depth.min()), float(depth.max())
    if normalize is None:
        normalize = low < 0.0 or high > 1.0
    if normalize:
        depth = (depth - low) / (high - low) if high > low else np.zeros_like(depth)
    return np.round(np.clip(depth, 0.0, 1.0) * 255.0).astype(np.float32) / 255.0


@torch.inference_mode()
def run_pynet(
    model: PyNET,
    image: np.ndarray,
    depth: np.ndarray | None,
    *,
    level: int = 1,
    disabled_levels: Iterable[int] = (),
    max_side: int = 0,
    precision: str = "fp32",
    channels_last: bool = False,
    backend: str = "eager",
    info: dict[str, Any] | None = None,
) -> np.ndarray:
    """Render bokeh for a full-resolution photo; returns float32 (H, W, 3) in [0, 1] at the photo's size.

    Args:
        model: a loaded :class:`PyNET`.
        image: float32 (H, W, 3) RGB in [0, 1], the full-resolution photo.
        depth: float32 disparity (any size, near = 1); required when the model takes 4 channels.
        level: output level (1 = full resolution; 2 and 3 are coarser and upsampled for display).
        disabled_levels: levels among 7..4 to switch off (paper Fig. 8).
        max_side: when > 0, the photo is first downscaled so that its longest side is at most this
            (a fast preview; the result is upscaled back to the photo's size).
        precision: ``fp32``, ``bf16`` or ``fp16`` (autocast).
        channels_last: use the channels-last memory format (same as ``backend="channels_last"``).
        backend: ``eager``, ``channels_last``, ``compile``, ``onnxruntime``, ``openvino`` or ``auto`` (the fastest
            one measured that runs here, see :mod:`bokeh_model.backends`). The model itself is never modified.
        info: if given, ``info["backend"]`` is set to the backend that actually ran.
    """
    height, width = image.shape[:2]
    work = image
    if max_side and max(height, width) > max_side:
        scale = max_side / max(height, width)
        work = resize_array(image, (max(2, round(height * scale)), max(2, round(width * scale))))
    half_size = (max(1, round(work.shape[0] / 2)), max(1, round(work.shape[1] / 2)))
    half = np.clip(resize_array(work, half_size), 0.0, 1.0)
    channels = [half]
    if model.in_channels == 4:
        if depth is None:
            raise InputError("this PyNET model takes RGB + depth; give a depth map or a depth model")
        channels.append(to_pynet_depth(depth, half_size)[..., None])
    device = next(model.parameters()).device
    x = torch.from_numpy(np.concatenate(channels, axis=2)).permute(2, 0, 1)[None].to(device)
    name = resolve_backend("channels_last" if channels_last and backend == "eager" else backend, device, precision)
    runner = get_runner(model, name, level, disabled_levels, device)
    with autocast(device, precision):
        out, used = runner.run(x)
    if info is not None:
        info["backend"] = used
    result = out[0].float().clamp(0.0, 1.0).permute(1, 2, 0).cpu().numpy()
    if result.shape[:2] != (height, width):
        result = np.clip(resize_array(result, (height, width)), 0.0, 1.0)
    return result


def predict(
    model: PyNET,
    image: ImageSource,
    depth: ImageSource | None = None,
    **kwargs: Any,
) -> Image.Image:
    """High-level PyNET call on PIL images, arrays or paths; returns a PIL image at the photo's size.

    >>> # out = predict(load_pynet("path/to/weights"), "photo.jpg", "depth.png")
    """
    photo = load_image(image)
    disparity = None if depth is None else load_depth(depth)
    return array_to_pil(run_pynet(model, photo, disparity, **kwargs))


@register_method("pynet")
class PyNETMethod(Method):
    """PyNET-Bokeh (Ignatov et al., CVPRW 2020): learned DSLR bokeh from RGB + depth."""

    name = "pynet"
    description = "PyNET-Bokeh (CVPRW 2020): bokeh learned from Canon DSLR photos (needs trained weights)."
    needs_depth = True
    params = (
        ParamSpec(
            "disable_levels",
            "choice",
            "none",
            choices=tuple(ABLATIONS),
            help="Switch off pyramid levels as in the paper's Fig. 8 (none, 7, 6+, 5+, 4+).",
            label="disabled levels",
        ),
        ParamSpec(
            "level",
            "int",
            1,
            min=1,
            max=3,
            step=1,
            help="Output level: 1 = full resolution (the paper's result), 2 = half, 3 = quarter.",
        ),
        ParamSpec(
            "max_side",
            "int",
            0,
            min=0,
            max=8192,
            step=64,
            help="Long side PyNET runs at: 0 = the default (the app and `render`: 1536 px, PyNET's trained scale; "
            "the evaluation: the dataset's own size); a smaller value is a faster preview, labelled as such.",
            label="preview size",
        ),
    )

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        device: str = "auto",
        precision: str = "fp32",
        channels_last: bool = False,
        backend: str | None = None,
    ) -> None:
        self._weights = weights
        self.device = device
        self.precision = precision
        self.channels_last = channels_last
        self.backend = backend or os.environ.get(PYNET_BACKEND_ENV, AUTO)
        self.last_backend: str | None = None  # the backend of the latest render, for display

    def backend_name(self) -> str:
        """The backend a render will use here (``auto`` resolved), e.g. to show it in the app."""
        backend = "channels_last" if self.channels_last and self.backend in ("eager", AUTO) else self.backend
        return resolve_backend(backend, resolve_device(self.device), self.precision)

    def prepare(self, level: int = 1, disable_levels: str = "none") -> str:
        """Load the weights and build the backend now (e.g. the one-off ONNX export, at app start-up).

        Returns the backend's name. Raises like :meth:`model` when the weights are missing.
        """
        name = self.backend_name()
        get_runner(self.model(), name, level, ABLATIONS[disable_levels])
        return name

    @property
    def weights(self) -> str:
        """Given weights, else ``$BOKEH_PYNET_WEIGHTS``, else the default folder; resolved at every call so
        that weights fetched in the background (the Space) are picked up without a restart."""
        return resolve_pynet_weights(self._weights)

    def availability(self) -> tuple[bool, str]:
        return weights_status(self.weights)

    def model(self) -> PyNET:
        return load_pynet(self.weights, self.device)

    def render(self, image: np.ndarray, depth: np.ndarray | None, **params: Any) -> np.ndarray:
        info: dict[str, Any] = {}
        result = run_pynet(
            self.model(),
            image,
            depth,
            level=params["level"],
            disabled_levels=ABLATIONS[params["disable_levels"]],
            max_side=params["max_side"],
            precision=self.precision,
            backend=self.backend_name(),
            info=info,
        )
        self.last_backend = info["backend"]
        return result

    def requires_depth(self) -> bool:
        # Loading first means "no weights" is reported before "no depth"; an RGB-only model needs none.
        return self.model().in_channels == 4
