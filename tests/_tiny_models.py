"""Tiny randomly initialised models that the tests save and load through the real code paths.

They stand in for downloaded weights (none can be fetched here); their outputs mean nothing.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["save_tiny_dpt"]


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
