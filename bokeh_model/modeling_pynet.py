"""PyNET-Bokeh in PyTorch.

Ignatov, Patel, Timofte, "Rendering Natural Camera Bokeh Effect with Deep Learning", CVPRW 2020.
Architecture as built by the authors' TensorFlow code (``aiff22/PyNET-Bokeh:model.py``):

* input: RGB + depth (4 channels, each 8-bit / 255) at **half** the photo's resolution;
* space-to-depth (TensorFlow channel order), then an encoder of multi-kernel blocks with max-pools;
* seven levels, 7 (1/32 of the input) up to 1 (2x the input = the photo's resolution); each level
  refines features passed up from the level below through 3x3 stride-2 transposed convolutions;
* instance norm with eps 1e-3 (affine) in levels 7..4 and the encoder below e1, LeakyReLU 0.2,
  heads ``0.58 * tanh(x) + 0.5``.

With the depth channel the model has exactly 47,551,791 parameters (the paper's 47.5M).
Modules are registered in the order in which the TF graph creates its variables, so a converted
checkpoint maps one-to-one by creation order (see ``convert_tf_checkpoint.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

__all__ = [
    "LEVEL_SCALES",
    "PyNET",
    "PyNETConvLayer",
    "PyNETMultiKernelBlock",
    "PyNETTransposedConv",
    "space_to_depth_tf",
    "tf_same_conv_transpose2d",
]

# Resolution of each level's output relative to the network input (the half-resolution photo).
LEVEL_SCALES: dict[int, float] = {7: 1 / 32, 6: 1 / 16, 5: 1 / 8, 4: 1 / 4, 3: 1 / 2, 2: 1.0, 1: 2.0}
_DISABLEABLE_LEVELS = (4, 5, 6, 7)
# Keyword arguments huggingface_hub passes to ``_from_pretrained`` besides the model's own (``config.json``).
_HUB_LOAD_ARGS = frozenset(
    {
        "model_id",
        "revision",
        "cache_dir",
        "force_download",
        "proxies",
        "resume_download",
        "local_files_only",
        "token",
        "map_location",
        "strict",
    }
)


def space_to_depth_tf(x: torch.Tensor, block: int = 2) -> torch.Tensor:
    """``tf.nn.space_to_depth`` for NCHW tensors: output channel = (dy * block + dx) * C + c.

    ``torch.nn.functional.pixel_unshuffle`` orders channels as c * block**2 + dy * block + dx instead,
    which would silently scramble converted first-layer weights.
    """
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // block, block, w // block, block)
    return x.permute(0, 3, 5, 1, 2, 4).reshape(n, c * block * block, h // block, w // block)


def tf_same_conv_transpose2d(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """3x3 stride-2 transposed convolution aligned like ``tf.nn.conv2d_transpose(padding='SAME')``.

    TF pads the implicit full output (2H + 1) by 0 before and 1 after, so input pixel i writes to
    output pixels 2i, 2i + 1, 2i + 2 and the output is the full result minus its last row and column.
    ``padding=1, output_padding=1`` in PyTorch would shift everything by one pixel.
    """
    full = F.conv_transpose2d(x, weight, stride=2, padding=0)
    return full[:, :, : 2 * x.shape[2], : 2 * x.shape[3]]


class PyNETConvLayer(nn.Module):
    """k x k conv (stride 1, zero 'SAME' padding, bias) -> optional instance norm -> optional LeakyReLU(0.2)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        instance_norm: bool = False,
        activation: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        # TF computes (x - mean) / sqrt(var + 1e-3) with the biased variance; PyTorch's default eps is 1e-5.
        self.norm = nn.InstanceNorm2d(out_channels, eps=1e-3, affine=True) if instance_norm else None
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.norm is not None:
            x = self.norm(x)
        return F.leaky_relu(x, 0.2) if self.activation else x


class PyNETMultiKernelBlock(nn.Module):
    """Parallel branches of two k x k conv layers for k in {3, 5, 7, 9} up to ``max_kernel``, concatenated.

    Output channels = ``channels`` x number of branches (3 -> 1, 5 -> 2, 7 -> 3, 9 -> 4).
    """

    def __init__(self, in_channels: int, channels: int, max_kernel: int, instance_norm: bool) -> None:
        super().__init__()
        if max_kernel not in (3, 5, 7, 9):
            raise ValueError(f"max_kernel must be 3, 5, 7 or 9, got {max_kernel}")
        self.branches = nn.ModuleList(
            nn.Sequential(
                PyNETConvLayer(in_channels, channels, k, instance_norm),
                PyNETConvLayer(channels, channels, k, instance_norm),
            )
            for k in range(3, max_kernel + 1, 2)
        )
        self.out_channels = channels * len(self.branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.branches) == 1:
            return self.branches[0](x)
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class PyNETTransposedConv(nn.Module):
    """x2 upsampling: 3x3 stride-2 transposed conv (TF 'SAME' alignment, no bias) + LeakyReLU(0.2)."""

    def __init__(self, in_channels: int, out_channels: int, activation: bool = True) -> None:
        super().__init__()
        # Same layout as nn.ConvTranspose2d: (in, out, kH, kW).
        self.weight = nn.Parameter(torch.empty(in_channels, out_channels, 3, 3))
        nn.init.trunc_normal_(self.weight, std=0.01, a=-0.02, b=0.02)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = tf_same_conv_transpose2d(x, self.weight)
        return F.leaky_relu(x, 0.2) if self.activation else x


def _head(in_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, 3, 3, padding=1)


def _output(logits: torch.Tensor) -> torch.Tensor:
    return 0.58 * torch.tanh(logits) + 0.5


class PyNET(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="bokeh-model",
    tags=["bokeh", "image-to-image", "pynet"],
    repo_url="https://github.com/aiff22/PyNET-Bokeh",
    paper_url="https://arxiv.org/abs/2006.05698",
    license="other",
):
    """PyNET-Bokeh: a seven-level inverted pyramid network (47.55M parameters with depth).

    Args:
        in_channels: 4 for RGB + depth (the paper's model), 3 for the RGB-only variant.
        instance_norm: instance norm in the encoder and levels 7..4 (``False`` = the paper's mobile
            variant of Table 2, without instance norm).
        instance_norm_level_3: instance norm in level 3's 9x9 blocks; ``False`` as in the authors'
            training and test scripts.

    Input: (N, in_channels, H, W) in [0, 1], the photo at half resolution (any H, W: sides that are not
    multiples of 32 are reflect-padded and the output cropped back).
    Output of level L: (N, 3, H * s, W * s) with s = ``LEVEL_SCALES[L]``; level 1 = (N, 3, 2H, 2W).
    Values lie in about (-0.08, 1.08); clip to [0, 1] for display.

    >>> model = PyNET()
    >>> model(torch.rand(1, 4, 64, 96)).shape
    torch.Size([1, 3, 128, 192])
    """

    def __init__(self, in_channels: int = 4, instance_norm: bool = True, instance_norm_level_3: bool = False) -> None:
        super().__init__()
        if in_channels not in (3, 4):
            raise ValueError(f"in_channels must be 3 (RGB) or 4 (RGB + depth), got {in_channels}")
        self.in_channels = in_channels
        norm = instance_norm
        norm3 = instance_norm_level_3

        def mb(cin: int, n: int, k: int, use_norm: bool) -> PyNETMultiKernelBlock:
            return PyNETMultiKernelBlock(cin, n, k, use_norm)

        # Encoder (TF: conv_l1_d1 .. conv_l4_d1). e1 never has instance norm.
        self.enc1 = mb(4 * in_channels, 32, 3, False)
        self.enc2 = mb(32, 64, 3, norm)
        self.enc3 = mb(64, 128, 3, norm)
        self.enc4 = mb(128, 256, 3, norm)

        # Level 7 (1/32): four 3x3 blocks of 512, residuals a1->a2->a3.
        self.l7_block1 = mb(256, 512, 3, norm)
        self.l7_block2 = mb(512, 512, 3, norm)
        self.l7_block3 = mb(512, 512, 3, norm)
        self.l7_block4 = mb(512, 512, 3, norm)
        self.l7_up_a = PyNETTransposedConv(512, 256)
        self.l7_up_b = PyNETTransposedConv(512, 256)
        self.l7_head = _head(512)

        # Level 6 (1/16).
        self.l6_block1 = mb(512, 256, 3, norm)
        self.l6_block2 = mb(256, 256, 3, norm)
        self.l6_block3 = mb(256, 256, 3, norm)
        self.l6_block4 = mb(256, 256, 3, norm)
        self.l6_block5 = mb(512, 256, 3, norm)
        self.l6_up_a = PyNETTransposedConv(256, 128)
        self.l6_up_b = PyNETTransposedConv(256, 128)
        self.l6_head = _head(256)

        # Level 5 (1/8).
        self.l5_block1 = mb(256, 128, 5, norm)
        self.l5_block2 = mb(256, 128, 5, norm)
        self.l5_block3 = mb(256, 128, 5, norm)
        self.l5_block4 = mb(256, 128, 5, norm)
        self.l5_block5 = mb(512, 128, 3, norm)
        self.l5_up_a = PyNETTransposedConv(128, 64)
        self.l5_up_b = PyNETTransposedConv(128, 64)
        self.l5_head = _head(128)

        # Level 4 (1/4).
        self.l4_block1 = mb(128, 64, 5, norm)
        self.l4_block2 = mb(192, 64, 7, norm)
        self.l4_block3 = mb(192, 64, 7, norm)
        self.l4_block4 = mb(192, 64, 7, norm)
        self.l4_block5 = mb(192, 64, 7, norm)
        self.l4_block6 = mb(256, 64, 5, norm)
        self.l4_block7 = mb(192, 64, 3, norm)
        self.l4_up_a = PyNETTransposedConv(64, 32)
        self.l4_up_b = PyNETTransposedConv(64, 32)
        self.l4_head = _head(64)

        # Level 3 (1/2): no instance norm in the authors' configuration.
        self.l3_block1 = mb(64, 32, 5, False)
        self.l3_block2 = mb(96, 32, 7, False)
        self.l3_block3 = mb(96, 32, 9, norm3)
        self.l3_block4 = mb(128, 32, 9, norm3)
        self.l3_block5 = mb(128, 32, 9, norm3)
        self.l3_block6 = mb(128, 32, 9, norm3)
        self.l3_block7 = mb(128, 32, 7, False)
        self.l3_block8 = mb(128, 32, 5, False)
        self.l3_block9 = mb(128, 32, 3, False)
        self.l3_head = _head(32)

        # Level 2 (1x) and level 1 (2x): thin upsampling heads.
        self.l2_up = PyNETTransposedConv(32, 8)
        self.l2_head = _head(8)
        self.l1_up = PyNETTransposedConv(3, 3)
        self.l1_head = _head(3)

        self._init_like_tf()

    @classmethod
    def _from_pretrained(cls, **kwargs: Any) -> PyNET:
        """``from_pretrained``'s loader; a strict load builds the model on the ``meta`` device.

        A strict load overwrites every tensor, so the truncated-normal initialisation of 47.5M weights (seconds
        on a CPU) would be wasted: the model is built without storage and the safetensors file is assigned
        (``load_state_dict(strict=True, assign=True)``). A non-strict load keeps the default path, so tensors
        the checkpoint lacks keep their initial values.
        """
        if not kwargs.get("strict"):
            return super()._from_pretrained(**kwargs)
        model_file = _safetensors_file(kwargs)
        if model_file is None:  # a hub repository with pytorch_model.bin only
            return super()._from_pretrained(**kwargs)
        from safetensors.torch import load_file

        model_kwargs = {key: value for key, value in kwargs.items() if key not in _HUB_LOAD_ARGS}
        with torch.device("meta"):
            model = cls(**model_kwargs)
        map_location = kwargs.get("map_location") or "cpu"
        state = load_file(model_file, device=str(map_location))
        model.load_state_dict(state, strict=True, assign=True)
        return model.eval()

    def _init_like_tf(self) -> None:
        # The authors: truncated normal (std 0.01) kernels, biases 0.01. Only matters for training from scratch.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.trunc_normal_(module.weight, std=0.01, a=-0.02, b=0.02)
                nn.init.constant_(module.bias, 0.01)

    # ------------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, level: int = 1, disabled_levels: Iterable[int] = ()) -> torch.Tensor:
        """Run the pyramid up to ``level`` (1 = full resolution) and return that level's output.

        Args:
            x: (N, in_channels, H, W) in [0, 1].
            level: the output level to return, 1..7.
            disabled_levels: levels among 7..4 whose activations passed upwards are set to zero
                (the paper's Fig. 8 ablation).

        Returns:
            (N, 3, H * s, W * s) for s = ``LEVEL_SCALES[level]``.
        """
        outputs, height, width = self._padded_pyramid(x, level, disabled_levels)
        return _crop(outputs[level], height, width, level)

    def forward_pyramid(
        self, x: torch.Tensor, level: int = 1, disabled_levels: Iterable[int] = ()
    ) -> dict[int, torch.Tensor]:
        """Like :meth:`forward`, but return ``{level: output}`` for every level computed on the way to ``level``
        (``level`` itself and the coarser ones up to 7, except disabled levels), each cropped like ``forward``'s."""
        outputs, height, width = self._padded_pyramid(x, level, disabled_levels)
        return {lvl: _crop(out, height, width, lvl) for lvl, out in outputs.items()}

    def _padded_pyramid(
        self, x: torch.Tensor, level: int, disabled_levels: Iterable[int]
    ) -> tuple[dict[int, torch.Tensor], int, int]:
        if level not in LEVEL_SCALES:
            raise ValueError(f"level must be one of 1..7, got {level}")
        disabled = {int(v) for v in disabled_levels}
        if not disabled <= set(_DISABLEABLE_LEVELS):
            raise ValueError(f"only levels {_DISABLEABLE_LEVELS} can be disabled, got {sorted(disabled)}")
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input of shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        height, width = x.shape[-2:]
        x = _pad_to_multiple(x, 32, minimum=64)
        return self._pyramid(x, level, disabled), height, width

    def _pyramid(self, x: torch.Tensor, level: int, disabled: set[int]) -> dict[int, torch.Tensor]:
        outputs: dict[int, torch.Tensor] = {}
        s2d = space_to_depth_tf(x, 2)
        e1 = self.enc1(s2d)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(F.max_pool2d(e2, 2))
        e4 = self.enc4(F.max_pool2d(e3, 2))
        p4 = F.max_pool2d(e4, 2)

        def zeros_like_up(reference: torch.Tensor, channels: int) -> torch.Tensor:
            n, _, h, w = reference.shape
            return reference.new_zeros(n, channels, 2 * h, 2 * w)

        # Level 7
        if 7 in disabled:
            up7a = up7b = zeros_like_up(p4, 256)
        else:
            a1 = self.l7_block1(p4)
            a2 = self.l7_block2(a1) + a1
            a3 = self.l7_block3(a2) + a2
            a4 = self.l7_block4(a3)
            up7a, up7b = self.l7_up_a(a4), self.l7_up_b(a4)
            outputs[7] = _output(self.l7_head(a4))
        if level == 7:
            return outputs

        # Level 6
        if 6 in disabled:
            up6a = up6b = zeros_like_up(e4, 128)
        else:
            b3 = self.l6_block1(torch.cat([e4, up7a], 1))
            b4 = self.l6_block2(b3) + b3
            b5 = self.l6_block3(b4) + b4
            b6 = torch.cat([self.l6_block4(b5), up7b], 1)
            b7 = self.l6_block5(b6)
            up6a, up6b = self.l6_up_a(b7), self.l6_up_b(b7)
            outputs[6] = _output(self.l6_head(b7))
        if level == 6:
            return outputs

        # Level 5
        if 5 in disabled:
            up5a = up5b = zeros_like_up(e3, 64)
        else:
            c2 = torch.cat([e3, up6a], 1)
            c3 = self.l5_block1(c2) + c2
            c4 = self.l5_block2(c3) + c3
            c5 = self.l5_block3(c4) + c4
            c7 = torch.cat([self.l5_block4(c5), e3, up6b], 1)
            c8 = self.l5_block5(c7)
            up5a, up5b = self.l5_up_a(c8), self.l5_up_b(c8)
            outputs[5] = _output(self.l5_head(c8))
        if level == 5:
            return outputs

        # Level 4
        if 4 in disabled:
            up4a = up4b = zeros_like_up(e2, 32)
        else:
            d2 = torch.cat([e2, up5a], 1)
            d3 = torch.cat([self.l4_block1(d2), e2], 1)
            d4 = self.l4_block2(d3) + d3
            d5 = self.l4_block3(d4) + d4
            d6 = self.l4_block4(d5) + d5
            d7 = torch.cat([self.l4_block5(d6), e2], 1)
            d8 = torch.cat([self.l4_block6(d7), up5b], 1)
            d9 = self.l4_block7(d8)
            up4a, up4b = self.l4_up_a(d9), self.l4_up_b(d9)
            outputs[4] = _output(self.l4_head(d9))
        if level == 4:
            return outputs

        # Level 3
        f2 = torch.cat([e1, up4a], 1)
        f3 = torch.cat([self.l3_block1(f2), e1], 1)
        f4 = self.l3_block2(f3)
        f5 = self.l3_block3(f4)
        f6 = self.l3_block4(f5) + f5
        f7 = self.l3_block5(f6) + f6
        f8 = self.l3_block6(f7) + f7
        f9 = torch.cat([self.l3_block7(f8), e1], 1)
        f10 = torch.cat([self.l3_block8(f9), up4b], 1)
        f11 = torch.cat([f10, e1], 1)
        f12 = self.l3_block9(f11)
        outputs[3] = _output(self.l3_head(f12))
        if level == 3:
            return outputs

        # Level 2: its pre-tanh logits (not features) feed level 1.
        g_logits = self.l2_head(self.l2_up(f12))
        outputs[2] = _output(g_logits)
        if level == 2:
            return outputs

        outputs[1] = _output(self.l1_head(self.l1_up(g_logits)))
        return outputs


def _scaled(size: int, scale: float) -> int:
    return max(1, int(-(-size * scale // 1)))  # ceil


def _crop(output: torch.Tensor, height: int, width: int, level: int) -> torch.Tensor:
    """A level's output on the padded input cropped to the unpadded input's extent at that level's scale."""
    scale = LEVEL_SCALES[level]
    return output[..., : _scaled(height, scale), : _scaled(width, scale)]


def _safetensors_file(hub_kwargs: dict[str, Any]) -> str | None:
    """The ``model.safetensors`` that ``from_pretrained`` would read (downloaded or from the cache), or ``None``."""
    model_id = str(hub_kwargs["model_id"])
    if os.path.isdir(model_id):
        return os.path.join(model_id, "model.safetensors")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return hf_hub_download(
            repo_id=model_id,
            filename="model.safetensors",
            revision=hub_kwargs.get("revision"),
            cache_dir=hub_kwargs.get("cache_dir"),
            force_download=bool(hub_kwargs.get("force_download", False)),
            token=hub_kwargs.get("token"),
            local_files_only=bool(hub_kwargs.get("local_files_only", False)),
        )
    except EntryNotFoundError:
        return None


def _pad_to_multiple(x: torch.Tensor, multiple: int, minimum: int = 0) -> torch.Tensor:
    # minimum=64 keeps level 7 at least 2x2: instance norm over a single pixel is undefined in PyTorch.
    height, width = x.shape[-2:]
    pad_h = max((-height) % multiple, minimum - height)
    pad_w = max((-width) % multiple, minimum - width)
    if pad_h == 0 and pad_w == 0:
        return x
    # Reflect needs the pad to be smaller than the side; tiny inputs fall back to edge replication.
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
