"""The file LPIPS needs: torchvision's AlexNet trunk, its official name, download URL, cache path and checksum.

LPIPS v0.1 (Zhang et al., CVPR 2018) scores with the ImageNet AlexNet that torchvision publishes as
``alexnet-owt-7be5be79.pth``; torch hub file names carry the first hex digits of the file's SHA-256
(``7be5be79``), which is how a cached copy is recognised as the official one. :func:`bokeh_model.fetch.fetch_lpips`
downloads it here, and :mod:`evaluation.metrics` loads and verifies it.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["ALEXNET_FILE", "ALEXNET_URL", "alexnet_trunk_path", "official_sha256_prefix"]

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = f"https://download.pytorch.org/models/{ALEXNET_FILE}"


def alexnet_trunk_path() -> Path:
    """Where torchvision/torch hub keep the AlexNet trunk: ``<torch hub dir>/checkpoints/alexnet-owt-7be5be79.pth``.

    The hub dir is ``$TORCH_HOME/hub`` (default ``~/.cache/torch/hub``) or whatever ``torch.hub.set_dir`` chose.
    """
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE


def official_sha256_prefix(file_name: str = ALEXNET_FILE) -> str:
    """The SHA-256 prefix torch hub file names carry (``alexnet-owt-7be5be79.pth`` -> ``7be5be79``).

    Raises:
        ValueError: the name carries no such prefix.
    """
    match = re.search(r"-([0-9a-f]{8,})\.[A-Za-z0-9]+$", file_name)
    if match is None:
        raise ValueError(f"{file_name!r} carries no SHA-256 prefix")
    return match.group(1)
