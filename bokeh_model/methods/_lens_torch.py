"""PyTorch evaluation of the layered thin-lens model, for GPUs (it also runs, slowly, on the CPU).

Same model and the same approximations as :mod:`bokeh_model.methods._lens_fast` (one kernel per rounded
signed radius, coarse grids for big radii, box downsampling, bilinear upsampling), but brute force and
batched: every occupied layer is splatted with a one-hot mask, the layers of one grid scale are blurred
together by FFT convolution, and the front-to-back composite is an exclusive cumulative product over the
layer axis. Layers are processed in chunks (near to far) so that memory stays bounded on big photos.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ._lens_fast import COARSE_FROM
from ._optics import aperture_kernel, highlight_gain

__all__ = ["render_image_torch", "render_layers_torch"]


def _scale_for(size: int, coarse_from: int) -> int:
    s = 1
    while size >= 2 * s * coarse_from:
        s *= 2
    return s


def _blur_group(
    layers: torch.Tensor, sizes: list[int], s: int, blades: int, rotation_deg: float, height: int, width: int
) -> torch.Tensor:
    """Blur ``layers`` (n, 4, H, W) each with its own aperture on a grid ``s`` times coarser; back at (H, W)."""
    if s > 1:
        pad_h, pad_w = -height % s, -width % s
        layers = F.avg_pool2d(F.pad(layers, (0, pad_w, 0, pad_h)), s)
    kernels = [aperture_kernel(size / s, blades, rotation_deg) for size in sizes]
    half = max(k.shape[0] // 2 for k in kernels)
    hc, wc = layers.shape[-2:]
    fft_h, fft_w = hc + 2 * half, wc + 2 * half
    bank = torch.zeros((len(kernels), fft_h, fft_w), dtype=torch.float32)
    for index, kernel in enumerate(kernels):
        h = kernel.shape[0] // 2
        rows = np.arange(-h, h + 1) % fft_h
        cols = np.arange(-h, h + 1) % fft_w
        bank[index][np.ix_(rows, cols)] = torch.from_numpy(kernel.astype(np.float32))
    bank = bank.to(layers.device)
    spectrum = torch.fft.rfft2(layers, s=(fft_h, fft_w)) * torch.fft.rfft2(bank)[:, None]
    blurred = torch.fft.irfft2(spectrum, s=(fft_h, fft_w))[..., :hc, :wc]
    if s > 1:
        blurred = F.interpolate(blurred, scale_factor=s, mode="bilinear", align_corners=False)
        blurred = blurred[..., :height, :width]
    return blurred.clamp_min(0.0)


def _composite(
    colour_t: torch.Tensor,
    radius_t: torch.Tensor,
    blades: int,
    rotation_deg: float,
    additive: bool,
    coarse_from: int,
    chunk: int,
) -> torch.Tensor:
    """(3, H, W) colour and (H, W) signed radius on one device -> (3, H, W) composite / coverage."""
    device = colour_t.device
    height, width = radius_t.shape
    layer_of = torch.round(radius_t).to(torch.int64)  # round half to even, like np.rint
    levels = torch.unique(layer_of).flip(0).tolist()  # nearest first
    source = torch.cat([colour_t, torch.ones_like(colour_t[:1])], dim=0)  # premultiplied RGB + coverage
    out = torch.zeros((3, height, width), device=device)
    trans = torch.zeros((height, width), device=device) if additive else torch.ones((height, width), device=device)
    for start in range(0, len(levels), chunk):
        block = levels[start : start + chunk]
        layers = torch.empty((len(block), 4, height, width), device=device)
        groups: dict[int, list[int]] = {}
        for index, level in enumerate(block):
            groups.setdefault(0 if level == 0 else _scale_for(abs(level), coarse_from), []).append(index)
        masks = torch.stack([(layer_of == level) for level in block]).to(torch.float32)
        splats = masks[:, None] * source[None]
        for s, members in groups.items():
            if s == 0:
                layers[members] = splats[members]
                continue
            sizes = [abs(block[i]) for i in members]
            layers[members] = _blur_group(splats[members], sizes, s, blades, rotation_deg, height, width)
        colours, alpha = layers[:, :3], layers[:, 3]
        if additive:
            out += colours.sum(0)
            trans += alpha.sum(0)
            continue
        scale = 1.0 / alpha.clamp_min(1.0)
        alpha = alpha * scale
        before = torch.cumprod(torch.cat([trans[None], 1.0 - alpha], dim=0), dim=0)
        out += (before[:-1, None] * colours * scale[:, None]).sum(0)
        trans = before[-1]
    coverage = trans if additive else 1.0 - trans
    return out / coverage.clamp_min(1e-12)[None]


@torch.inference_mode()
def render_layers_torch(
    colour: np.ndarray | torch.Tensor,
    radius: np.ndarray | torch.Tensor,
    *,
    blades: int = 0,
    rotation_deg: float = 0.0,
    additive: bool = False,
    coarse_from: int = COARSE_FROM,
    device: str | torch.device = "cpu",
    chunk: int = 16,
) -> np.ndarray:
    """Torch twin of :func:`bokeh_model.methods._lens_fast.render_layers`; returns float32 (H, W, 3) NumPy.

    Args:
        colour: (H, W, 3) values to scatter.
        radius: (H, W) signed defocus radius in pixels.
        blades: 0 for a disc, else the number of polygon sides.
        rotation_deg: polygon rotation.
        additive: sum the layers (no occlusion) instead of compositing them front to back.
        coarse_from: layers with radius at least this many pixels use a coarser grid.
        device: where to compute.
        chunk: layers blurred at once (memory: about ``chunk * 12`` floats per pixel).
    """
    device = torch.device(device)
    colour_t = torch.as_tensor(np.asarray(colour, dtype=np.float32), device=device).permute(2, 0, 1)
    radius_t = torch.as_tensor(np.asarray(radius, dtype=np.float32), device=device)
    result = _composite(colour_t, radius_t, blades, rotation_deg, additive, coarse_from, chunk)
    return result.permute(1, 2, 0).float().cpu().numpy()


def _srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.clamp_min(0.0031308) ** (1 / 2.4) - 0.055)


@torch.inference_mode()
def render_image_torch(
    image: np.ndarray,
    radius: np.ndarray,
    *,
    blades: int = 0,
    rotation_deg: float = 0.0,
    additive: bool = False,
    linear_light: bool = True,
    highlight_boost: float = 0.0,
    coarse_from: int = COARSE_FROM,
    device: str | torch.device = "cuda",
    chunk: int = 16,
) -> np.ndarray:
    """Torch twin of :func:`bokeh_model.methods._lens_fast.render_image` (sRGB in, sRGB out) on ``device``."""
    device = torch.device(device)
    image_t = torch.as_tensor(np.asarray(image, dtype=np.float32), device=device).permute(2, 0, 1).clamp(0, 1)
    radius_t = torch.as_tensor(np.asarray(radius, dtype=np.float32), device=device)
    colour = _srgb_to_linear(image_t) if linear_light else image_t
    if highlight_boost > 0:  # the same gain map as the CPU renderer (a few box filters, computed on the CPU)
        gain = highlight_gain(np.asarray(image, np.float32), np.asarray(radius, np.float32), highlight_boost)
        colour = colour * torch.as_tensor(gain, device=device)[None]
    out = _composite(colour, radius_t, blades, rotation_deg, additive, coarse_from, chunk).clamp(0, 1)
    if linear_light:
        out = _linear_to_srgb(out)
    return out.permute(1, 2, 0).float().cpu().numpy()
