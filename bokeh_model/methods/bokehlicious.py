"""``bokehlicious``: Bokehlicious (Seizinger et al., ICCV 2025) with the authors' published checkpoints.

A learned renderer that takes the photo and a target f-number (2.0 to 20.0) and needs no depth map (the network
itself is :mod:`bokeh_model.modeling_bokehlicious`). Preprocessing as in the authors' ``predict.py`` /
``dataset/util.py``:

1. centre-crop each side down to a multiple of 4 (the network halves the image twice);
2. if the longest side exceeds ``max_dim`` (their default 2000 px), resize with OpenCV cubic interpolation so that
   it equals ``max_dim`` (shorter side truncated, as theirs) -- on 8-bit values, as theirs, when the photo is 8-bit;
3. the position map, the aperture embedding ``2.0 / f`` and its constant map; the output is clamped to [0, 1].

Two departures, both where the authors' code cannot run: when step 2 gives a side that is not a multiple of 4
(their U-Net then fails on a size mismatch), that side is rounded down to one; and the result is brought back to
the photo's own size by the project's full-resolution finish (:func:`bokeh_model.upsample.finish_full_resolution`,
guided upsampling), the at most 2 px per side cut by step 1 repeating the nearest rendered pixel.

Weights: ``python -m bokeh_model fetch bokehlicious [--variant V]`` downloads the authors' files (declared below
with :func:`~bokeh_model.method_weights.register_weights`) into ``<cache>/bokehlicious/<variant>/``. The authors
score EBB! with ``small_EBB_Val294`` (or ``small_EBB400``) at f/2.0 and no downscale (EBB! photos are below
2000 px): ``fetch bokehlicious --variant small_EBB_Val294``, then ``evaluation/run.py --methods bokehlicious
--param bokehlicious.variant=small_EBB_Val294`` (f/2.0 is the default aperture).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ..device import resolve_device
from ..errors import InputError, ModelUnavailableError
from ..method_weights import (
    MethodWeights,
    WeightsFile,
    get_weights_spec,
    installed_weights,
    register_weights,
    weights_availability,
)
from ..modeling_bokehlicious import Bokehlicious, aperture_embedding, position_map
from ..registry import Method, ParamSpec, register_method
from ..upsample import finish_full_resolution

__all__ = [
    "BOKEHLICIOUS_WEIGHTS",
    "BokehliciousMethod",
    "crop_box",
    "load_bokehlicious",
    "network_size",
    "preprocess",
    "run_bokehlicious",
]

REPOSITORY = "https://github.com/TimSeizinger/Bokehlicious"
# The commit the checkpoints are taken from (their latest, 2025-10-17): a pinned URL always gives the same bytes.
# The files are ordinary Git blobs (the repository has no .gitattributes, so no Git LFS): raw.githubusercontent.com
# serves them directly. Their Git blob ids at that commit, for the record: small 45680599..., small_EBB400
# 9926a3b6..., small_EBB_Val294 e5ee529a..., small_bin 420d9353...; the SHA-256 is recorded at the first fetch.
# No `large` checkpoint is at that commit (a 2026 README mentions large checkpoints packed as .zpaq archives in a
# later commit, which needs the zpaq tool to unpack): the network loads one (configuration from its keys) given
# as `weights=`, but none is declared for `fetch`.
COMMIT = "b5510df3a206f948d9ff4d3ebd83c198c4f11073"
VARIANTS = ("small", "small_EBB_Val294", "small_EBB400", "small_bin")
VARIANT_HELP = {
    "small": "the authors' RealBokeh model, any aperture f/2.0-f/20",
    "small_EBB_Val294": "the authors' checkpoint for EBB! Val294 (their evaluation renders EBB! at f/2.0)",
    "small_EBB400": "the authors' checkpoint for EBB400 (also at f/2.0)",
    "small_bin": "trained for two apertures only (f/2.0 and f/22, RealBokeh_bin); no strength-map input",
}
LICENSE = (
    "No licence: the authors' repository (github.com/TimSeizinger/Bokehlicious) has no licence file, so no rights "
    "to use, copy or redistribute its code or checkpoints are granted; its README asks anyone wanting commercial use "
    "to contact the authors. This project downloads the files from the authors' repository and ships none of them."
)
CITATION = (
    "Tim Seizinger, Florin-Alexandru Vasluianu, Marcos V. Conde, Zongwei Wu, Radu Timofte. Bokehlicious: "
    "Photorealistic Bokeh Rendering with Controllable Apertures. ICCV 2025."
)
BOKEHLICIOUS_WEIGHTS = register_weights(
    MethodWeights(
        method="bokehlicious",
        variants={
            name: (
                WeightsFile(
                    f"{name}.pt",
                    f"https://raw.githubusercontent.com/TimSeizinger/Bokehlicious/{COMMIT}/checkpoints/{name}.pt",
                ),
            )
            for name in VARIANTS
        },
        default_variant="small",
        source=REPOSITORY,
        license=LICENSE,
        citation=CITATION,
    )
)
MULTIPLE = 4  # sides must be multiples of this (two stride-2 levels)
MAX_DIM = 2000  # the authors' default cap on the longest side


def crop_box(height: int, width: int) -> tuple[int, int, int, int]:
    """``(top, left, new_height, new_width)`` of the authors' centre crop to multiples of 4 (extra pixel on the
    top/left side goes: they cut ``ceil(excess / 2)`` there)."""
    new_height, new_width = height - height % MULTIPLE, width - width % MULTIPLE
    if new_height < MULTIPLE or new_width < MULTIPLE:
        raise InputError(f"the photo is {width}x{height} px; Bokehlicious needs at least {MULTIPLE}x{MULTIPLE}")
    return -(-(height - new_height) // 2), -(-(width - new_width) // 2), new_height, new_width


def network_size(height: int, width: int, max_dim: int) -> tuple[int, int]:
    """The (H, W) the network runs at for a cropped photo: the authors' ``get_resolution`` above ``max_dim``
    (longest side = ``max_dim``, the other truncated), each side then rounded down to a multiple of 4."""
    if height <= max_dim and width <= max_dim:
        return height, width
    if height > width:
        new_height, new_width = max_dim, int(width * (max_dim / height))
    else:
        new_height, new_width = int(height * (max_dim / width)), max_dim
    return max(MULTIPLE, new_height - new_height % MULTIPLE), max(MULTIPLE, new_width - new_width % MULTIPLE)


def _is_8bit(image: np.ndarray) -> bool:
    return bool(np.array_equal(np.round(image * 255.0) / np.float32(255.0), image))


def preprocess(image: np.ndarray, max_dim: int = MAX_DIM) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """The photo as the network sees it: ``(network_input, cropped_photo, crop_box)``, both float32 (H, W, 3)."""
    top, left, height, width = crop_box(*image.shape[:2])
    cropped = image[top : top + height, left : left + width]
    size = network_size(height, width, max_dim)
    if size == (height, width):
        return cropped, cropped, (top, left, height, width)
    if _is_8bit(cropped):  # their resize runs on the 8-bit array PIL gives them
        as_bytes = np.round(cropped * 255.0).astype(np.uint8)
        small = cv2.resize(as_bytes, (size[1], size[0]), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255.0
    else:
        small = np.clip(cv2.resize(cropped, (size[1], size[0]), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)
    return np.ascontiguousarray(small, dtype=np.float32), cropped, (top, left, height, width)


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, modified: float, device: str) -> Bokehlicious:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError) as exc:  # truncated file, not a torch file
        raise ModelUnavailableError(f"could not read Bokehlicious weights {path}: {exc}. {_how_to()}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelUnavailableError(f"{path} is not a plain state_dict (a mapping of names to tensors). {_how_to()}")
    try:
        model = Bokehlicious.from_state_dict(state)
    except (ValueError, RuntimeError) as exc:  # keys or shapes of another network
        raise ModelUnavailableError(f"{path} is not a Bokehlicious checkpoint: {exc}") from exc
    return model.to(device).eval()


def _how_to(variant: str | None = None) -> str:
    return weights_availability("bokehlicious", variant)[1]


def load_bokehlicious(weights: str | os.PathLike, device: str | torch.device = "auto") -> Bokehlicious:
    """Load a checkpoint file (a plain ``state_dict``, as the authors publish them), configured from its keys.

    Raises:
        ModelUnavailableError: missing or unreadable file, or one that is not a Bokehlicious checkpoint.
    """
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ModelUnavailableError(f"Bokehlicious weights {str(path)!r} do not exist. {_how_to()}")
    return _load_cached(str(path.resolve()), path.stat().st_mtime, str(resolve_device(device)))


@torch.inference_mode()
def run_bokehlicious(model: Bokehlicious, image: np.ndarray, f_number: float) -> np.ndarray:
    """The network's raw output (float32 (H, W, 3), not clamped) for an image whose sides are multiples of 4."""
    height, width = image.shape[:2]
    device = next(model.parameters()).device
    embedding = aperture_embedding(f_number)
    source = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].to(device)
    strength = torch.tensor([embedding], dtype=torch.float32, device=device)
    strength_map = torch.full((1, 1, height, width), embedding, dtype=torch.float32, device=device)
    out = model(source, strength, position_map(height, width).to(device), strength_map)
    return out[0].permute(1, 2, 0).float().cpu().numpy()


@register_method("bokehlicious")
class BokehliciousMethod(Method):
    """Bokehlicious (ICCV 2025): learned bokeh with aperture control, no depth map."""

    name = "bokehlicious"
    description = (
        "Bokehlicious (Seizinger et al., ICCV 2025): learned bokeh at a chosen f-number, no depth map needed "
        "(the authors' weights; their repository grants no licence)."
    )
    needs_depth = False
    params = (
        ParamSpec(
            "aperture",
            "float",
            2.0,
            min=2.0,
            max=20.0,
            step=0.1,
            help="Target f-number: 2.0 = strongest bokeh, 20.0 = almost none (network input 2.0 / f).",
            label="aperture (f-number)",
        ),
        ParamSpec(
            "variant",
            "choice",
            "small",
            choices=VARIANTS,
            help="Published checkpoint: " + "; ".join(f"{k}: {v}" for k, v in VARIANT_HELP.items()) + ".",
        ),
        ParamSpec(
            "max_dim",
            "int",
            MAX_DIM,
            min=16,
            max=8192,
            step=16,
            help="Longest side the network runs at (the authors' default 2000; larger photos are downscaled, "
            "then brought back to their size).",
            label="network size",
        ),
    )

    def __init__(self, weights: str | os.PathLike | None = None, device: str = "auto") -> None:
        self._weights = weights
        self.device = device

    def weights_file(self, variant: str) -> Path:
        """The checkpoint to load: the given ``weights`` (a file, or a folder holding ``<variant>.pt``), else the
        fetched variant. Raises :class:`ModelUnavailableError` saying how to get it."""
        if self._weights is not None:
            path = Path(self._weights).expanduser()
            return path / f"{variant}.pt" if path.is_dir() else path
        folder = installed_weights(self.name, variant)
        if folder is None:
            raise ModelUnavailableError(_how_to(variant))
        return folder / get_weights_spec(self.name).files(variant)[0].filename

    def availability(self) -> tuple[bool, str]:
        if self._weights is not None:
            path = Path(self._weights).expanduser()
            if path.is_file() or (path.is_dir() and any(path.glob("*.pt"))):
                return True, ""
            return False, f"Bokehlicious weights {str(path)!r} not found (`--weights FILE.pt`). {_how_to()}"
        if any(installed_weights(self.name, variant) is not None for variant in VARIANTS):
            return True, ""
        return weights_availability(self.name)

    def model(self, variant: str = "small") -> Bokehlicious:
        return load_bokehlicious(self.weights_file(variant), self.device)

    def render(self, image: np.ndarray, depth: np.ndarray | None, **params: Any) -> np.ndarray:
        model = self.model(params["variant"])
        network_input, cropped, (top, left, height, width) = preprocess(image, params["max_dim"])
        result = np.clip(run_bokehlicious(model, network_input, params["aperture"]), 0.0, 1.0)
        result = finish_full_resolution(cropped, network_input, result)
        bottom, right = image.shape[0] - top - height, image.shape[1] - left - width
        if top or left or bottom or right:
            result = cv2.copyMakeBorder(result, top, bottom, left, right, cv2.BORDER_REPLICATE)
        return result
