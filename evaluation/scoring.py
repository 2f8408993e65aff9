"""Scoring one shard of a run: each sample's prediction per method (rendered, reused or external) and its metrics.

A shard is every ``world``-th sample from ``rank`` (one per process under ``accelerate launch``); its rows,
hashes and notes go to ``RUN/.shards/`` and :mod:`evaluation.record` merges them. A registered method's output
is saved as ``RUN/predictions/<label>/<id>.png`` with a ``.json`` sidecar (settings, input and depth identity,
runtime) and reused by a later run only when all of those match, so an interrupted run resumes. Predictions are
scored as saved: 8-bit levels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bokeh_model.errors import InputError
from bokeh_model.files import atomic_write
from bokeh_model.images import array_to_pil, load_image, resize_array, save_image
from evaluation.dataset import EvalSource, Sample, image_extension
from evaluation.methods import MethodRun, find_prediction, load_external
from evaluation.metrics import MetricProfile, score_pair
from evaluation.run_layout import depth_dir, inputs_dir, prediction_path, targets_dir
from evaluation.runtime import timed_call

__all__ = ["FOCUS_PARAMS", "PSNR_CAP_DB", "ShardContext", "score_shard"]

FOCUS_PARAMS = ("focus_disparity", "focus")
# A prediction equal to its target has infinite PSNR; 8-bit images that differ in one level of one pixel of a
# 1536x1024 photo give about 115 dB. Every PSNR above this cap counts as the cap, so identical images raise a
# method's mean instead of silently dropping out of it. Capped images are counted in run.json and the table.
PSNR_CAP_DB = 100.0


@dataclass
class ShardContext:
    """What scoring a shard needs besides the methods, and what it learns on the way (notes, dropped methods)."""

    out: Path
    profile: MetricProfile
    source: EvalSource
    lpips_model: Any
    depth_estimator: Any
    warmup: int
    depth_model: str | None = None
    notes: list[str] = field(default_factory=list)
    upsampled_inputs: int = 0
    dropped: dict[str, str] = field(default_factory=dict)  # label -> why it stopped part-way (no depth)


class _NoDepth(Exception):
    """A method needs a depth map for a row that has none (only seen part-way when streaming)."""


def _quantize(array: np.ndarray) -> np.ndarray:
    """What the saved 8-bit PNG holds: round(clip(x) * 255) / 255 (as float64 for the metrics)."""
    return np.round(np.clip(array.astype(np.float64), 0.0, 1.0) * 255.0) / 255.0


def _exact_levels(image: np.ndarray) -> np.ndarray:
    """float32 k/255 values as exact float64 k/255 (8-bit images); other images just as float64."""
    wide = image.astype(np.float64)
    levels = np.round(wide * 255.0) / 255.0
    return levels if float(np.abs(levels - wide).max(initial=0.0)) < 1e-6 else wide


def _size(array: np.ndarray) -> str:
    return f"{array.shape[1]}x{array.shape[0]}"


def _prepare_input(ctx: ShardContext, sample: Sample, target: np.ndarray) -> np.ndarray:
    image = sample.decode_original()
    if image.shape[:2] == target.shape[:2]:
        return image
    ratio_h, ratio_w = target.shape[0] / image.shape[0], target.shape[1] / image.shape[1]
    if abs(ratio_h - 2) < 0.02 and abs(ratio_w - 2) < 0.02:
        ctx.upsampled_inputs += 1  # half-resolution input (PyNET layout): bring it to the target's size
        return np.clip(resize_array(image, target.shape[:2]), 0.0, 1.0)
    raise InputError(
        f"{sample.where} id {sample.id}: input is {_size(image)} but the target is {_size(target)} "
        "(expected the same size or a half-resolution input)"
    )


def _depth_identity(ctx: ShardContext, sample: Sample) -> str | None:
    """What a method's depth input is made of: the row's depth map (by hash) or the depth model's name."""
    stored = sample.depth_sha256
    if stored is not None:
        return f"dataset:{stored}"
    return f"model:{ctx.depth_model}" if ctx.depth_estimator is not None else None


def _depth_for(ctx: ShardContext, sample: Sample, image: np.ndarray) -> np.ndarray | None:
    depth = sample.decode_depth()
    if depth is not None:
        return depth
    if ctx.depth_estimator is None:
        return None
    from bokeh_model.images import load_depth, save_depth

    # Estimated maps are kept in --out/depth, reused only for the same input bytes and the same depth model.
    cached = depth_dir(ctx.out) / f"{sample.id}.png"
    sidecar = cached.with_suffix(".json")
    identity = {"input_sha256": sample.original_sha256, "depth_model": ctx.depth_model}
    if cached.is_file() and sidecar.is_file():
        try:
            if json.loads(sidecar.read_text(encoding="utf-8")) == identity:
                return load_depth(cached)
        except (OSError, ValueError):
            pass
    save_depth(ctx.depth_estimator(image), cached)
    atomic_write(sidecar, json.dumps(identity))
    return load_depth(cached)  # the stored 16-bit levels, so a resumed run renders from the same map


def _render(
    ctx: ShardContext, run: MethodRun, sample: Sample, target: np.ndarray, cache: dict[str, Any]
) -> tuple[np.ndarray, float, bool]:
    """The prediction of a registered method for one sample: (float64 quantised array, runtime s, reused?)."""
    pred_path = prediction_path(ctx.out, run.label, sample.id)
    meta_path = pred_path.with_suffix(".json")
    config = run.config_hash()
    # A saved prediction is reused only for the same settings, input bytes and depth source.
    identity = {
        "config": config,
        "input_sha256": sample.original_sha256,
        "depth": _depth_identity(ctx, sample) if run.needs_depth else None,
    }
    if pred_path.is_file() and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = {}
        if all(meta.get(key) == value for key, value in identity.items()):
            pred = load_image(pred_path)
            if pred.shape != target.shape:
                raise InputError(
                    f"saved prediction {pred_path} is {_size(pred)} but target {sample.id} is "
                    f"{_size(target)}; delete it to recompute"
                )
            return _quantize(pred), float(meta.get("runtime_s", float("nan"))), True
    if "image" not in cache:
        cache["image"] = _prepare_input(ctx, sample, target)
    image = cache["image"]
    depth = None
    if run.needs_depth:
        if "depth" not in cache:
            cache["depth"] = _depth_for(ctx, sample, image)
        depth = cache["depth"]
        if depth is None:
            raise _NoDepth(
                f"needs a depth map but id {sample.id} of {sample.where} has none and no --depth-model was given"
            )
    params = dict(run.params)
    focus = getattr(ctx.source, "focus_disparity", None)
    if ctx.source.synthetic and focus is not None:
        # The synthetic scenes know their lens: give it to methods that take it, unless --param set it.
        for name in FOCUS_PARAMS:
            if name in params and name not in run.user_params:
                params[name] = focus(sample.id)
        if "strength" in params and "strength" not in run.user_params:
            params["strength"] = ctx.source.meta.get("strength", params["strength"])
    if not run.warmed:
        for _ in range(max(0, ctx.warmup)):
            run.method(image, depth, **params)
        run.warmed = True
    output, seconds = timed_call(run.method, image, depth, **params)
    output = np.asarray(output)
    if not np.all(np.isfinite(output)):
        raise InputError(f"method {run.label!r} returned NaN or infinite values for id {sample.id}")
    if output.shape != target.shape:
        raise InputError(f"method {run.label!r} returned {output.shape} for id {sample.id}; target is {target.shape}")
    levels = np.asarray(array_to_pil(output))  # exactly what the PNG holds
    save_image(Image.fromarray(levels), pred_path)
    atomic_write(
        meta_path,
        json.dumps(
            {**identity, "method": run.name, "params": params, "runtime_s": seconds, "hardware": run.hardware},
            default=str,
        ),
    )
    return levels.astype(np.float64) / 255.0, seconds, False


def _external(ctx: ShardContext, run: MethodRun, sample: Sample, target: np.ndarray) -> np.ndarray:
    path = find_prediction(run.folder, sample.id) if run.folder is not None else None
    if path is None:
        raise InputError(f"predictions of {run.label!r} in {run.folder} are missing for id {sample.id}")
    pred = load_external(path)
    if pred.shape != target.shape:
        raise InputError(f"prediction {path} is {_size(pred)} but target {sample.id} is {_size(target)}")
    copy = prediction_path(ctx.out, run.label, sample.id)
    if path.resolve() != copy.resolve():
        save_image(pred, copy)
    return _quantize(pred)


def _write_pair_files(out: Path, sample: Sample) -> None:
    for folder, data in ((targets_dir(out), sample.bokeh), (inputs_dir(out), sample.original)):
        path = folder / f"{sample.id}{image_extension(data)}"
        if not path.is_file() or path.stat().st_size != len(data) or path.read_bytes() != data:
            atomic_write(path, data)


def score_shard(
    ctx: ShardContext, runs: list[MethodRun], shard: int, world: int, limit: int, show_progress: bool
) -> dict[str, Any]:
    """Score the samples ``shard, shard + world, ...`` (of the first ``limit``, 0 = all) with every method.

    Returns:
        ``{"rows", "hashes", "input_hashes", "upsampled_inputs", "dropped"}``: one row per (method, id) with
        PSNR (capped at :data:`PSNR_CAP_DB`), SSIM, LPIPS, runtime and size; the targets' and inputs' SHA-256
        by id; how many half-resolution inputs were upsampled; the methods dropped part-way (no depth).

    Raises:
        InputError: a prediction is missing, unreadable, of the wrong size or not finite.
    """
    from tqdm.auto import tqdm

    rows: list[dict[str, Any]] = []
    hashes: dict[str, str] = {}
    input_hashes: dict[str, str] = {}
    ids = ctx.source.ids()
    total = None
    if ids is not None:
        count = min(len(ids), limit) if limit else len(ids)
        total = len(range(shard, count, world))
    progress = tqdm(
        total=total,
        desc=f"evaluating [{shard + 1}/{world}]" if world > 1 else "evaluating",
        unit="img",
        disable=not show_progress,
    )
    index = -1
    for sample in ctx.source.iter_samples(0, 1):
        index += 1
        if limit and index >= limit:
            break
        if index % world != shard:
            continue
        target = _exact_levels(sample.decode_bokeh())
        _write_pair_files(ctx.out, sample)
        hashes[sample.id] = sample.bokeh_sha256
        input_hashes[sample.id] = sample.original_sha256
        cache: dict[str, Any] = {}
        for run in runs:
            if run.label in ctx.dropped:
                continue
            runtime, reused = float("nan"), False
            if run.kind == "registered":
                try:
                    pred, runtime, reused = _render(ctx, run, sample, target, cache)
                except _NoDepth as missing:  # streaming: found part-way; drop the method, keep the run going
                    ctx.dropped[run.label] = str(missing)
                    rows = [row for row in rows if row["method"] != run.label]
                    continue
            else:
                pred = _external(ctx, run, sample, target)
            scores = score_pair(pred, target, ctx.profile, lpips_model=ctx.lpips_model)
            capped = bool(scores["psnr"] > PSNR_CAP_DB)  # inf (identical images) included
            rows.append(
                {
                    "method": run.label,
                    "id": sample.id,
                    "psnr": PSNR_CAP_DB if capped else scores["psnr"],
                    "psnr_capped": capped,
                    "ssim": scores["ssim"],
                    "lpips": scores["lpips"],
                    "runtime_s": runtime,
                    "reused": reused,
                    "width": target.shape[1],
                    "height": target.shape[0],
                }
            )
        progress.update(1)
    progress.close()
    return {
        "rows": rows,
        "hashes": hashes,
        "input_hashes": input_hashes,
        "upsampled_inputs": ctx.upsampled_inputs,
        "dropped": ctx.dropped,
    }
