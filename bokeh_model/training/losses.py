"""The authors' losses: ``100 * L1`` at levels >= 2; at level 1 ``10 * L1 + 0.1 * VGG(relu5_4) + 10 * (1 - SSIM)``.

SSIM is computed as ``tf.image.ssim`` (:func:`ssim_tf`). The VGG-19 of the perceptual loss is torchvision's
IMAGENET1K_V1 file, read from the torch hub cache (:func:`vgg19_weights_path`); it is never downloaded. The
authors used MatConvNet's VGG-19 (inputs 0..255 minus the mean); the torchvision weights expect
ImageNet-normalised inputs, so the VGG term's scale differs from theirs: keep ``--loss-vgg`` at 0.1 to follow
the recipe, or tune it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, ModelUnavailableError
from .config import LossWeights

__all__ = ["VGG19_FILENAME", "VGGPerceptual", "level_loss", "load_vgg19_relu5_4", "ssim_tf", "vgg19_weights_path"]

VGG19_FILENAME = "vgg19-dcbb9e9d.pth"  # torchvision VGG19_Weights.IMAGENET1K_V1
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_RELU5_4 = 36  # torchvision vgg19().features[:36] ends with relu5_4


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return (g / g.sum()).float()


def ssim_tf(x: torch.Tensor, y: torch.Tensor, max_val: float = 1.0) -> torch.Tensor:
    """``tf.image.ssim`` for (N, C, H, W) tensors: 11x11 Gaussian (sigma 1.5), 'valid' filtering,
    k1 = 0.01, k2 = 0.03, mean over pixels then channels. Returns (N,); differentiable."""
    if x.shape != y.shape or x.ndim != 4:
        raise InputError(f"ssim_tf needs two (N, C, H, W) tensors of one shape, got {tuple(x.shape)}, {tuple(y.shape)}")
    if min(x.shape[-2:]) < 11:
        raise InputError(f"ssim_tf needs images of at least 11x11, got {tuple(x.shape[-2:])}")
    channels = x.shape[1]
    g = _gaussian_window().to(x.device, torch.float32)
    kh = g.view(1, 1, 11, 1).repeat(channels, 1, 1, 1)
    kw = g.view(1, 1, 1, 11).repeat(channels, 1, 1, 1)
    x, y = x.float(), y.float()

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, kh, groups=channels), kw, groups=channels)

    c1, c2 = (0.01 * max_val) ** 2, (0.03 * max_val) ** 2
    mu_x, mu_y = blur(x), blur(y)
    num0 = 2 * mu_x * mu_y
    den0 = mu_x**2 + mu_y**2
    luminance = (num0 + c1) / (den0 + c1)
    cs = (2 * blur(x * y) - num0 + c2) / (blur(x * x + y * y) - den0 + c2)
    return (luminance * cs).mean(dim=(-2, -1)).mean(dim=-1)


class VGGPerceptual(nn.Module):
    """ImageNet-normalise a [0, 1] RGB batch and return ``features(x)`` (relu5_4 for VGG-19)."""

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.features = features.eval()
        for param in self.features.parameters():
            param.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> VGGPerceptual:  # the loss network stays in eval mode
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features((x - self.mean) / self.std)


def vgg19_weights_path() -> Path:
    """Where torchvision keeps the IMAGENET1K_V1 VGG-19: ``$TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILENAME


def load_vgg19_relu5_4(path: str | os.PathLike | None = None) -> VGGPerceptual:
    """torchvision VGG-19 (IMAGENET1K_V1) up to relu5_4, frozen, from a local file only.

    Raises:
        ModelUnavailableError: the file is missing (the message names the path and how to get it).
    """
    weights = Path(path) if path else vgg19_weights_path()
    if not weights.is_file():
        raise ModelUnavailableError(
            f"VGG-19 weights for the level-1 perceptual loss not found at {weights}. Nothing is downloaded: "
            'on a machine with internet run `python -c "import torchvision; torchvision.models.vgg19('
            f"weights='IMAGENET1K_V1')\"` and copy ~/.cache/torch/hub/checkpoints/{VGG19_FILENAME} to {weights} "
            "(or set TORCH_HOME, or pass --vgg-weights FILE)."
        )
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        import torchvision

        model = torchvision.models.vgg19(weights=None)
        model.load_state_dict(state)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
        raise ModelUnavailableError(f"{weights} is not a torchvision VGG-19 state dict ({exc})") from None
    return VGGPerceptual(model.features[:_RELU5_4])


def level_loss(
    level: int,
    output: torch.Tensor,
    target: torch.Tensor,
    vgg: nn.Module | None = None,
    weights: LossWeights | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The authors' loss for ``level`` on (N, 3, h, w) batches in [0, 1] (output un-clipped).

    Returns:
        ``(loss, terms)``; ``terms`` holds the float values of ``l1`` and, at level 1, ``vgg``,
        ``ssim`` and ``loss``.
    """
    weights = weights or LossWeights()
    output, target = output.float(), target.float()
    if output.shape != target.shape:
        raise InputError(f"output {tuple(output.shape)} and target {tuple(target.shape)} differ at level {level}")
    l1 = (output - target).abs().mean()
    if level >= 2:
        loss = weights.l1_upper * l1
        return loss, {"loss": float(loss.detach()), "l1": float(l1.detach())}
    if vgg is None:
        raise InputError("level 1 needs the VGG-19 perceptual network (see load_vgg19_relu5_4)")
    vgg_term = F.mse_loss(vgg(output), vgg(target))
    ssim = ssim_tf(output, target).mean()
    loss = weights.l1 * l1 + weights.vgg * vgg_term + weights.ssim * (1 - ssim)
    terms = {
        "loss": float(loss.detach()),
        "l1": float(l1.detach()),
        "vgg": float(vgg_term.detach()),
        "ssim_term": float(1 - ssim.detach()),
    }
    return loss, terms
