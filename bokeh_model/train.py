"""Train PyNET-Bokeh level by level, as the authors do (``aiff22/PyNET-Bokeh:train_model.py``), in PyTorch.

Schedule (``shared/docs/pynet.md`` §2): levels 7 -> 1; each level starts from the previous level's
weights, builds the whole pyramid below it and trains every parameter that reaches its output, with a
fresh Adam (lr 5e-5, TF defaults). Losses: ``100 * L1`` at levels >= 2; at level 1
``10 * L1 + 0.1 * VGG(relu5_4) + 10 * (1 - SSIM)`` (SSIM as ``tf.image.ssim``). Default iterations
and batch sizes per level are the authors' (:data:`DEFAULT_ITERATIONS`, :data:`DEFAULT_BATCH_SIZES`).

Data: a ``datasets`` dataset with columns ``id``, ``original`` (the photo), ``bokeh`` (the target, same
size) and ``depth`` (disparity, near = bright; optional with ``use_depth=False``), e.g. the EBB! copy
written by ``python -m evaluation.ebb build``. Rows are decoded lazily, one sample at a time, as uint8:
the photo is downscaled x0.5 (bicubic, as the authors), a random ``crop_size`` square is cut from it
and the matching ``2 * crop_size`` square from the full-resolution target, which is then resized
(bicubic) to the level's scale; a random 90-degree rotation and vertical flip are applied to both.
Memory is bounded by ``workers x prefetch x batch`` samples at every level.

Per level, ``OUT/level_L/`` holds ``checkpoint-NNNNNNN/`` (``from_pretrained`` files + optimizer state),
``latest.json`` (what to resume from), ``samples/`` (input | output | target PNGs per eval step) and,
once the level is done, ``model/`` (the weights the next level starts from; use it with
``--weights``). ``OUT/metrics.csv`` logs training loss terms and validation PSNR/SSIM
(``evaluation.metrics``). A stopped run resumes where its last checkpoint left it.

Multi-GPU: ``accelerate launch --multi_gpu -m bokeh_model train ...`` (data parallel; the batch sizes
are global and split across processes). ``mixed_precision="bf16"`` (or ``"fp16"`` on CUDA) autocasts the
network; the losses are computed in float32.

The VGG-19 of the perceptual loss is torchvision's IMAGENET1K_V1 file, read from the torch hub cache
(:func:`vgg19_weights_path`); it is never downloaded. The authors used MatConvNet's VGG-19 (inputs
0..255 minus the mean); the torchvision weights expect ImageNet-normalised inputs, so the VGG term's scale
differs from theirs: keep ``--loss-vgg`` at 0.1 to follow the recipe, or tune it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .errors import InputError, ModelUnavailableError
from .files import atomic_write
from .modeling_pynet import LEVEL_SCALES, PyNET

__all__ = [
    "DEFAULT_BATCH_SIZES",
    "DEFAULT_ITERATIONS",
    "LEVELS",
    "VGG19_FILENAME",
    "LossWeights",
    "PairCrops",
    "TrainConfig",
    "VGGPerceptual",
    "crop_pair",
    "level_loss",
    "level_sequence",
    "load_pretrained_fast",
    "load_vgg19_relu5_4",
    "parse_per_level",
    "ssim_tf",
    "train",
    "vgg19_weights_path",
]

LEVELS = (7, 6, 5, 4, 3, 2, 1)
# utils.NUM_DEFAULT_TRAIN_ITERS and the README's commands (V100 16 GB), indexed by level.
DEFAULT_ITERATIONS: dict[int, int] = {7: 5000, 6: 5000, 5: 20000, 4: 20000, 3: 30000, 2: 80000, 1: 100000}
DEFAULT_BATCH_SIZES: dict[int, int] = {7: 50, 6: 50, 5: 40, 4: 14, 3: 9, 2: 9, 1: 5}
VGG19_FILENAME = "vgg19-dcbb9e9d.pth"  # torchvision VGG19_Weights.IMAGENET1K_V1
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_RELU5_4 = 36  # torchvision vgg19().features[:36] ends with relu5_4
_CSV_FIELDS = ("time", "level", "step", "split", "loss", "l1", "vgg", "ssim_term", "psnr", "ssim", "images_per_s")


# ------------------------------------------------------------------------------------------ config


@dataclass
class LossWeights:
    """Loss weights of the authors' ``train_model.py``."""

    l1_upper: float = 100.0  # levels >= 2: 100 * L1
    l1: float = 10.0  # level 1
    vgg: float = 0.1  # level 1, relu5_4 feature MSE
    ssim: float = 10.0  # level 1, 1 - SSIM


@dataclass
class TrainConfig:
    """Everything a training run needs; the CLI fills it from flags.

    Attributes:
        dataset: hub id, hub-layout folder, parquet file or ``save_to_disk`` folder.
        output_dir: where checkpoints, samples and ``metrics.csv`` go.
        levels: levels to train, in order (a subset of 7..1, descending).
        iterations / batch_sizes: per level; batch sizes are global across processes.
        crop_size: side of the half-resolution input crop (the authors: 512); a multiple of 32, >= 64.
        init_weights: ``from_pretrained`` folder or hub id to start the first level from, when there is
            no previous level in ``output_dir``. Without it only level 7 may start from scratch.
        stop_after: stop (with a checkpoint) after this many optimizer steps in this invocation.
    """

    dataset: str
    output_dir: str | os.PathLike
    levels: tuple[int, ...] = LEVELS
    iterations: dict[int, int] = field(default_factory=lambda: dict(DEFAULT_ITERATIONS))
    batch_sizes: dict[int, int] = field(default_factory=lambda: dict(DEFAULT_BATCH_SIZES))
    crop_size: int = 512
    learning_rate: float = 5e-5
    train_split: str = "train"
    val_split: str | None = "val294"
    val_images: int = 32
    num_samples: int = 4
    eval_every: int = 1000
    log_every: int = 50
    keep_checkpoints: int = 2
    init_weights: str | None = None
    from_scratch: bool = False
    use_depth: bool = True
    workers: int = 4
    seed: int = 0
    mixed_precision: str = "no"
    cpu: bool = False
    vgg_weights: str | None = None
    loss_weights: LossWeights = field(default_factory=LossWeights)
    stop_after: int | None = None
    tensorboard: bool = False
    progress: bool = True

    def validate(self) -> None:
        """Raise :class:`InputError` naming the first bad value."""
        bad = [lvl for lvl in self.levels if lvl not in LEVEL_SCALES]
        if bad or not self.levels:
            raise InputError(f"levels must be a non-empty subset of 7..1, got {list(self.levels)}")
        if list(self.levels) != sorted(set(self.levels), reverse=True):
            raise InputError(f"levels must be distinct and descending (7 first, 1 last), got {list(self.levels)}")
        if self.crop_size < 64 or self.crop_size % 32:
            raise InputError(f"crop_size must be a multiple of 32 and at least 64, got {self.crop_size}")
        for name, table in (("iterations", self.iterations), ("batch size", self.batch_sizes)):
            for level in self.levels:
                if int(table.get(level, 0)) < 1:
                    raise InputError(f"{name} for level {level} must be >= 1, got {table.get(level)}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise InputError(f"mixed_precision must be no, bf16 or fp16, got {self.mixed_precision!r}")
        if self.learning_rate <= 0:
            raise InputError(f"learning_rate must be > 0, got {self.learning_rate}")
        for name in ("eval_every", "log_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.stop_after is not None and self.stop_after < 1:
            raise InputError(f"stop_after must be >= 1, got {self.stop_after}")


def parse_per_level(text: str, defaults: Mapping[int, int], what: str) -> dict[int, int]:
    """``"500"`` (every level) or ``"7=500,6=400"`` (those levels; others keep ``defaults``)."""
    result = dict(defaults)
    text = text.strip()
    try:
        if "=" not in text:
            value = int(text)
            return dict.fromkeys(LEVELS, value)
        for part in text.split(","):
            level, value = part.split("=")
            if int(level) not in LEVEL_SCALES:
                raise InputError(f"{what}: level {level} is not one of 1..7")
            result[int(level)] = int(value)
    except ValueError:
        raise InputError(f"{what} must be N or LEVEL=N,LEVEL=N (e.g. 7=5000,6=5000), got {text!r}") from None
    return result


# ------------------------------------------------------------------------------------------ losses


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


# ------------------------------------------------------------------------------------------ data


def _decode(cell: Any, where: str) -> Image.Image:
    if isinstance(cell, Image.Image):
        image = cell
    else:
        data = None
        if isinstance(cell, (bytes, bytearray)):
            data = bytes(cell)
        elif isinstance(cell, dict):
            data = cell.get("bytes")
            if not data and cell.get("path"):
                data = Path(cell["path"]).read_bytes()
        if data is None:
            raise InputError(f"{where}: no image in this cell ({type(cell).__name__})")
        image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _to_uint8_rgb(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _to_uint8_depth(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Depth as uint8 (H, W) at ``size`` = (W, H): 8-bit kept, 16-bit / float rescaled, then resized."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        array = array / (65535.0 if array.max() > 255 else 255.0) * 255.0
        image = Image.fromarray(np.clip(np.round(array), 0, 255).astype(np.uint8))
    elif image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        scale = 255.0 if array.max() <= 1.0 else 1.0
        image = Image.fromarray(np.clip(np.round(array * scale), 0, 255).astype(np.uint8))
    else:
        image = image.convert("L")
    if image.size != size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def crop_pair(
    photo: Image.Image,
    bokeh: Image.Image,
    depth: Image.Image | None,
    crop_size: int,
    target_size: int,
    rng: np.random.Generator | None,
    where: str = "sample",
) -> tuple[np.ndarray, np.ndarray]:
    """One training/validation pair as uint8 arrays.

    The photo is halved (bicubic) unless it already is half the target's size; a ``crop_size`` square is
    cut from it (random with ``rng``, centred without) and the matching ``2 * crop_size`` square from
    the target, resized (bicubic) to ``target_size``. With ``rng`` a random 90-degree rotation and
    vertical flip follow, identical for both.

    Returns:
        ``(input (crop, crop, 3 or 4), target (target_size, target_size, 3))``, uint8.
    """
    full_w, full_h = bokeh.size
    half = (full_w // 2, full_h // 2)
    if photo.size == bokeh.size:
        photo = photo.convert("RGB").resize(half, Image.Resampling.BICUBIC)
    elif abs(photo.size[0] - half[0]) > 1 or abs(photo.size[1] - half[1]) > 1:
        raise InputError(
            f"{where}: photo {photo.size[0]}x{photo.size[1]} is neither the target's size "
            f"{full_w}x{full_h} nor half of it"
        )
    rgb = _to_uint8_rgb(photo)[: half[1], : half[0]]
    h, w = rgb.shape[:2]
    if h < crop_size or w < crop_size:
        raise InputError(
            f"{where}: the half-resolution photo is {w}x{h}, smaller than the {crop_size}x{crop_size} "
            "crop; lower --crop-size or drop this image"
        )
    if rng is None:
        top, left = (h - crop_size) // 2, (w - crop_size) // 2
    else:
        top, left = int(rng.integers(0, h - crop_size + 1)), int(rng.integers(0, w - crop_size + 1))
    x = rgb[top : top + crop_size, left : left + crop_size]
    if depth is not None:
        d = _to_uint8_depth(depth, (w, h))[top : top + crop_size, left : left + crop_size]
        x = np.concatenate([x, d[..., None]], axis=2)
    box = (2 * left, 2 * top, 2 * (left + crop_size), 2 * (top + crop_size))
    target_image = bokeh.convert("RGB").crop(box)
    if target_size != 2 * crop_size:
        target_image = target_image.resize((target_size, target_size), Image.Resampling.BICUBIC)
    y = _to_uint8_rgb(target_image)
    if rng is not None:
        k = int(rng.integers(0, 4))
        x, y = np.rot90(x, k), np.rot90(y, k)
        if rng.integers(0, 2):
            x, y = x[::-1], y[::-1]
    return np.array(x, order="C"), np.array(y, order="C")  # writable copies


class PairCrops(torch.utils.data.Dataset):
    """Map-style view of a ``datasets`` table that decodes one row per item (lazily, as uint8).

    Items are indexed by a *draw number*: with ``random=True`` the row, crop and augmentation of draw
    ``d`` come from ``np.random.default_rng([seed, level, d])``, so a resumed run sees the same stream
    whatever the number of workers or processes. With ``random=False`` draw ``d`` is row ``d``, centre crop.
    """

    def __init__(
        self,
        table: Any,
        level: int,
        crop_size: int,
        *,
        random: bool,
        use_depth: bool = True,
        seed: int = 0,
        columns: Mapping[str, str | None] | None = None,
    ) -> None:
        self.table = table
        self.level = level
        self.crop_size = crop_size
        self.target_size = max(1, round(crop_size * LEVEL_SCALES[level]))
        self.random = random
        self.use_depth = use_depth
        self.seed = seed
        self.columns = dict(columns or _resolve_columns(table, use_depth))

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, draw: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, self.level, int(draw)]) if self.random else None
        row_index = int(rng.integers(0, len(self.table))) if rng is not None else int(draw)
        row = self.table[row_index]
        sample_id = str(row[self.columns["id"]]) if self.columns.get("id") else str(row_index)
        where = f"row {row_index} (id {sample_id})"
        depth = _decode(row[self.columns["depth"]], where) if self.use_depth else None
        x, y = crop_pair(
            _decode(row[self.columns["original"]], where),
            _decode(row[self.columns["bokeh"]], where),
            depth,
            self.crop_size,
            self.target_size,
            rng,
            where,
        )
        return {
            "input": torch.from_numpy(x).permute(2, 0, 1),
            "target": torch.from_numpy(y).permute(2, 0, 1),
            "id": sample_id,
        }


class _Draws(torch.utils.data.Sampler[int]):
    """Draw numbers of one process: step s, process r, slot j -> (s * world + r) * batch + j."""

    def __init__(self, start_step: int, end_step: int, batch: int, rank: int, world: int) -> None:
        self.start_step, self.end_step, self.batch, self.rank, self.world = start_step, end_step, batch, rank, world

    def __iter__(self) -> Iterator[int]:
        for step in range(self.start_step, self.end_step):
            base = (step * self.world + self.rank) * self.batch
            yield from range(base, base + self.batch)

    def __len__(self) -> int:
        return (self.end_step - self.start_step) * self.batch


_ALIASES = {
    "id": ("id", "image_id", "idx"),
    "original": ("original", "original_image", "input", "image"),
    "bokeh": ("bokeh", "bokeh_image", "target", "gt"),
    "depth": ("depth", "original_depth", "disparity"),
}


def _resolve_columns(table: Any, use_depth: bool) -> dict[str, str | None]:
    names = list(getattr(table, "column_names", None) or [])
    columns: dict[str, str | None] = {}
    for role, aliases in _ALIASES.items():
        columns[role] = next((name for name in aliases if name in names), None)
    for role in ("original", "bokeh") + (("depth",) if use_depth else ()):
        if columns[role] is None:
            hint = " (or train the RGB-only variant with --no-depth)" if role == "depth" else ""
            raise InputError(f"the dataset has no {role!r} column{hint}; it has {names}")
    return columns


def _open_table(source: str, split: str) -> Any:
    """A ``datasets.Dataset`` with undecoded image columns (bytes are decoded per item)."""
    try:
        from evaluation.dataset import open_dataset
    except ImportError:  # the library used without the repository's evaluation package
        open_dataset = None
    if open_dataset is not None:
        table = open_dataset(source, split)
    else:
        import datasets

        path = Path(source)
        loaded = (
            datasets.load_from_disk(str(path))
            if path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file())
            else datasets.load_dataset(source, split=split)
        )
        table = loaded[split] if isinstance(loaded, datasets.DatasetDict) else loaded
        for name, feature in table.features.items():
            if isinstance(feature, datasets.Image):
                table = table.cast_column(name, datasets.Image(decode=False))
    if not hasattr(table, "__len__") or not hasattr(table, "__getitem__"):
        raise InputError(f"dataset {source!r} split {split!r} must be map-style (not streaming) for training")
    return table


# ------------------------------------------------------------------------------------------ checkpoints


def _atomic_json(path: Path, payload: Mapping[str, Any]) -> None:
    atomic_write(path, json.dumps(payload, indent=1))


def _save_dir(path: Path, write: Callable[[Path], None]) -> None:
    """Write a folder under a temporary name, then rename it into place (replacing an old one)."""
    temp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        write(temp)
        temp.chmod(0o755)
        if path.exists():
            shutil.rmtree(path)
        os.replace(temp, path)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def _read_latest(level_dir: Path) -> dict[str, Any] | None:
    path = level_dir / "latest.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is corrupt ({exc}); delete it to restart level from scratch") from None


# ------------------------------------------------------------------------------------------ training


def _trainable_for_level(model: PyNET, level: int, in_channels: int, device: torch.device) -> list[str]:
    """Names of the parameters that reach ``level``'s output (a 64x64 probe); the rest are frozen."""
    for param in model.parameters():
        param.requires_grad_(True)
        param.grad = None
    probe = torch.zeros(1, in_channels, 64, 64, device=device)
    model(probe, level=level).sum().backward()
    used = [name for name, param in model.named_parameters() if param.grad is not None]
    for name, param in model.named_parameters():
        param.grad = None
        param.requires_grad_(name in used)
    return used


class _Logger:
    def __init__(self, output_dir: Path, enabled: bool, tensorboard: bool) -> None:
        self.enabled = enabled
        self.path = output_dir / "metrics.csv"
        self.writer = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(output_dir / "tensorboard"))
            except ImportError:
                warnings.warn(
                    "TensorBoard is not installed (pip install tensorboard); logging to CSV only", stacklevel=2
                )

    def log(self, level: int, step: int, split: str, values: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        new = not self.path.is_file()
        row = {"time": f"{time.time():.3f}", "level": level, "step": step, "split": split}
        row.update({key: f"{value:.6g}" for key, value in values.items() if key in _CSV_FIELDS})
        with open(self.path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=_CSV_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"level{level}/{split}/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _to_float(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
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


@torch.no_grad()
def _validate(
    model: nn.Module,
    level: int,
    val: PairCrops | None,
    config: TrainConfig,
    device: torch.device,
    autocast: Callable[[], Any],
    samples_dir: Path,
    step: int,
) -> dict[str, float]:
    if val is None or len(val) == 0:
        return {}
    try:
        from evaluation.metrics import psnr, ssim
    except ImportError:
        warnings.warn("evaluation.metrics is not importable; validation PSNR/SSIM skipped", stacklevel=2)
        return {}
    was_training = model.training
    model.eval()
    psnrs, ssims, l1s = [], [], []
    for index in range(min(config.val_images, len(val))):
        item = val[index]
        with autocast():
            out = model(_to_float(item["input"][None], device), level=level)
        out = out.float()[0].permute(1, 2, 0).cpu().numpy()
        target = item["target"].permute(1, 2, 0).numpy()
        target_f = target.astype(np.float64) / 255.0
        pred = np.clip(out.astype(np.float64), 0.0, 1.0)
        l1s.append(float(np.abs(out - target_f).mean()))
        psnrs.append(psnr(pred, target_f))
        if min(target.shape[:2]) >= 11:
            ssims.append(ssim(pred, target_f))
        if index < config.num_samples:
            from .images import save_image

            save_image(
                _side_by_side(item["input"].permute(1, 2, 0).numpy(), out, target),
                samples_dir / f"step_{step:07d}_{index}_{item['id']}.png",
            )
    model.train(was_training)
    finite = [p for p in psnrs if math.isfinite(p)]
    result = {"l1": float(np.mean(l1s)), "psnr": float(np.mean(finite)) if finite else float("inf")}
    if ssims:
        result["ssim"] = float(np.mean(ssims))
    return result


def load_pretrained_fast(source: str | os.PathLike) -> PyNET:
    """``PyNET.from_pretrained`` for a local folder without the random initialisation it would run first.

    ``from_pretrained`` builds the model (truncated-normal init of 47.5M weights, seconds on a CPU) and
    then overwrites every tensor; here the model is built on the ``meta`` device and the safetensors file
    is assigned directly (strict). Hub ids fall back to ``PyNET.from_pretrained``.
    """
    path = Path(source)
    if not (path / "model.safetensors").is_file() or not (path / "config.json").is_file():
        return PyNET.from_pretrained(str(source), strict=True)
    from safetensors.torch import load_file

    config = json.loads((path / "config.json").read_text())
    with torch.device("meta"):
        model = PyNET(**config)
    model.load_state_dict(load_file(str(path / "model.safetensors")), strict=True, assign=True)
    return model


def _init_model(
    level: int, config: TrainConfig, level_dir: Path, state: dict[str, Any] | None, model_kwargs: Mapping[str, Any]
) -> tuple[PyNET, str]:
    if state is not None:
        path = level_dir / state["checkpoint"]
        return load_pretrained_fast(path), f"resumed from {path} (step {state['step']})"
    previous = level_dir.parent / f"level_{level + 1}" / "model"
    if level < 7 and (previous / "model.safetensors").is_file():
        return load_pretrained_fast(previous), f"restored level {level + 1} weights from {previous}"
    if config.init_weights:
        return load_pretrained_fast(config.init_weights), f"initialised from {config.init_weights}"
    if level == 7 or config.from_scratch:
        torch.manual_seed(config.seed)
        return PyNET(**model_kwargs), "random initialisation (the authors' truncated normal, std 0.01)"
    raise InputError(
        f"level {level} starts from level {level + 1}'s weights, but {previous} does not exist; train level "
        f"{level + 1} first, pass --init-weights DIR, or --from-scratch to start level {level} from random weights"
    )


def _train_level(
    level: int,
    config: TrainConfig,
    accelerator: Any,
    table: Any,
    val_table: Any,
    vgg: nn.Module | None,
    logger: _Logger,
) -> dict[str, Any]:
    output_dir = Path(config.output_dir)
    level_dir = output_dir / f"level_{level}"
    level_dir.mkdir(parents=True, exist_ok=True)
    total = int(config.iterations[level])
    state = _read_latest(level_dir)
    if state is not None and state.get("done") and int(state.get("iterations", total)) >= total:
        accelerator.print(f"level {level}: already complete ({state['step']} steps), skipping")
        return {"level": level, "status": "skipped", "step": state["step"]}
    if state is not None and state.get("done"):
        state = dict(state, done=False)  # more iterations requested than were run: continue
    model_kwargs = {"in_channels": 4 if config.use_depth else 3}
    model, how = _init_model(level, config, level_dir, state, model_kwargs)
    if model.in_channels != model_kwargs["in_channels"]:
        raise InputError(
            f"the weights take {model.in_channels} input channels but the run uses "
            f"{model_kwargs['in_channels']} ({'with' if config.use_depth else 'without'} depth)"
        )
    accelerator.print(f"level {level}: {how}")
    device = accelerator.device
    model.to(device).train()
    used = _trainable_for_level(model, level, model.in_channels, device)
    optimizer = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad], lr=config.learning_rate, betas=(0.9, 0.999), eps=1e-8
    )
    start_step = 0
    if state is not None:
        training_state = torch.load(
            level_dir / state["checkpoint"] / "training_state.pt", map_location="cpu", weights_only=False
        )
        optimizer.load_state_dict(training_state["optimizer"])
        start_step = int(training_state["step"])
    model, optimizer = accelerator.prepare(model, optimizer)
    if state is not None and accelerator.scaler is not None and training_state.get("scaler"):
        accelerator.scaler.load_state_dict(training_state["scaler"])
    vgg_device = vgg.to(device) if (vgg is not None and level == 1) else None

    world, rank = accelerator.num_processes, accelerator.process_index
    global_batch = int(config.batch_sizes[level])
    local_batch = max(1, math.ceil(global_batch / world))
    end_step = total if config.stop_after is None else min(total, start_step + config.stop_after)
    crops = PairCrops(table, level, config.crop_size, random=True, use_depth=config.use_depth, seed=config.seed)
    loader = torch.utils.data.DataLoader(
        crops,
        batch_size=local_batch,
        sampler=_Draws(start_step, end_step, local_batch, rank, world),
        num_workers=config.workers,
        pin_memory=device.type == "cuda",
        drop_last=False,
        persistent_workers=False,
        prefetch_factor=2 if config.workers else None,
    )
    val = (
        PairCrops(val_table, level, config.crop_size, random=False, use_depth=config.use_depth)
        if val_table is not None and accelerator.is_main_process
        else None
    )
    samples_dir = level_dir / "samples"

    def save_checkpoint(step: int, done: bool) -> None:
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            unwrapped = accelerator.unwrap_model(model)
            name = f"checkpoint-{step:07d}"

            def write(folder: Path) -> None:
                unwrapped.save_pretrained(folder)
                torch.save(
                    {
                        "step": step,
                        "level": level,
                        "optimizer": optimizer.state_dict(),
                        "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
                        "config": _config_summary(config),
                        "trainable": used,
                    },
                    folder / "training_state.pt",
                )

            _save_dir(level_dir / name, write)
            if done:
                _save_dir(level_dir / "model", unwrapped.save_pretrained)
            _atomic_json(
                level_dir / "latest.json",
                {"step": step, "checkpoint": name, "done": done, "iterations": total, "level": level},
            )
            kept = sorted(level_dir.glob("checkpoint-*"))
            for old in kept[: -config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()

    progress = None
    if config.progress and accelerator.is_local_main_process:
        from tqdm.auto import tqdm

        progress = tqdm(total=total, initial=start_step, desc=f"level {level}", unit="step", dynamic_ncols=True)
    if start_step == 0 and accelerator.is_main_process:  # the authors also evaluate at iteration 0
        metrics = _validate(
            accelerator.unwrap_model(model), level, val, config, device, accelerator.autocast, samples_dir, 0
        )
        if metrics:
            logger.log(level, 0, "val", metrics)
    sums: dict[str, float] = {}
    count = 0
    window_start = time.perf_counter()
    step = start_step
    history: list[float] = []
    for batch in loader:
        x = _to_float(batch["input"], device)
        y = _to_float(batch["target"], device)
        with accelerator.autocast():
            out = model(x, level=level)
        loss, terms = level_loss(level, out, y, vgg_device, config.loss_weights)
        accelerator.backward(loss)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        history.append(terms["loss"])
        for key, value in terms.items():
            sums[key] = sums.get(key, 0.0) + value
        count += 1
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{terms['loss']:.4g}")
        if step % config.log_every == 0 or step == end_step:
            means = torch.tensor([sums[k] / count for k in sorted(sums)], device=device)
            means = accelerator.reduce(means, reduction="mean")
            elapsed = time.perf_counter() - window_start
            values = dict(zip(sorted(sums), means.tolist(), strict=True))
            values["images_per_s"] = count * local_batch * world / max(elapsed, 1e-9)
            logger.log(level, step, "train", values)
            sums, count, window_start = {}, 0, time.perf_counter()
        is_last = step == end_step
        if step % config.eval_every == 0 or is_last:
            if accelerator.is_main_process:
                metrics = _validate(
                    accelerator.unwrap_model(model), level, val, config, device, accelerator.autocast, samples_dir, step
                )
                if metrics:
                    logger.log(level, step, "val", metrics)
                    if progress is not None:
                        progress.write(
                            f"level {level} step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
                        )
            save_checkpoint(step, done=step == total)
    if progress is not None:
        progress.close()
    if step == start_step and step == total:  # nothing left to run (e.g. iterations unchanged): mark done
        save_checkpoint(step, done=True)
    accelerator.free_memory()
    status = "done" if step == total else "stopped"
    return {"level": level, "status": status, "step": step, "start_step": start_step, "losses": history}


def _config_summary(config: TrainConfig) -> dict[str, Any]:
    summary = asdict(config)
    summary["output_dir"] = str(config.output_dir)
    return summary


def train(config: TrainConfig, *, vgg: nn.Module | None = None) -> list[dict[str, Any]]:
    """Run (or resume) the level-by-level schedule.

    Args:
        config: the run; see :class:`TrainConfig`.
        vgg: the perceptual network for level 1 (maps an un-normalised [0, 1] batch to features). ``None``
            loads torchvision's VGG-19 from the torch hub cache (:func:`load_vgg19_relu5_4`); tests pass a
            small stand-in here explicitly.

    Returns:
        One dict per level: ``level``, ``status`` ("done", "stopped", "skipped"), ``step`` and the
        per-step training ``losses`` of this invocation.

    Raises:
        InputError: bad configuration or data; ModelUnavailableError: VGG-19 weights missing for level 1.
    """
    from accelerate import Accelerator

    config.validate()
    output_dir = Path(config.output_dir)
    if 1 in config.levels and vgg is None:
        vgg = load_vgg19_relu5_4(config.vgg_weights)  # fail before hours of training, not at level 1
    try:
        accelerator = Accelerator(mixed_precision=config.mixed_precision, cpu=config.cpu)
    except ValueError as exc:
        # accelerate keeps one global state per process; a second train() call in the same process (a notebook,
        # the tests) with another precision must reset it. The process group (PartialState) is left alone.
        if "already been initialized" not in str(exc):
            raise
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=False)
        accelerator = Accelerator(mixed_precision=config.mixed_precision, cpu=config.cpu)
    if config.mixed_precision == "fp16" and accelerator.device.type != "cuda":
        raise InputError("fp16 mixed precision needs CUDA; use --mixed-precision bf16 or no on the CPU")
    output_dir.mkdir(parents=True, exist_ok=True)
    if accelerator.is_main_process:
        _atomic_json(output_dir / "train_config.json", _config_summary(config))
    table = _open_table(config.dataset, config.train_split)
    _resolve_columns(table, config.use_depth)
    val_table = None
    if config.val_split:
        try:
            val_table = _open_table(config.dataset, config.val_split)
        except InputError as exc:
            accelerator.print(f"no validation: {exc}")
    logger = _Logger(output_dir, accelerator.is_main_process, config.tensorboard)
    results = []
    try:
        for level in config.levels:
            result = _train_level(level, config, accelerator, table, val_table, vgg, logger)
            results.append(result)
            if result["status"] == "stopped":
                accelerator.print(f"stopped at level {level}, step {result['step']}; rerun the same command to resume")
                break
    finally:
        logger.close()
    return results


def level_sequence(levels: Sequence[int] | str) -> tuple[int, ...]:
    """``"7-1"``, ``"7,6,5"`` or a sequence -> a tuple of levels (validated later)."""
    if not isinstance(levels, str):
        return tuple(int(v) for v in levels)
    text = levels.replace(" ", "")
    try:
        if "-" in text:
            high, low = (int(v) for v in text.split("-"))
            return tuple(range(high, low - 1, -1))
        return tuple(int(v) for v in text.split(",") if v)
    except ValueError:
        raise InputError(f"levels must look like 7-1 or 7,6,5; got {levels!r}") from None
