"""Validation during training: PSNR/SSIM (or the caller's metrics) on centre crops, and side-by-side samples.

The default metrics follow the authors' TensorFlow training script (``aiff22/PyNET-Bokeh:train_model.py``),
whose validation reports PSNR from the MSE and SSIM as ``tf.image.ssim``: :func:`validation_psnr` and
:func:`validation_ssim` (the latter is :func:`~bokeh_model.training.losses.ssim_tf`). They watch a run; the
official evaluation protocol (full-resolution images, the paper's metrics) is applied by ``evaluation/run.py``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..images import save_image
from .data import PairCrops
from .losses import ssim_tf

__all__ = ["DEFAULT_METRICS", "MetricFn", "to_float", "validate", "validation_psnr", "validation_ssim"]

MetricFn = Callable[[np.ndarray, np.ndarray], float]
"""``fn(output, target) -> float`` on float (H, W, 3) arrays in [0, 1]; may raise ``ValueError`` for an image it
cannot score (e.g. SSIM below 11x11), which is then left out of that metric's mean."""


def validation_psnr(output: np.ndarray, target: np.ndarray) -> float:
    """PSNR in dB for data range 1 from the mean squared error (float64); ``inf`` for identical images."""
    diff = np.asarray(output, dtype=np.float64) - np.asarray(target, dtype=np.float64)
    mse = float(np.mean(diff * diff))
    return float("inf") if mse == 0.0 else float(10.0 * np.log10(1.0 / mse))


def validation_ssim(output: np.ndarray, target: np.ndarray) -> float:
    """SSIM as ``tf.image.ssim`` (:func:`ssim_tf`); raises :class:`InputError` (a ``ValueError``) below 11x11."""

    def batch(image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]

    return float(ssim_tf(batch(output), batch(target))[0])


DEFAULT_METRICS: Mapping[str, MetricFn] = MappingProxyType({"psnr": validation_psnr, "ssim": validation_ssim})


def to_float(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A uint8 batch from :class:`PairCrops` as float in [0, 1] on ``device``."""
    return batch.to(device, non_blocking=True).float().div_(255.0)


def _side_by_side(x: np.ndarray, out: np.ndarray, target: np.ndarray) -> Image.Image:
    size = target.shape[0]
    rgb = Image.fromarray(x[..., :3]).resize((size, size), Image.Resampling.BICUBIC)
    tiles = [np.asarray(rgb), np.round(np.clip(out, 0, 1) * 255).astype(np.uint8), target]
    image = Image.fromarray(np.concatenate(tiles, axis=1))
    if size < 128:  # make coarse levels visible
        factor = math.ceil(128 / size)
        image = image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
    return image


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else values[0]  # e.g. inf PSNR on every image


@torch.no_grad()
def validate(
    model: nn.Module,
    level: int,
    val: PairCrops | None,
    *,
    images: int,
    num_samples: int,
    device: torch.device,
    autocast: Callable[[], Any],
    samples_dir: Path,
    step: int,
    metrics: Mapping[str, MetricFn] = DEFAULT_METRICS,
) -> dict[str, float]:
    """Mean ``l1`` (un-clipped output) and each metric (clipped output) over the first ``images`` crops of ``val``;
    the first ``num_samples`` are saved as ``samples_dir/step_<step>_<index>_<id>.png`` (input | output | target).

    Returns ``{}`` without validation data; a metric that scored no image is left out.
    """
    if val is None or len(val) == 0:
        return {}
    was_training = model.training
    model.eval()
    l1s: list[float] = []
    scores: dict[str, list[float]] = {name: [] for name in metrics}
    for index in range(min(images, len(val))):
        item = val[index]
        with autocast():
            out = model(to_float(item["input"][None], device), level=level)
        out = out.float()[0].permute(1, 2, 0).cpu().numpy()
        target = item["target"].permute(1, 2, 0).numpy()
        target_f = target.astype(np.float64) / 255.0
        pred = np.clip(out.astype(np.float64), 0.0, 1.0)
        l1s.append(float(np.abs(out - target_f).mean()))
        for name, fn in metrics.items():
            with contextlib.suppress(ValueError):  # an image the metric cannot score (e.g. SSIM under 11x11)
                scores[name].append(float(fn(pred, target_f)))
        if index < num_samples:
            save_image(
                _side_by_side(item["input"].permute(1, 2, 0).numpy(), out, target),
                samples_dir / f"step_{step:07d}_{index}_{item['id']}.png",
            )
    model.train(was_training)
    result = {"l1": float(np.mean(l1s))}
    result.update({name: _mean(values) for name, values in scores.items() if values})
    return result
