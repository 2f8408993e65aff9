"""LPIPS v0.1 (AlexNet) of one image pair: the network built from a local AlexNet trunk, checked, cached.

The ``lpips`` package's network is created with a random trunk (which downloads nothing) and torchvision's
AlexNet weights are loaded into it from the torch hub cache (:func:`~bokeh_model.lpips_trunk.alexnet_trunk_path`;
``python -m bokeh_model fetch lpips`` puts the file there). Nothing here downloads: a missing trunk is an
:class:`LPIPSUnavailableError` that says where to place ``alexnet-owt-7be5be79.pth``, and
:func:`verify_lpips_trunk` checks that it is torchvision's published file (SHA-256 prefix in its name).
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from bokeh_model.errors import ModelUnavailableError
from bokeh_model.lpips_trunk import ALEXNET_FILE, ALEXNET_URL, alexnet_trunk_path, official_sha256_prefix
from evaluation.psnr_ssim import check_pair

__all__ = [
    "LPIPSBatch",
    "LPIPSUnavailableError",
    "build_lpips",
    "get_lpips_model",
    "lpips_distance",
    "lpips_status",
    "lpips_trunk_info",
    "verify_lpips_trunk",
]


_LPIPS_LOCK = threading.Lock()
_TRUNK_SHA256: dict[tuple[str, int, int], str] = {}


class LPIPSUnavailableError(ModelUnavailableError):
    """The AlexNet trunk that LPIPS needs is not on this machine, or is not the official file."""


def lpips_status() -> tuple[bool, str]:
    """Cheap check (no network, no loading) of whether real LPIPS can be computed here.

    Returns:
        ``(True, "")`` or ``(False, one-line reason with the exact path to place the trunk file)``.
    """
    import importlib.util

    # find_spec, not import: importing lpips pulls in torchvision's models (seconds), too slow for a status check.
    if importlib.util.find_spec("lpips") is None:  # pragma: no cover - lpips is a pinned requirement
        return False, "LPIPS unavailable: the 'lpips' package is not installed; pip install lpips==0.1.4"
    path = alexnet_trunk_path()
    if not path.is_file():
        return False, (
            f"LPIPS unavailable: AlexNet trunk not found at {path}; run `python -m bokeh_model fetch lpips`, or "
            f"download {ALEXNET_URL} and place it there (or point TORCH_HOME at a folder holding "
            f"hub/checkpoints/{ALEXNET_FILE})"
        )
    return True, ""


def lpips_trunk_info(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Which AlexNet trunk LPIPS uses: ``{"path", "sha256", "official"}`` (for run records).

    ``official`` says whether the SHA-256 starts with the prefix in the official file name, i.e. whether it is
    torchvision's published file. Reads the whole file (about 233 MB, under a second).

    Raises:
        LPIPSUnavailableError: the file is missing.
    """
    from bokeh_model.download import sha256_file

    trunk = Path(path) if path is not None else alexnet_trunk_path()
    if not trunk.is_file():
        raise LPIPSUnavailableError(lpips_status()[1] if path is None else f"AlexNet trunk not found at {trunk}")
    # Hashing 233 MB costs about a second per run (per portal submission): once per process and file version.
    stat = trunk.stat()
    key = (str(trunk.resolve()), stat.st_size, stat.st_mtime_ns)
    with _LPIPS_LOCK:
        digest = _TRUNK_SHA256.get(key)
    if digest is None:
        digest = sha256_file(trunk)
        with _LPIPS_LOCK:
            _TRUNK_SHA256[key] = digest
    return {"path": str(trunk), "sha256": digest, "official": digest.startswith(official_sha256_prefix(ALEXNET_FILE))}


def verify_lpips_trunk(*, allow_unofficial: bool = False) -> dict[str, Any]:
    """:func:`lpips_trunk_info` of the cached trunk; a file that is not the official one is an error.

    Raises:
        LPIPSUnavailableError: missing, or (unless ``allow_unofficial``) its SHA-256 does not start with the
            prefix in the official file name, so LPIPS values would not be comparable with published ones.
    """
    info = lpips_trunk_info()
    if not info["official"] and not allow_unofficial:
        prefix = official_sha256_prefix(ALEXNET_FILE)
        raise LPIPSUnavailableError(
            f"the AlexNet trunk at {info['path']} is not torchvision's file (SHA-256 {info['sha256'][:16]}... does "
            f"not start with {prefix}); delete it and run `python -m bokeh_model fetch lpips`, or pass "
            "--allow-unofficial-lpips to score with it anyway"
        )
    return info


def build_lpips(trunk_path: str | os.PathLike | None = None) -> Any:
    """Build LPIPS v0.1 (AlexNet) from the ``lpips`` package's heads and a local AlexNet trunk file.

    The network is created with a random trunk (which downloads nothing) and the trunk weights are then
    loaded from ``trunk_path`` (default :func:`alexnet_trunk_path`) with a strict key check, so the result is
    the same network ``lpips.LPIPS(net="alex")`` builds from the torch hub cache.

    Raises:
        LPIPSUnavailableError: the trunk file is missing or is not an AlexNet state dict.
    """
    import lpips
    import torch

    path = Path(trunk_path) if trunk_path is not None else alexnet_trunk_path()
    if not path.is_file():
        raise LPIPSUnavailableError(lpips_status()[1] if trunk_path is None else f"AlexNet trunk not found at {path}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torchvision's "pretrained is deprecated" notes
        model = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
    try:
        trunk = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported the same way
        raise LPIPSUnavailableError(
            f"AlexNet trunk {path} could not be read ({exc}); replace it with {ALEXNET_URL}"
        ) from None
    slice_of = {}
    for slice_name, module in model.net.named_children():
        for index in module._modules:
            slice_of[index] = slice_name
    mapped = {}
    for key, value in trunk.items():
        parts = key.split(".")
        if parts[0] != "features":
            continue  # the classifier is not part of LPIPS
        if parts[1] not in slice_of:
            raise LPIPSUnavailableError(f"{path} is not an AlexNet checkpoint (unexpected key {key!r})")
        mapped[f"{slice_of[parts[1]]}.{'.'.join(parts[1:])}"] = value
    try:
        model.net.load_state_dict(mapped, strict=True)
    except RuntimeError as exc:
        raise LPIPSUnavailableError(f"{path} does not match AlexNet: {exc}") from None
    return model.eval()


_LPIPS_CACHE: dict[str, Any] = {}


def get_lpips_model(device: str = "cpu") -> Any:
    """The real LPIPS network on ``device``, built on first use and cached.

    Raises:
        LPIPSUnavailableError: the AlexNet trunk is not in the torch hub cache (message names the path).
    """
    key = f"{alexnet_trunk_path()}|{device}"
    with _LPIPS_LOCK:
        if key not in _LPIPS_CACHE:
            ok, reason = lpips_status()
            if not ok:
                raise LPIPSUnavailableError(reason)
            _LPIPS_CACHE[key] = build_lpips().to(device)
        return _LPIPS_CACHE[key]


def lpips_distance(pred: np.ndarray, target: np.ndarray, *, model: Any = None, device: str | None = None) -> float:
    """LPIPS v0.1 AlexNet distance of one image pair (lower is better).

    Args:
        pred: float (H, W, 3) RGB in [0, 1].
        target: reference of the same shape.
        model: an ``lpips.LPIPS`` network; default: the cached real one (:func:`get_lpips_model`).
        device: where to run; default: the model's device (CPU for the cached model).

    Raises:
        ValueError: bad shapes or values.
        LPIPSUnavailableError: no model given and the AlexNet trunk is missing.
    """
    import torch

    pred, target = check_pair(pred, target)
    if pred.ndim != 3 or pred.shape[2] != 3:
        raise ValueError(f"LPIPS needs RGB images of shape (H, W, 3), got {pred.shape}")
    if model is None:
        model = get_lpips_model(device or "cpu")
    run_device = next(model.parameters()).device

    def to_tensor(image: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))[None]
        return (tensor * 2.0 - 1.0).to(run_device)

    with torch.inference_mode():
        value = model(to_tensor(pred), to_tensor(target))
    return float(value.reshape(-1)[0].item())


def _lpips_tensor(image: np.ndarray) -> Any:
    """(H, W, 3) uint8 levels or float in [0, 1] -> float32 (3, H, W) in [-1, 1], as :func:`lpips_distance` makes it
    (uint8 k becomes k / 255 in float32, the same value as float32(k / 255.0))."""
    import torch

    planar = np.ascontiguousarray(image.transpose(2, 0, 1))
    if planar.dtype == np.uint8:
        tensor = torch.from_numpy(planar).float() / 255.0
    else:
        tensor = torch.from_numpy(planar.astype(np.float32))
    return tensor * 2.0 - 1.0


class LPIPSBatch:
    """LPIPS of many pairs, run ``size`` pairs of the same shape at a time (one network call per batch).

    :meth:`add` queues a pair (cropped by ``profile``) with the row its value goes to; the value is written into
    ``row["lpips"]`` when the batch runs (full, a pair of another shape, or :meth:`flush`).
    """

    def __init__(self, model: Any, profile: Any, size: int = 4) -> None:
        self.model, self.profile, self.size = model, profile, max(1, int(size))
        self.pending: list[tuple[dict[str, Any], Any, Any]] = []

    def add(self, row: dict[str, Any], pred: np.ndarray, target: np.ndarray) -> None:
        if pred.ndim != 3 or pred.shape[2] != 3:
            raise ValueError(f"LPIPS needs RGB images of shape (H, W, 3), got {pred.shape}")
        x = _lpips_tensor(self.profile.crop(pred))
        y = _lpips_tensor(self.profile.crop(target))
        if self.pending and self.pending[0][1].shape != x.shape:
            self.flush()
        self.pending.append((row, x, y))
        if len(self.pending) >= self.size:
            self.flush()

    def drop(self, method: str) -> None:
        """Forget the queued pairs of ``method`` (a method dropped part-way)."""
        self.pending = [item for item in self.pending if item[0].get("method") != method]

    def flush(self) -> None:
        import torch

        if not self.pending:
            return
        device = next(self.model.parameters()).device
        with torch.inference_mode():
            xs = torch.stack([item[1] for item in self.pending]).to(device)
            ys = torch.stack([item[2] for item in self.pending]).to(device)
            values = self.model(xs, ys).reshape(-1).float().cpu().tolist()
        for (row, _, _), value in zip(self.pending, values, strict=True):
            row["lpips"] = float(value)
        self.pending = []
