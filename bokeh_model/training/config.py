"""What a training run is: the authors' per-level schedule, the loss weights and :class:`TrainConfig`."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import InputError
from ..modeling_pynet import LEVEL_SCALES

__all__ = [
    "DEFAULT_BATCH_SIZES",
    "DEFAULT_ITERATIONS",
    "LEVELS",
    "LossWeights",
    "TrainConfig",
    "config_summary",
    "level_sequence",
    "parse_per_level",
]

LEVELS = (7, 6, 5, 4, 3, 2, 1)
# utils.NUM_DEFAULT_TRAIN_ITERS and the README's commands (V100 16 GB), indexed by level.
DEFAULT_ITERATIONS: dict[int, int] = {7: 5000, 6: 5000, 5: 20000, 4: 20000, 3: 30000, 2: 80000, 1: 100000}
DEFAULT_BATCH_SIZES: dict[int, int] = {7: 50, 6: 50, 5: 40, 4: 14, 3: 9, 2: 9, 1: 5}


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


def config_summary(config: TrainConfig) -> dict[str, Any]:
    """The configuration as JSON-ready values (``train_config.json``, the checkpoints' training state)."""
    summary = asdict(config)
    summary["output_dir"] = str(config.output_dir)
    return summary


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
