"""BokehMe's two networks in PyTorch: ARNet (adaptive rendering) and IUNet (iterative upsampling).

Peng, Cao, Luo, Lu, Xian, Zhang, "BokehMe: When Neural Rendering Meets Classical Rendering", CVPR 2022.
Written here from the paper and from reading the authors' public code (github.com/JuewenPeng/BokehMe,
``neural_renderer.py``); no code is copied. Module names and parameter shapes equal the authors', so their
checkpoints (``checkpoints/arnet.pth`` / ``iunet.pth``: a dict whose ``"model"`` entry is the ``state_dict``) load
with ``strict=True``.

Both networks share one body, in the configuration the authors' ``demo.py`` builds:

* the photo and the signed defocus map are resized (bilinear, corners aligned) to even sides, then folded 2x2 into
  channels (space-to-depth, channel = ``c * 4 + dy * 2 + dx``);
* constant planes are appended: the normalised gamma (ARNet), or the coarse bokeh image and the gamma (IUNet);
* ``conv0`` (3x3) + ELU, three residual blocks of two 3x3 conv + ELU each (``x = block(x) + x``), ``conv1`` (3x3),
  pixel shuffle 2, and a bilinear resize (corners aligned) back to the input's size.

ARNet (128 wide) outputs a bokeh image (3 channels) and an error map (sigmoid of the 4th channel); IUNet (64 wide)
outputs a refined bokeh image at the resolution of its inputs.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ARNet", "IUNet", "export_onnx", "load_bokehme_checkpoint", "parameter_count"]

SHUFFLE = 2  # the authors' shuffle_rate for both networks


class ConvAct(nn.Module):
    """3x3 convolution (padding 1), optionally followed by ELU. Its parameters are ``conv.weight``/``conv.bias``."""

    def __init__(self, in_channels: int, out_channels: int, activation: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.activation = nn.ELU() if activation else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.activation(x) if self.activation is not None else x


class ResidualStack(nn.Module):
    """``num_block`` residual blocks (two ConvAct each) with the "distinct source" skip: ``x = block(x) + x``."""

    def __init__(self, channels: int, num_block: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(ConvAct(channels, channels), ConvAct(channels, channels)) for _ in range(num_block)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x) + x
        return x


class _ShuffleBody(nn.Module):
    """Shared body: fold 2x2 -> conv0 -> residual stack -> conv1 -> unfold 2x2 -> resize to (h, w)."""

    def __init__(self, in_channels: int, out_channels: int, width: int, num_block: int) -> None:
        super().__init__()
        self.conv0 = ConvAct(in_channels, width)
        self.block_stack = ResidualStack(width, num_block)
        self.conv1 = ConvAct(width, out_channels * SHUFFLE**2, activation=False)

    @staticmethod
    def _fold(image: torch.Tensor, defocus: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[2], image.shape[3]
        even = (height // SHUFFLE * SHUFFLE, width // SHUFFLE * SHUFFLE)
        x = F.interpolate(torch.cat((image, defocus), dim=1), size=even, mode="bilinear", align_corners=True)
        return F.pixel_unshuffle(x, SHUFFLE)

    def _run(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = self.conv1(self.block_stack(self.conv0(x)))
        return F.interpolate(F.pixel_shuffle(x, SHUFFLE), size=size, mode="bilinear", align_corners=True)


class ARNet(_ShuffleBody):
    """Adaptive Rendering Network: (photo, defocus, gamma) at reduced scale -> (bokeh image, error map).

    Args:
        width: feature channels (the authors': 128).
        num_block: residual blocks (the authors': 3).
    """

    def __init__(self, width: int = 128, num_block: int = 3) -> None:
        # 4 input planes (RGB + defocus) folded 2x2, plus the gamma plane; 4 output planes (RGB + error logit)
        super().__init__(4 * SHUFFLE**2 + 1, 4, width, num_block)

    def forward(
        self, image: torch.Tensor, defocus: torch.Tensor, gamma: float | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = self._fold(image, defocus)
        x = torch.cat((x, torch.ones_like(x[:, :1]) * gamma), dim=1)
        x = self._run(x, (image.shape[2], image.shape[3]))
        return x[:, :-1], torch.sigmoid(x[:, -1:])


class IUNet(_ShuffleBody):
    """Iterative Upsampling Network: (photo, defocus, coarse bokeh, gamma) -> bokeh image at the photo's scale.

    Args:
        width: feature channels (the authors': 64).
        num_block: residual blocks (the authors': 3).
    """

    def __init__(self, width: int = 64, num_block: int = 3) -> None:
        # RGB + defocus folded 2x2, plus the coarse bokeh (3) and gamma (1) planes at the folded resolution
        super().__init__(4 * SHUFFLE**2 + 4, 3, width, num_block)

    def forward(
        self, image: torch.Tensor, defocus: torch.Tensor, bokeh_coarse: torch.Tensor, gamma: float | torch.Tensor
    ) -> torch.Tensor:
        x = self._fold(image, defocus)
        # The authors resize the coarse image (align_corners=False here, True everywhere else) only when its size
        # differs; at equal sizes this resize is the identity bit for bit, and doing it always keeps an ONNX export
        # valid for every input size.
        bokeh_coarse = F.interpolate(bokeh_coarse, size=x.shape[2:], mode="bilinear", align_corners=False)
        x = torch.cat((x, bokeh_coarse, torch.ones_like(x[:, :1]) * gamma), dim=1)
        return self._run(x, (image.shape[2], image.shape[3]))


def parameter_count(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters())


def _checkpoint_extras() -> list:  # type: ignore[type-arg]
    import argparse

    import numpy as np

    core = np._core if hasattr(np, "_core") else np.core  # NumPy 2 renamed the module that pickles point to
    extras: list = [argparse.Namespace, np.dtype, np.ndarray, core.multiarray.scalar, core.multiarray._reconstruct]  # type: ignore[type-arg]
    extras += [type(np.dtype(name)) for name in ("float32", "float64", "int64", "int32", "bool")]
    return extras


_CHECKPOINT_EXTRAS = _checkpoint_extras()


def load_bokehme_checkpoint(model: nn.Module, path: str, *, map_location: str | torch.device = "cpu") -> nn.Module:
    """Load one of the authors' checkpoint files (``{"model": state_dict, ...}`` or a bare ``state_dict``), strictly.

    Raises:
        ModelUnavailableError: unreadable file or keys/shapes that are not this network's.
    """
    from .errors import ModelUnavailableError

    with open(path, "rb") as handle:
        head = handle.read(64)
    if head.startswith(b"version https://git-lfs"):
        raise ModelUnavailableError(
            f"{path} is a Git LFS pointer, not the checkpoint: the repository serves the file itself from "
            "media.githubusercontent.com/media/<owner>/<repo>/<branch>/<path>; fetch again with --url pointing there"
        )
    try:
        # Only tensors and plain containers are unpickled; training scripts often also store their argparse
        # options and NumPy scalars beside the state_dict, which are harmless and allowed here.
        with torch.serialization.safe_globals(_CHECKPOINT_EXTRAS):
            checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a corrupt file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelUnavailableError(f"{path}: not a readable PyTorch checkpoint ({first})") from None
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ModelUnavailableError(f"{path}: expected a dict with a 'model' state_dict, got {type(checkpoint)}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelUnavailableError(
            f"{path}: not a {type(model).__name__} checkpoint of BokehMe's published shape: {exc}"
        ) from None
    return model


class _Positional(nn.Module):
    """ARNet/IUNet with the gamma as a 0-d tensor input, for export."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return self.model(*inputs)


def export_onnx(arnet: ARNet, iunet: IUNet, directory: str | os.PathLike, *, opset: int = 17) -> tuple[Path, Path]:
    """Export both networks to ONNX (``arnet.onnx``, ``iunet.onnx``) with free height and width.

    Inputs are named as in :meth:`ARNet.forward` / :meth:`IUNet.forward`; ``gamma`` is a float32 scalar tensor.
    Every op (bilinear resize with aligned corners, pixel (un)shuffle, ELU, sigmoid) maps to standard ONNX ops.

    Returns:
        The two files' paths.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    image, defocus = torch.rand(1, 3, 64, 96), torch.zeros(1, 1, 64, 96)
    coarse, gamma = torch.rand(1, 3, 32, 48), torch.tensor(0.75)
    size = {2: "height", 3: "width"}
    arnet_path, iunet_path = folder / "arnet.onnx", folder / "iunet.onnx"
    with torch.no_grad():
        torch.onnx.export(
            _Positional(arnet.eval()),
            (image, defocus, gamma),
            str(arnet_path),
            input_names=["image", "defocus", "gamma"],
            output_names=["bokeh", "error"],
            dynamic_axes={"image": size, "defocus": size},
            opset_version=opset,
            dynamo=False,
        )
        torch.onnx.export(
            _Positional(iunet.eval()),
            (image, defocus, coarse, gamma),
            str(iunet_path),
            input_names=["image", "defocus", "coarse", "gamma"],
            output_names=["bokeh"],
            dynamic_axes={"image": size, "defocus": size, "coarse": {2: "coarse_height", 3: "coarse_width"}},
            opset_version=opset,
            dynamo=False,
        )
    return arnet_path, iunet_path
