"""``OUT/metrics.csv`` (training loss terms and validation metrics per step) and, optionally, TensorBoard."""

from __future__ import annotations

import csv
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..errors import InputError

__all__ = ["METRICS_FILE", "MetricsLog"]

METRICS_FILE = "metrics.csv"
_LEADING = ("time", "level", "step", "split", "loss", "l1", "vgg", "ssim_term")
_TRAILING = ("images_per_s",)


class MetricsLog:
    """Appends one CSV row per logged step; only the main process writes (``enabled``).

    Columns: time, level, step, split (``train``/``val``), the loss terms, one column per validation metric
    (``psnr``, ``ssim`` by default) and ``images_per_s``. A resumed run keeps the columns of the existing file.
    """

    def __init__(self, output_dir: Path, enabled: bool, tensorboard: bool, metric_names: Iterable[str]) -> None:
        names = tuple(metric_names)
        clash = [name for name in names if name in _LEADING + _TRAILING]
        if clash:
            raise InputError(f"validation metric names {clash} clash with metrics.csv's own columns")
        self.enabled = enabled
        self.path = output_dir / METRICS_FILE
        self.fields = _LEADING + names + _TRAILING
        if self.path.is_file():
            with open(self.path, newline="") as handle:
                header = next(csv.reader(handle), None)
            if header:
                self.fields = tuple(header)
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
        row.update({key: f"{value:.6g}" for key, value in values.items() if key in self.fields})
        with open(self.path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.fields)
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self.writer is not None:
            for key, value in values.items():
                self.writer.add_scalar(f"level{level}/{split}/{key}", value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
