"""Tiny randomly initialised models that the tests save and load through the real code paths.

They stand in for downloaded weights (none can be fetched here); their outputs mean nothing.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["he_random_pynet", "save_tiny_dpt"]


def save_tiny_dpt(folder: str | Path) -> Path:
    """Save a random ~170k-parameter DPT with its image processor, laid out like a hub checkpoint.

    Configuration from docs/environment.md; a 384x384 forward takes about 80 ms on 2 cores.
    """
    import torch
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    torch.manual_seed(0)
    config = DPTConfig(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=64,
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
