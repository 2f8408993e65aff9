"""The level-by-level schedule: :func:`train` runs (or resumes) each level of :class:`TrainConfig` in turn.

One level (:class:`_Level`): read ``latest.json``; start from the checkpoint, the previous level's ``model/``,
``init_weights`` or random weights; freeze what does not reach the level's output; fresh Adam (or the saved one);
then steps of the authors' loss, with the training loss logged every ``log_every`` steps and validation,
samples and a checkpoint every ``eval_every`` steps and at the end.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..modeling_pynet import PyNET
from . import data
from .checkpoints import MODEL_DIR, load_training_state, read_latest, save_checkpoint, write_json
from .config import TrainConfig, config_summary
from .data import DrawSampler, PairCrops, resolve_columns
from .log import MetricsLog
from .losses import level_loss, load_vgg19_relu5_4
from .validation import DEFAULT_METRICS, MetricFn, to_float, validate

__all__ = ["train", "trainable_for_level"]

TableOpener = Callable[[str, str], Any]


def trainable_for_level(model: PyNET, level: int, in_channels: int, device: torch.device) -> list[str]:
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


def _load(source: str | Path) -> PyNET:
    return PyNET.from_pretrained(str(source), strict=True)  # strict: built on the meta device, no random init


def _initial_model(
    level: int, config: TrainConfig, level_dir: Path, latest: Mapping[str, Any] | None, in_channels: int
) -> tuple[PyNET, str]:
    """The weights the level starts from and a sentence saying where they came from."""
    if latest is not None:
        path = level_dir / latest["checkpoint"]
        return _load(path), f"resumed from {path} (step {latest['step']})"
    previous = level_dir.parent / f"level_{level + 1}" / MODEL_DIR
    if level < 7 and (previous / "model.safetensors").is_file():
        return _load(previous), f"restored level {level + 1} weights from {previous}"
    if config.init_weights:
        return _load(config.init_weights), f"initialised from {config.init_weights}"
    if level == 7 or config.from_scratch:
        torch.manual_seed(config.seed)
        return PyNET(in_channels=in_channels), "random initialisation (the authors' truncated normal, std 0.01)"
    raise InputError(
        f"level {level} starts from level {level + 1}'s weights, but {previous} does not exist; train level "
        f"{level + 1} first, pass --init-weights DIR, or --from-scratch to start level {level} from random weights"
    )


class _Window:
    """Training loss terms summed over the steps since the last log line."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0
        self.start = time.perf_counter()

    def add(self, terms: Mapping[str, float]) -> None:
        for key, value in terms.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
        self.count += 1


class _Level:
    """One level of one run: its model, optimizer, data and checkpoints, run by :meth:`run`."""

    def __init__(
        self,
        level: int,
        config: TrainConfig,
        accelerator: Any,
        log: MetricsLog,
        metrics: Mapping[str, MetricFn],
    ) -> None:
        self.level = level
        self.config = config
        self.accelerator = accelerator
        self.log = log
        self.metrics = metrics
        self.level_dir = Path(config.output_dir) / f"level_{level}"
        self.level_dir.mkdir(parents=True, exist_ok=True)
        self.total = int(config.iterations[level])
        self.device = accelerator.device
        self.local_batch = max(1, math.ceil(int(config.batch_sizes[level]) / accelerator.num_processes))
        self.model: nn.Module | None = None  # set by _prepare (wrapped by accelerate)
        self.optimizer: Any = None
        self.trainable: list[str] = []

    # -- steps of run() -------------------------------------------------------------------------------
    def _resume_point(self) -> tuple[dict[str, Any] | None, bool]:
        """``(latest.json or None, already complete)``."""
        latest = read_latest(self.level_dir)
        if latest is not None and latest.get("done") and int(latest.get("iterations", self.total)) >= self.total:
            return latest, True
        if latest is not None and latest.get("done"):
            latest = dict(latest, done=False)  # more iterations requested than were run: continue
        return latest, False

    def _prepare(self, latest: Mapping[str, Any] | None) -> int:
        """Build the model and optimizer (restoring their state on resume); returns the step to start from."""
        in_channels = 4 if self.config.use_depth else 3
        model, how = _initial_model(self.level, self.config, self.level_dir, latest, in_channels)
        if model.in_channels != in_channels:
            raise InputError(
                f"the weights take {model.in_channels} input channels but the run uses "
                f"{in_channels} ({'with' if self.config.use_depth else 'without'} depth)"
            )
        self.accelerator.print(f"level {self.level}: {how}")
        model.to(self.device).train()
        self.trainable = trainable_for_level(model, self.level, model.in_channels, self.device)
        optimizer = torch.optim.Adam(
            [p for p in model.parameters() if p.requires_grad],
            lr=self.config.learning_rate,
            betas=(0.9, 0.999),
            eps=1e-8,
        )
        start_step = 0
        saved: dict[str, Any] = {}
        if latest is not None:
            saved = load_training_state(self.level_dir, latest)
            optimizer.load_state_dict(saved["optimizer"])
            start_step = int(saved["step"])
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        if self.accelerator.scaler is not None and saved.get("scaler"):
            self.accelerator.scaler.load_state_dict(saved["scaler"])
        return start_step

    def _loader(self, table: Any, start_step: int, end_step: int) -> torch.utils.data.DataLoader:
        config, accelerator = self.config, self.accelerator
        crops = PairCrops(
            table, self.level, config.crop_size, random=True, use_depth=config.use_depth, seed=config.seed
        )
        return torch.utils.data.DataLoader(
            crops,
            batch_size=self.local_batch,
            sampler=DrawSampler(
                start_step, end_step, self.local_batch, accelerator.process_index, accelerator.num_processes
            ),
            num_workers=config.workers,
            pin_memory=self.device.type == "cuda",
            drop_last=False,
            persistent_workers=False,
            prefetch_factor=2 if config.workers else None,
        )

    def _save(self, step: int, done: bool) -> None:
        accelerator = self.accelerator
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            training_state = {
                "step": step,
                "level": self.level,
                "optimizer": self.optimizer.state_dict(),
                "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
                "config": config_summary(self.config),
                "trainable": self.trainable,
            }
            save_checkpoint(
                self.level_dir,
                accelerator.unwrap_model(self.model),
                training_state,
                level=self.level,
                step=step,
                iterations=self.total,
                done=done,
                keep=self.config.keep_checkpoints,
            )
        accelerator.wait_for_everyone()

    def _validate(self, val: PairCrops | None, step: int) -> dict[str, float]:
        """Validation metrics logged as a ``val`` row (main process only; ``{}`` elsewhere or without data)."""
        if not self.accelerator.is_main_process:
            return {}
        values = validate(
            self.accelerator.unwrap_model(self.model),
            self.level,
            val,
            images=self.config.val_images,
            num_samples=self.config.num_samples,
            device=self.device,
            autocast=self.accelerator.autocast,
            samples_dir=self.level_dir / "samples",
            step=step,
            metrics=self.metrics,
        )
        if values:
            self.log.log(self.level, step, "val", values)
        return values

    def _log_window(self, window: _Window, step: int) -> _Window:
        """Log the mean loss terms (averaged over processes) and the throughput; returns a fresh window."""
        keys = sorted(window.sums)
        means = torch.tensor([window.sums[k] / window.count for k in keys], device=self.device)
        means = self.accelerator.reduce(means, reduction="mean")
        elapsed = time.perf_counter() - window.start
        values = dict(zip(keys, means.tolist(), strict=True))
        values["images_per_s"] = window.count * self.local_batch * self.accelerator.num_processes / max(elapsed, 1e-9)
        self.log.log(self.level, step, "train", values)
        return _Window()

    def _step(self, batch: Mapping[str, torch.Tensor], vgg: nn.Module | None) -> dict[str, float]:
        x = to_float(batch["input"], self.device)
        y = to_float(batch["target"], self.device)
        with self.accelerator.autocast():
            out = self.model(x, level=self.level)
        loss, terms = level_loss(self.level, out, y, vgg, self.config.loss_weights)
        self.accelerator.backward(loss)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return terms

    # -------------------------------------------------------------------------------------------------
    def run(self, table: Any, val_table: Any, vgg: nn.Module | None) -> dict[str, Any]:
        config, accelerator, level = self.config, self.accelerator, self.level
        latest, complete = self._resume_point()
        if complete:
            accelerator.print(f"level {level}: already complete ({latest['step']} steps), skipping")
            return {"level": level, "status": "skipped", "step": latest["step"]}
        start_step = self._prepare(latest)
        level_vgg = vgg.to(self.device) if (vgg is not None and level == 1) else None
        end_step = self.total if config.stop_after is None else min(self.total, start_step + config.stop_after)
        loader = self._loader(table, start_step, end_step)
        val = (
            PairCrops(val_table, level, config.crop_size, random=False, use_depth=config.use_depth)
            if val_table is not None and accelerator.is_main_process
            else None
        )
        progress = None
        if config.progress and accelerator.is_local_main_process:
            from tqdm.auto import tqdm

            progress = tqdm(
                total=self.total, initial=start_step, desc=f"level {level}", unit="step", dynamic_ncols=True
            )
        if start_step == 0:  # the authors also evaluate at iteration 0
            self._validate(val, 0)
        window = _Window()
        step = start_step
        history: list[float] = []
        for batch in loader:
            terms = self._step(batch, level_vgg)
            step += 1
            history.append(terms["loss"])
            window.add(terms)
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{terms['loss']:.4g}")
            if step % config.log_every == 0 or step == end_step:
                window = self._log_window(window, step)
            if step % config.eval_every == 0 or step == end_step:
                values = self._validate(val, step)
                if values and progress is not None:
                    progress.write(
                        f"level {level} step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items())
                    )
                self._save(step, done=step == self.total)
        if progress is not None:
            progress.close()
        if step == start_step and step == self.total:  # nothing left to run (e.g. iterations unchanged): mark done
            self._save(step, done=True)
        accelerator.free_memory()
        status = "done" if step == self.total else "stopped"
        return {"level": level, "status": status, "step": step, "start_step": start_step, "losses": history}


def _accelerator(config: TrainConfig) -> Any:
    from accelerate import Accelerator

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
    return accelerator


def train(
    config: TrainConfig,
    *,
    vgg: nn.Module | None = None,
    metrics: Mapping[str, MetricFn] | None = None,
    open_table: TableOpener | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) the level-by-level schedule.

    Args:
        config: the run; see :class:`TrainConfig`.
        vgg: the perceptual network for level 1 (maps an un-normalised [0, 1] batch to features). ``None``
            loads torchvision's VGG-19 from the torch hub cache (:func:`load_vgg19_relu5_4`); tests pass a
            small stand-in here explicitly.
        metrics: validation metrics, ``{name: fn(output, target) -> float}`` on float (H, W, 3) arrays in [0, 1];
            each becomes a column of ``metrics.csv``. ``None``: :data:`DEFAULT_METRICS` (``psnr`` and ``ssim``
            as the authors' TensorFlow training script computes them).
        open_table: ``fn(dataset, split) -> table`` (map-style, ``datasets``-like); ``None``:
            :func:`bokeh_model.training.data.open_table`.
            It raises :class:`InputError` for a missing split (a missing validation split means no validation).

    Returns:
        One dict per level: ``level``, ``status`` ("done", "stopped", "skipped"), ``step`` and the
        per-step training ``losses`` of this invocation.

    Raises:
        InputError: bad configuration or data; ModelUnavailableError: VGG-19 weights missing for level 1.
    """
    config.validate()
    metrics = DEFAULT_METRICS if metrics is None else metrics
    opener = open_table or data.open_table
    output_dir = Path(config.output_dir)
    if 1 in config.levels and vgg is None:
        vgg = load_vgg19_relu5_4(config.vgg_weights)  # fail before hours of training, not at level 1
    accelerator = _accelerator(config)
    output_dir.mkdir(parents=True, exist_ok=True)
    if accelerator.is_main_process:
        write_json(output_dir / "train_config.json", config_summary(config))
    table = opener(config.dataset, config.train_split)
    resolve_columns(table, config.use_depth)
    val_table = None
    if config.val_split:
        try:
            val_table = opener(config.dataset, config.val_split)
        except InputError as exc:
            accelerator.print(f"no validation: {exc}")
    log = MetricsLog(output_dir, accelerator.is_main_process, config.tensorboard, metrics)
    results = []
    try:
        for level in config.levels:
            result = _Level(level, config, accelerator, log, metrics).run(table, val_table, vgg)
            results.append(result)
            if result["status"] == "stopped":
                accelerator.print(f"stopped at level {level}, step {result['step']}; rerun the same command to resume")
                break
    finally:
        log.close()
    return results
