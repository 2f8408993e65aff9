"""Scoring one shard of a run: each sample's prediction per method (rendered, reused or external) and its metrics.

A shard is every ``world``-th sample from ``rank`` (one per process under ``accelerate launch``); its rows,
hashes and notes go to ``RUN/.shards/`` and :mod:`evaluation.record` merges them. A registered method's output
is saved as ``RUN/predictions/<label>/<id>.png`` with a ``.json`` sidecar (settings, input and depth identity,
runtime) and reused by a later run only when all of those match, so an interrupted run resumes. Predictions are
scored as saved: 8-bit levels.

One pass serves every requested metric profile: each target, input and prediction is decoded once (8-bit files
to their uint8 levels, :func:`~bokeh_model.images.load_image_levels`) and every profile is scored from the same
arrays. A small thread pool decodes, hashes and copies the next samples while the current one is scored (Pillow
and the compiled metric loops release the GIL). An external prediction that is an 8-bit RGB PNG is copied into
the run folder as it is, not decoded and re-encoded.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bokeh_model.errors import InputError
from bokeh_model.files import atomic_write, atomic_writer
from bokeh_model.images import array_to_pil, load_image_levels, resize_array, save_image
from evaluation.dataset import EvalSource, Sample, image_extension
from evaluation.methods import MethodRun, find_prediction, load_external
from evaluation.metrics import LPIPSBatch, MetricProfile, score_levels, score_pair
from evaluation.run_layout import depth_dir, inputs_dir, prediction_path, targets_dir
from evaluation.runtime import timed_call

__all__ = ["FOCUS_PARAMS", "PSNR_CAP_DB", "ShardContext", "StageTimes", "score_shard"]

FOCUS_PARAMS = ("focus_disparity", "focus")
# A prediction equal to its target has infinite PSNR; 8-bit images that differ in one level of one pixel of a
# 1536x1024 photo give about 115 dB. Every PSNR above this cap counts as the cap, so identical images raise a
# method's mean instead of silently dropping out of it. Capped images are counted in run.json and the table.
PSNR_CAP_DB = 100.0


class StageTimes:
    """Seconds spent per stage of scoring (decode, metrics per profile, LPIPS, writes, ...), summed over images and
    threads: what ``benchmarks/eval_speed.py`` prints so the next cost to cut is visible."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = {}

    def add(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def timed(self, stage: str) -> _Timer:
        return _Timer(self, stage)


class _Timer:
    def __init__(self, times: StageTimes, stage: str) -> None:
        self.times, self.stage = times, stage

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.times.add(self.stage, time.perf_counter() - self.start)


@dataclass
class ShardContext:
    """What scoring a shard needs besides the methods, and what it learns on the way (notes, dropped methods).

    ``profiles`` are scored in one pass from the same decoded arrays; ``pair_files`` copies the targets' and
    inputs' original bytes into the run folder (the study needs the targets; the run record names every file by
    SHA-256 either way). ``lpips_batch`` images of the same size go through LPIPS together.
    """

    out: Path
    profiles: list[MetricProfile]
    source: EvalSource
    lpips_model: Any
    depth_estimator: Any
    warmup: int
    depth_model: str | None = None
    pair_files: bool = True
    lpips_batch: int = 4
    prefetch: int = 2  # decoding threads (and samples decoded ahead of the one being scored)
    notes: list[str] = field(default_factory=list)
    upsampled_inputs: int = 0
    dropped: dict[str, str] = field(default_factory=dict)  # label -> why it stopped part-way (no depth)
    times: StageTimes = field(default_factory=StageTimes)


@dataclass
class _Image:
    """An image as it is scored: its 8-bit levels when it has them (uint8), else float64 in [0, 1]."""

    levels: np.ndarray | None = None
    wide: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.levels if self.levels is not None else self.wide).shape  # type: ignore[union-attr]

    def as_float(self) -> np.ndarray:
        """float64 in [0, 1]: k / 255 for 8-bit levels (what the float path scored before)."""
        if self.wide is None:
            self.wide = np.divide(self.levels, 255.0, dtype=np.float64)
        return self.wide


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


def _size(array: np.ndarray | _Image) -> str:
    return f"{array.shape[1]}x{array.shape[0]}"


def _decode_target(sample: Sample) -> _Image:
    """The target: 8-bit levels when the file has them, else the float path's exact levels (as before)."""
    where = f"{sample.where} id {sample.id} (bokeh)"
    try:
        levels = load_image_levels(sample.bokeh)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    return _Image(levels=levels) if levels is not None else _Image(wide=_exact_levels(sample.decode_bokeh()))


def _decode_prediction(path: Path) -> _Image:
    """A saved or external prediction, quantised to 8-bit levels as it is scored."""
    if path.suffix != ".npy":
        levels = load_image_levels(path)
        if levels is not None:
            return _Image(levels=levels)
    return _Image(wide=_quantize(load_external(path)))


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
    ctx: ShardContext, run: MethodRun, sample: Sample, target: _Image, cache: dict[str, Any]
) -> tuple[_Image, float, bool]:
    """The prediction of a registered method for one sample: (its 8-bit levels, runtime s, reused?)."""
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
            with ctx.times.timed("decode"):
                pred = _decode_prediction(pred_path)
            if pred.shape != target.shape:
                raise InputError(
                    f"saved prediction {pred_path} is {_size(pred)} but target {sample.id} is "
                    f"{_size(target)}; delete it to recompute"
                )
            return pred, float(meta.get("runtime_s", float("nan"))), True
    if "image" not in cache:
        with ctx.times.timed("decode"):
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
    run.backend = str(getattr(run.method, "last_backend", None) or run.backend)
    with ctx.times.timed("writes"):
        save_image(Image.fromarray(levels), pred_path)
        atomic_write(
            meta_path,
            json.dumps(
                {**identity, "method": run.name, "params": params, "runtime_s": seconds, "hardware": run.hardware},
                default=str,
            ),
        )
    return _Image(levels=levels), seconds, False


def _external(ctx: ShardContext, run: MethodRun, sample: Sample, target: _Image) -> _Image:
    """An external prediction, decoded (in a prefetch thread) and placed in the run folder."""
    path = find_prediction(run.folder, sample.id) if run.folder is not None else None
    if path is None:
        raise InputError(f"predictions of {run.label!r} in {run.folder} are missing for id {sample.id}")
    with ctx.times.timed("decode"):
        pred = _decode_prediction(path)
    if pred.shape != target.shape:
        raise InputError(f"prediction {path} is {_size(pred)} but target {sample.id} is {_size(target)}")
    copy = prediction_path(ctx.out, run.label, sample.id)
    if path.resolve() != copy.resolve():
        with ctx.times.timed("writes"):
            if pred.levels is not None and path.suffix.lower() == ".png":
                # An 8-bit RGB/grey PNG already holds exactly what is scored: copy its bytes (no re-encoding).
                copy.parent.mkdir(parents=True, exist_ok=True)
                with open(path, "rb") as src, atomic_writer(copy, suffix=".png") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            else:
                save_image(pred.levels if pred.levels is not None else pred.as_float(), copy)
    return pred


def _write_pair_files(out: Path, sample: Sample) -> None:
    for folder, data in ((targets_dir(out), sample.bokeh), (inputs_dir(out), sample.original)):
        path = folder / f"{sample.id}{image_extension(data)}"
        if not path.is_file() or path.stat().st_size != len(data) or path.read_bytes() != data:
            atomic_write(path, data)


@dataclass
class _Prepared:
    """What the prefetch threads make of one sample: the decoded target, hashes, external predictions."""

    sample: Sample
    target: _Image
    target_sha256: str
    input_sha256: str
    external: dict[str, _Image]


def _prepare(ctx: ShardContext, runs: list[MethodRun], sample: Sample) -> _Prepared:
    with ctx.times.timed("decode"):
        target = _decode_target(sample)
    with ctx.times.timed("bookkeeping"):
        target_sha256, input_sha256 = sample.bokeh_sha256, sample.original_sha256
    if ctx.pair_files:
        with ctx.times.timed("writes"):
            _write_pair_files(ctx.out, sample)
    external = {run.label: _external(ctx, run, sample, target) for run in runs if run.kind == "external"}
    return _Prepared(sample, target, target_sha256, input_sha256, external)


def _prefetched(ctx: ShardContext, runs: list[MethodRun], samples: Iterator[Sample]) -> Iterator[_Prepared]:
    """``_prepare`` of each sample, in order, computed ``ctx.prefetch`` samples ahead on a small thread pool.

    An error of a sample is raised when that sample's turn comes, as the sequential loop would raise it.
    """
    if ctx.prefetch <= 0:
        for sample in samples:
            yield _prepare(ctx, runs, sample)
        return
    pending: deque[Future[_Prepared]] = deque()
    with ThreadPoolExecutor(max_workers=ctx.prefetch, thread_name_prefix="eval-decode") as pool:
        try:
            for sample in samples:
                pending.append(pool.submit(_prepare, ctx, runs, sample))
                if len(pending) > ctx.prefetch:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _score(ctx: ShardContext, pred: _Image, target: _Image, profile: MetricProfile) -> dict[str, Any]:
    """PSNR and SSIM under one profile (LPIPS is filled in batches later; NaN without a model)."""
    with ctx.times.timed(f"metrics:{profile.name}"):
        if pred.levels is not None and target.levels is not None:
            scores = score_levels(pred.levels, target.levels, profile)
        else:
            scores = score_pair(pred.as_float(), target.as_float(), profile)
    return scores


def _samples(ctx: ShardContext, shard: int, world: int, limit: int) -> Iterator[Sample]:
    for index, sample in enumerate(ctx.source.iter_samples(0, 1)):
        if limit and index >= limit:
            return
        if index % world == shard:
            yield sample


def score_shard(
    ctx: ShardContext, runs: list[MethodRun], shard: int, world: int, limit: int, show_progress: bool
) -> dict[str, Any]:
    """Score the samples ``shard, shard + world, ...`` (of the first ``limit``, 0 = all) with every method, under
    every profile of ``ctx.profiles`` (one decode per image).

    Returns:
        ``{"rows", "hashes", "input_hashes", "upsampled_inputs", "dropped"}``: ``rows[profile]`` holds one row
        per (method, id) with PSNR (capped at :data:`PSNR_CAP_DB`), SSIM, LPIPS, runtime and size; the targets'
        and inputs' SHA-256 by id; how many half-resolution inputs were upsampled; the methods dropped part-way
        (no depth).

    Raises:
        InputError: a prediction is missing, unreadable, of the wrong size or not finite.
    """
    from tqdm.auto import tqdm

    rows: dict[str, list[dict[str, Any]]] = {profile.name: [] for profile in ctx.profiles}
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
    lpips = {
        profile.name: LPIPSBatch(ctx.lpips_model, profile, ctx.lpips_batch)
        for profile in ctx.profiles
        if ctx.lpips_model is not None
    }
    for prepared in _prefetched(ctx, runs, _samples(ctx, shard, world, limit)):
        sample, target = prepared.sample, prepared.target
        hashes[sample.id] = prepared.target_sha256
        input_hashes[sample.id] = prepared.input_sha256
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
                    for profile_rows in rows.values():
                        profile_rows[:] = [row for row in profile_rows if row["method"] != run.label]
                    for batch in lpips.values():
                        batch.drop(run.label)
                    continue
            else:
                pred = prepared.external[run.label]
            for profile in ctx.profiles:
                scores = _score(ctx, pred, target, profile)
                capped = bool(scores["psnr"] > PSNR_CAP_DB)  # inf (identical images) included
                row = {
                    "method": run.label,
                    "id": sample.id,
                    "psnr": PSNR_CAP_DB if capped else scores["psnr"],
                    "psnr_capped": capped,
                    "ssim": scores["ssim"],
                    "lpips": float("nan"),
                    "runtime_s": runtime,
                    "reused": reused,
                    "width": target.shape[1],
                    "height": target.shape[0],
                }
                rows[profile.name].append(row)
                if profile.name in lpips:
                    with ctx.times.timed("lpips"):
                        lpips[profile.name].add(
                            row,
                            pred.levels if pred.levels is not None else pred.as_float(),
                            target.levels if target.levels is not None else target.as_float(),
                        )
        progress.update(1)
    if lpips:
        with ctx.times.timed("lpips"):
            for batch in lpips.values():
                batch.flush()
    progress.close()
    return {
        "rows": rows,
        "hashes": hashes,
        "input_hashes": input_hashes,
        "upsampled_inputs": ctx.upsampled_inputs,
        "dropped": ctx.dropped,
    }
