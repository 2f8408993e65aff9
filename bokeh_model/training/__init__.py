"""Train PyNET-Bokeh level by level, as the authors do (``aiff22/PyNET-Bokeh:train_model.py``), in PyTorch.

Schedule (Ignatov, Patel, Timofte, CVPRW 2020, and the authors' ``train_model.py``): levels 7 -> 1; each
level starts from the previous level's weights, builds the whole pyramid below it and trains every parameter
that reaches its output, with a fresh Adam (lr 5e-5, TF defaults). Losses: ``100 * L1`` at levels >= 2; at
level 1 ``10 * L1 + 0.1 * VGG(relu5_4) + 10 * (1 - SSIM)`` (SSIM as ``tf.image.ssim``). Default iterations and
batch sizes per level are the authors' (:data:`DEFAULT_ITERATIONS`, :data:`DEFAULT_BATCH_SIZES`).

Per level, ``OUT/level_L/`` holds ``checkpoint-NNNNNNN/`` (``from_pretrained`` files + optimizer state),
``latest.json`` (what to resume from), ``samples/`` (input | output | target PNGs per eval step) and, once the
level is done, ``model/`` (the weights the next level starts from; use it with ``--weights``).
``OUT/metrics.csv`` logs training loss terms and validation metrics (PSNR/SSIM by default, or the functions
passed to :func:`train`). A stopped run resumes where its last checkpoint left it.

Multi-GPU: ``accelerate launch --multi_gpu -m bokeh_model train ...`` (data parallel; the batch sizes are global
and split across processes). ``mixed_precision="bf16"`` (or ``"fp16"`` on CUDA) autocasts the network; the
losses are computed in float32.

Modules, one part each: :mod:`.config` (what a run is), :mod:`.data` (the table, crops, draws),
:mod:`.losses`, :mod:`.validation` (metrics, samples), :mod:`.checkpoints`, :mod:`.log` (``metrics.csv``),
:mod:`.loop` (one level, :func:`train`). This package imports nothing outside ``bokeh_model``.
"""

from __future__ import annotations

from .checkpoints import read_latest, save_checkpoint
from .config import (
    DEFAULT_BATCH_SIZES,
    DEFAULT_ITERATIONS,
    LEVELS,
    LossWeights,
    TrainConfig,
    level_sequence,
    parse_per_level,
)
from .data import DrawSampler, PairCrops, crop_pair, open_table, resolve_columns
from .log import MetricsLog
from .loop import train, trainable_for_level
from .losses import VGG19_FILENAME, VGGPerceptual, level_loss, load_vgg19_relu5_4, ssim_tf, vgg19_weights_path
from .validation import DEFAULT_METRICS, MetricFn, validate, validation_psnr, validation_ssim

__all__ = [
    "DEFAULT_BATCH_SIZES",
    "DEFAULT_ITERATIONS",
    "DEFAULT_METRICS",
    "LEVELS",
    "VGG19_FILENAME",
    "DrawSampler",
    "LossWeights",
    "MetricFn",
    "MetricsLog",
    "PairCrops",
    "TrainConfig",
    "VGGPerceptual",
    "crop_pair",
    "level_loss",
    "level_sequence",
    "load_vgg19_relu5_4",
    "open_table",
    "parse_per_level",
    "read_latest",
    "resolve_columns",
    "save_checkpoint",
    "ssim_tf",
    "train",
    "trainable_for_level",
    "validate",
    "validation_psnr",
    "validation_ssim",
    "vgg19_weights_path",
]
