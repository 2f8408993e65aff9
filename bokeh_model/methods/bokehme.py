"""BokehMe (Peng, Cao, Luo, Lu, Xian, Zhang, CVPR 2022): classical scatter + neural error correction, from depth.

Two registered methods:

* ``bokehme``: the full method of the paper, as the authors' ``demo.py`` runs it. The classical scatter renderer
  (:mod:`bokeh_model.methods._bokehme_scatter`) blurs ``photo ** gamma``; ARNet runs at a scale reduced by the
  largest defocus and predicts a bokeh image and an error map; IUNet upsamples that bokeh image by factors of 2,
  blended with a Gaussian-blurred in-focus mask; the result is ``classical * (1 - error) + neural * error``,
  clamped to [0, 1]. Needs the authors' published weights (``python -m bokeh_model fetch bokehme``).
* ``bokehme_classical``: the classical renderer alone (no networks, no weights). It is only the first stage of
  BokehMe, not the method the paper evaluates; it is registered separately so that a leaderboard row can never
  present it as the full method.

Inputs as in ``demo.py``: the disparity map is min-max normalised to [0, 1]; the signed defocus is
``K * (disparity - focus) / 10`` (``defocus_scale`` 10), so ``K`` (``strength``) is the blur radius in pixels of a
point at disparity distance 1 from the focal plane, as for ``lens``; ``gamma`` (1..5, default 4) is the gamma of
the classical scatter and an input of both networks. ``focus_disparity`` is in the units of the depth map given
(the app's click and ``--focus X,Y`` set it) and is normalised with the map. ``strength`` 0 returns the photo
unchanged (the authors' soft disc edge would still spread 0.07 % of each pixel into each of its 4 neighbours).

Source: https://github.com/JuewenPeng/BokehMe. Licence as found: see :data:`BOKEHME_LICENSE`.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError, ModelUnavailableError
from ..method_weights import (
    MethodWeights,
    WeightsFile,
    installed_weights,
    register_weights,
    weights_availability,
)
from ..registry import Method, ParamSpec, register_method
from .lens import FOCUS_DISPARITY

__all__ = [
    "BOKEHME_CITATION",
    "BOKEHME_LICENSE",
    "BOKEHME_WEIGHTS",
    "BokehMeClassicalMethod",
    "BokehMeMethod",
    "classical_render",
    "normalised_defocus",
    "run_bokehme",
    "warm_up",
]

DEFOCUS_SCALE = 10.0  # demo.py's --defocus_scale: the networks see defocus / 10, the scatter defocus in pixels
GAMMA_MIN, GAMMA_MAX = 1.0, 5.0  # demo.py's --gamma_min / --gamma_max (the networks' gamma normalisation)
WEIGHT_FILES = ("arnet.pth", "iunet.pth")
_RAW = "https://raw.githubusercontent.com/JuewenPeng/BokehMe/main/checkpoints"

BOKEHME_LICENSE = (
    "Unclear, treat as non-commercial: the authors' repository holds two licence files that disagree, LICENSE "
    "(MIT) and LICENSE.md ('This software is for non-commercial purposes', BSD-style conditions, copyright 2022 "
    "Juewen Peng); which one is newer could not be established, so use the code and weights for non-commercial "
    "purposes only unless the authors say otherwise."
)
BOKEHME_CITATION = (
    "Juewen Peng, Zhiguo Cao, Xianrui Luo, Hao Lu, Ke Xian, Jianming Zhang. BokehMe: When Neural Rendering Meets "
    "Classical Rendering. CVPR 2022."
)
# The authors' checkpoints are ordinary files in their repository (no Git LFS), each a dict whose "model" entry is
# the state_dict; digests are recorded in source.json at the first fetch.
BOKEHME_WEIGHTS = register_weights(
    MethodWeights(
        method="bokehme",
        variants={"default": tuple(WeightsFile(name, f"{_RAW}/{name}") for name in WEIGHT_FILES)},
        default_variant="default",
        source="https://github.com/JuewenPeng/BokehMe",
        license=BOKEHME_LICENSE,
        citation=BOKEHME_CITATION,
    )
)


def _params(default_strength: float) -> tuple[ParamSpec, ...]:
    return (
        ParamSpec(
            "strength",
            "float",
            default_strength,
            min=0.0,
            max=120.0,
            step=1.0,
            help="K, BokehMe's blur parameter: blur radius in pixels of a point at disparity distance 1 from the "
            "focal plane (defocus = K * (d - d_focus)); the authors' default is 60.",
            label="blur amount K (px)",
        ),
        FOCUS_DISPARITY,
        ParamSpec(
            "gamma",
            "float",
            4.0,
            min=GAMMA_MIN,
            max=GAMMA_MAX,
            step=0.1,
            help="Gamma of the scatter (the photo is raised to gamma before blurring): higher = brighter bokeh "
            "highlights; the authors' range 1..5, default 4.",
            label="gamma",
        ),
    )


def normalised_defocus(depth: np.ndarray, strength: float, focus_disparity: float | None) -> np.ndarray:
    """``demo.py``'s signed defocus ``K * (disp - disp_focus) / 10`` (float32) with ``disp`` min-max normalised.

    The focus is given in the depth map's units (automatic when ``None``) and normalised with the map, so the
    pixel it was read from stays sharp. The float32 operations are those of the authors' script, in their order.
    """
    from .lens import resolve_focus

    disp = np.asarray(depth, dtype=np.float32)
    focus = resolve_focus(disp, focus_disparity)
    low, high = disp.min(), disp.max()
    if high > low:
        disp = (disp - low) / (high - low)
        focus = (focus - float(low)) / (float(high) - float(low))
    else:  # a flat map: everything at one distance, in focus
        disp, focus = np.zeros_like(disp), 0.0
    focus = min(max(focus, 0.0), 1.0)
    return (strength * (disp - focus) / DEFOCUS_SCALE).astype(np.float32, copy=False)


def classical_render(
    image: torch.Tensor, defocus: torch.Tensor, gamma: float, *, threads: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The classical stage: scatter ``image ** gamma`` with radii ``defocus * 10``, then ``** (1 / gamma)``.

    Args:
        image: (1, 3, H, W) float32 RGB in [0, 1], on the CPU or CUDA.
        defocus: (1, 1, H, W) float32 signed defocus (``K * (d - d_f) / 10``), same device.
        gamma: the scatter's gamma.
        threads: CPU worker threads (default: torch's intra-op thread count).

    Returns:
        ``(bokeh, dilated)``: (1, 3, H, W) float32 (not clamped) and the dilated defocus / 10 (1, 1, H, W) float32.
    """
    from ._bokehme_scatter import scatter_cpu, scatter_torch

    powered, radii = image**gamma, defocus * DEFOCUS_SCALE
    if image.device.type == "cuda":
        bokeh, dilate = scatter_torch(powered, radii)
    else:
        from ._lens_fast import default_threads

        count = default_threads() if threads is None else max(1, int(threads))
        out, ints = scatter_cpu(powered[0].permute(1, 2, 0).numpy(), radii[0, 0].numpy(), threads=count)
        bokeh = torch.from_numpy(out).permute(2, 0, 1)[None]
        dilate = torch.from_numpy(ints)[None, None]
    return bokeh ** (1 / gamma), dilate.float() / DEFOCUS_SCALE


def _mask_blur(mask: torch.Tensor) -> torch.Tensor:
    """``demo.py``'s blur of the in-focus mask: Gaussian of radius round(0.005 (h + w)), sigma 0.3 (r - 1) + 0.8,
    replicate padding."""
    r = int(round(0.005 * (mask.shape[2] + mask.shape[3])))
    sigma = 0.3 * (r - 1) + 0.8
    offsets = torch.arange(-r, r + 1)
    squared = offsets[:, None] ** 2 + offsets[None, :] ** 2
    kernel = torch.exp(-squared / 2 / sigma**2)
    kernel = (kernel.float() / kernel.sum()).to(mask.device)[None, None]
    return F.conv2d(F.pad(mask, (r, r, r, r), mode="replicate"), kernel)


def _in_focus(dilated: torch.Tensor) -> torch.Tensor:
    return _mask_blur(((dilated < 1) & (dilated > -1)).float())


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


def run_bokehme(
    arnet: torch.nn.Module,
    iunet: torch.nn.Module,
    image: torch.Tensor,
    defocus: torch.Tensor,
    gamma: float,
    *,
    threads: int | None = None,
) -> dict[str, torch.Tensor]:
    """The full BokehMe pipeline on (1, C, H, W) tensors (``defocus`` = ``K * (d - d_f) / 10``).

    Returns ``{"bokeh", "classical", "neural", "error"}``: the clamped result, the clamped classical and neural
    images and the error map, each (1, C, H, W).
    """
    height, width = image.shape[2], image.shape[3]
    classical, dilated = classical_render(image, defocus, gamma, threads=threads)
    g = (gamma - GAMMA_MIN) / (GAMMA_MAX - GAMMA_MIN)
    # ARNet at the scale where the largest defocus becomes 1 (the authors' "adaptive" scale)
    adapt = max(defocus.abs().max().item(), 1)
    if min(height, width) / adapt < 2:  # ARNet's 2x2 fold needs at least 2 pixels a side at 1/adapt scale
        raise InputError(
            f"a {width}x{height} photo is too small for BokehMe at this blur: its networks run at 1/{adapt:.1f} "
            f"scale, which needs photo sides of at least {math.ceil(2 * adapt)} px; lower the blur amount K"
        )
    small_image = F.interpolate(image, scale_factor=1 / adapt, mode="bilinear", align_corners=True)
    small_defocus = 1 / adapt * F.interpolate(defocus, scale_factor=1 / adapt, mode="bilinear", align_corners=True)
    neural, error = arnet(small_image, small_defocus, g)
    error = _resize(error, (height, width))
    neural = neural.clamp(0, 1e5)
    # IUNet doubles the scale until the photo's own; it refines the in-focus region, the rest is upsampled
    for k in range(int(math.log2(adapt)) + 1):
        ratio = 2 ** (k + 1) / adapt
        if ratio < 1:
            size = (int(ratio * height), int(ratio * width))
            level = (_resize(image, size), ratio * _resize(defocus, size), ratio * _resize(dilated, size))
        else:  # the last step, at the photo's size
            size, level = (height, width), (image, defocus, dilated)
        refined = iunet(level[0], level[1].clamp(-1, 1), neural, g).clamp(0, 1e5)
        neural = (mask := _in_focus(level[2])) * refined + (1 - mask) * _resize(neural, size)
    bokeh = classical * (1 - error) + neural * error
    clamped = {"bokeh": bokeh, "classical": classical, "neural": neural}
    return {**{key: value.clamp(0, 1) for key, value in clamped.items()}, "error": error}


_NETWORKS: dict[tuple[str, str], tuple[torch.nn.Module, torch.nn.Module]] = {}
_NETWORKS_LOCK = threading.Lock()


def load_networks(folder: Path, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    """ARNet and IUNet from ``folder/arnet.pth`` and ``folder/iunet.pth`` (strict), cached per folder and device."""
    from ..modeling_bokehme import ARNet, IUNet, load_bokehme_checkpoint

    key = (str(Path(folder).resolve()), str(device))
    with _NETWORKS_LOCK:
        if key not in _NETWORKS:
            arnet = load_bokehme_checkpoint(ARNet(), str(Path(folder) / "arnet.pth"))
            iunet = load_bokehme_checkpoint(IUNet(), str(Path(folder) / "iunet.pth"))
            _NETWORKS[key] = (arnet.to(device).eval(), iunet.to(device).eval())
        return _NETWORKS[key]


def _tensors(image: np.ndarray, defocus: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    image_t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].to(device)
    return image_t, torch.from_numpy(defocus)[None, None].to(device)


def _to_array(x: torch.Tensor) -> np.ndarray:
    return x[0].permute(1, 2, 0).float().cpu().numpy()


class _BokehMeBase(Method):
    needs_depth = True
    params = _params(60.0)

    def __init__(self, device: str = "auto", threads: int | None = None) -> None:
        self.device = device
        self.threads = threads

    def _prepare(self, image: np.ndarray, depth: np.ndarray | None, params: dict[str, Any]) -> np.ndarray | None:
        if depth is None:
            raise InputError(f"method {self.name!r} needs a depth map")
        if params["strength"] == 0:
            return None
        return normalised_defocus(depth, params["strength"], params["focus_disparity"])


@register_method("bokehme")
class BokehMeMethod(_BokehMeBase):
    """BokehMe, the full method: classical scatter + ARNet/IUNet error correction with the authors' weights."""

    name = "bokehme"
    description = (
        "BokehMe (Peng et al., CVPR 2022): classical scatter renderer corrected by two networks (ARNet, IUNet) "
        "with the authors' published weights; from depth, focus and blur amount K. Licence: two conflicting "
        "files in the authors' repository (MIT and non-commercial): non-commercial use only."
    )

    def __init__(self, weights: str | None = None, device: str = "auto", threads: int | None = None) -> None:
        super().__init__(device=device, threads=threads)
        self.weights = weights

    def _folder(self) -> Path | None:
        if self.weights is not None:
            folder = Path(self.weights)
            return folder if all((folder / name).is_file() for name in WEIGHT_FILES) else None
        return installed_weights("bokehme")

    def availability(self) -> tuple[bool, str]:
        if self.weights is not None:
            if self._folder() is None:
                return False, (
                    f"BokehMe weights folder {self.weights} lacks {' and '.join(WEIGHT_FILES)}; "
                    "`python -m bokeh_model fetch bokehme` downloads the authors' files"
                )
            return True, ""
        available, reason = weights_availability("bokehme")
        return (True, "") if available else (False, reason)

    def render(self, image: np.ndarray, depth: np.ndarray | None, **params: Any) -> np.ndarray:
        from ..device import resolve_device

        available, reason = self.availability()
        if not available:
            raise ModelUnavailableError(reason)
        defocus = self._prepare(image, depth, params)
        if defocus is None:
            return image.copy()
        device = resolve_device(self.device)
        folder = self._folder()
        assert folder is not None  # availability() said so
        arnet, iunet = load_networks(folder, device)
        image_t, defocus_t = _tensors(image, defocus, device)
        with torch.inference_mode():
            out = run_bokehme(arnet, iunet, image_t, defocus_t, float(params["gamma"]), threads=self.threads)
        return _to_array(out["bokeh"])


@register_method("bokehme_classical")
class BokehMeClassicalMethod(_BokehMeBase):
    """Only the classical stage of BokehMe (no networks, no weights): NOT the full method of the paper."""

    name = "bokehme_classical"
    description = (
        "BokehMe's classical scatter renderer ONLY (first stage of Peng et al., CVPR 2022, without its neural "
        "error correction; needs no weights): not the full BokehMe method. Same parameters as bokehme."
    )

    def render(self, image: np.ndarray, depth: np.ndarray | None, **params: Any) -> np.ndarray:
        from ..device import resolve_device

        defocus = self._prepare(image, depth, params)
        if defocus is None:
            return image.copy()
        image_t, defocus_t = _tensors(image, defocus, resolve_device(self.device))
        with torch.inference_mode():
            bokeh, _ = classical_render(image_t, defocus_t, float(params["gamma"]), threads=self.threads)
        return _to_array(bokeh.clamp(0, 1))


def warm_up() -> None:
    """Compile (or load from Numba's on-disk cache) the CPU scatter kernel; ~10 s the first time on a machine."""
    from ._bokehme_scatter import scatter_cpu

    ramp = np.linspace(-3.0, 3.0, 64, dtype=np.float32).reshape(8, 8)
    scatter_cpu(np.full((8, 8, 3), 0.5, np.float32), ramp)
