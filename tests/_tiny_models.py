"""Tiny randomly initialised models that the tests save and load through the real code paths.

They stand in for downloaded weights (none can be fetched here); their outputs mean nothing.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["he_random_pynet", "save_tiny_depth_anything", "save_tiny_dpt"]

# The transformer both tiny depth models share (DPT's ViT, Depth Anything's DINOv2 backbone).
TINY_VIT = {"hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 64}


def save_tiny_dpt(folder: str | Path) -> Path:
    """Save a random ~170k-parameter DPT with its image processor, laid out like a hub checkpoint.

    Configuration from docs/environment.md; a 384x384 forward takes about 80 ms on 2 cores.
    """
    import torch
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    torch.manual_seed(0)
    config = DPTConfig(
        **TINY_VIT,
        image_size=64,
        patch_size=16,
        backbone_out_indices=[0, 1, 2, 3],
        neck_hidden_sizes=[8, 16, 32, 64],
        fusion_hidden_size=16,
        reassemble_factors=[4, 2, 1, 0.5],
        readout_type="project",
        is_hybrid=False,
        use_auxiliary_head=False,
    )
    folder = Path(folder)
    DPTForDepthEstimation(config).save_pretrained(folder)
    DPTImageProcessor(size={"height": 64, "width": 64}).save_pretrained(folder)
    return folder


def save_tiny_depth_anything(folder: str | Path, *, size: int = 518, seed: int = 0) -> Path:
    """Save a random ~180k-parameter Depth Anything with the image processor settings of
    ``depth-anything/Depth-Anything-V2-Small-hf`` (518 px, aspect kept, sides a multiple of 14, ImageNet mean/std),
    laid out like a hub checkpoint. ``size`` < 518 makes its forward pass cheaper; ``seed`` gives another model.
    """
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    torch.manual_seed(seed)
    backbone = Dinov2Config(
        **TINY_VIT,
        image_size=518,
        patch_size=14,
        out_indices=[1, 2, 3, 4],
        reshape_hidden_states=False,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone.to_dict(),
        reassemble_hidden_size=TINY_VIT["hidden_size"],  # must equal the backbone's hidden size
        neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16,
        head_hidden_size=8,
        patch_size=14,
        depth_estimation_type="relative",
    )
    folder = Path(folder)
    DepthAnythingForDepthEstimation(config).save_pretrained(folder)
    DPTImageProcessor(
        size={"height": size, "width": size},
        keep_aspect_ratio=True,
        ensure_multiple_of=14,
        do_pad=False,
        resample=3,  # bicubic
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(folder)
    return folder


def he_random_pynet(seed: int = 0, **config: object):  # -> PyNET (imported lazily: this module stays light)
    """Full-size PyNET (or ``PyNET(**config)``) with He-scaled random conv weights, so that every level's output
    varies: for checking that backends and exports compute the same thing, never as a trained model."""
    import torch

    from bokeh_model.modeling_pynet import PyNET

    torch.manual_seed(seed)
    net = PyNET(**config).eval()
    with torch.no_grad():
        for module in net.modules():
            weight = getattr(module, "weight", None)
            if isinstance(weight, torch.nn.Parameter) and weight.ndim == 4:
                torch.nn.init.kaiming_normal_(weight, a=0.2)
    return net
