#!/usr/bin/env python
"""``python evaluation/run.py``: score bokeh methods on EBB! (or the synthetic sample) and write Table 1.

Examples::

    python evaluation/run.py                                   # synthetic sample (NOT EBB!), every available method
    python evaluation/run.py --dataset runs/ebb_hf --split val294 --methods pynet lens --weights path/to/pynet
    python evaluation/run.py --dataset ID --methods lens --param lens.strength=12 --predictions mynet=preds/
    accelerate launch --num_processes 2 evaluation/run.py --dataset ID --out runs/val294   # sharded, rank 0 merges

Outputs in ``--out``: ``table.md``, ``table.csv``, ``per_image.csv``, ``run.json``, ``leaderboard.json``,
``report.html``, ``predictions/<method>/<id>.png`` (+ ``.json`` sidecars with the runtime), ``targets/<id>.<ext>``
and ``inputs/<id>.<ext>`` (original bytes). Predictions already on disk with the same method settings, input
bytes and depth source are reused, so an interrupted run resumes. Methods that cannot run here (PyNET without
weights, renderers without depth maps or ``--depth-model``) are listed as not scored, with the reason; named in
``--methods``, they are an error (exit 3) found before anything is written. Exit codes: 0 ok, 1 failure,
2 bad input, 3 missing model, weights, depth, LPIPS trunk (with --require-lpips) or dataset.

From Python, :func:`evaluate_predictions` scores a folder of predictions and returns the run record.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import argparse
import datetime as _dt
import hashlib
import inspect
import json
import os
import shlex
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from bokeh_model.errors import BokehError, InputError, ModelUnavailableError
from bokeh_model.fetch import FetchError, fetch_lpips, is_offline
from bokeh_model.files import atomic_write
from bokeh_model.images import array_to_pil, load_image, resize_array, save_image
from evaluation.dataset import EvalSource, Sample, default_split, fingerprint, image_extension, open_source, sort_ids
from evaluation.metrics import (
    ALEXNET_FILE,
    DEFAULT_PROFILE,
    PROFILES,
    LPIPSUnavailableError,
    MetricProfile,
    get_lpips_model,
    get_profile,
    lpips_status,
    score_pair,
    summarize,
    verify_lpips_trunk,
)
from evaluation.runtime import environment_info, hardware_label, timed_call

__all__ = [
    "PSNR_CAP_DB",
    "build_parser",
    "evaluate_predictions",
    "main",
    "run_evaluation",
]

DERIVED_FILES = ("table.md", "table.csv", "leaderboard.json", "report.html", "run.json", "per_image.csv")
PREDICTION_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".npy")
FOCUS_PARAMS = ("focus_disparity", "focus")
# A prediction equal to its target has infinite PSNR; 8-bit images that differ in one level of one pixel of a
# 1536x1024 photo give about 115 dB. Every PSNR above this cap counts as the cap, so identical images raise a
# method's mean instead of silently dropping out of it. Capped images are counted in run.json and the table.
PSNR_CAP_DB = 100.0
# Ids a split must hold to be complete (Val294 = EBB! training ids 4400-4693, the DMSHN benchmark).
EXPECTED_IDS: dict[str, list[str]] = {"val294": [str(i) for i in range(4400, 4694)]}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python evaluation/run.py",
        description="Score bokeh methods with PSNR / SSIM / LPIPS and runtime; write Table 1 style leaderboards.",
        epilog="Exit codes: 0 ok, 1 failure, 2 bad input, 3 missing model / weights / LPIPS trunk / dataset.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset",
        help="hub id, folder (hub layout or save_to_disk) or .parquet file; "
        "default: the built-in synthetic sample (NOT EBB!)",
    )
    data.add_argument(
        "--split",
        default=None,
        help="split to evaluate (default: val294 = EBB! ids 4400-4693; a local dataset without val294 but with "
        "a `val` split, such as one built by `python -m evaluation.pairs`, uses `val`)",
    )
    data.add_argument("--streaming", action="store_true", help="stream the rows (large datasets)")
    data.add_argument("--limit", type=int, default=0, help="evaluate only the first N images (0 = all)")
    data.add_argument("--synthetic-scenes", type=int, default=8, help="synthetic sample: number of scenes")
    data.add_argument("--synthetic-size", default="256x192", help="synthetic sample: WIDTHxHEIGHT (default 256x192)")
    methods = parser.add_argument_group("methods")
    methods.add_argument(
        "--methods",
        nargs="+",
        metavar="[LABEL=]NAME",
        help="registered methods to run (default: every available one; 'none' for only --predictions)",
    )
    methods.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="LABEL.KEY=VALUE",
        help="a render parameter of a method, e.g. lens.strength=12 (repeatable)",
    )
    methods.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="LABEL.KEY=VALUE",
        help="a constructor option of a method, e.g. pynet.precision=bf16 (repeatable)",
    )
    methods.add_argument(
        "--weights",
        help="PyNET weights (save_pretrained folder or cached hub id; default: $BOKEH_PYNET_WEIGHTS, else "
        "~/.cache/bokeh_model/pynet-bokeh, filled by `python -m bokeh_model fetch pynet`)",
    )
    methods.add_argument(
        "--predictions",
        action="append",
        default=[],
        metavar="[LABEL=]DIR",
        help="predictions of a method we do not have, files named by id (repeatable)",
    )
    methods.add_argument(
        "--depth-model",
        help="transformers depth model for methods that need depth when the "
        "dataset has no depth column (local folder or cached hub id)",
    )
    methods.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    methods.add_argument("--warmup", type=int, default=2, help="untimed warm-up calls per method (default 2)")
    scoring = parser.add_argument_group("scoring")
    scoring.add_argument(
        "--profile",
        default=DEFAULT_PROFILE,
        choices=sorted(PROFILES),
        help="metric profile: pynet (authors' protocol, default) or dmshn (published Val294 tables)",
    )
    scoring.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    scoring.add_argument(
        "--require-lpips",
        action="store_true",
        help="fail (exit 3) when the LPIPS AlexNet trunk is not in the torch hub cache",
    )
    scoring.add_argument(
        "--offline",
        action="store_true",
        help="never download (the LPIPS trunk is otherwise fetched on first use when online; also HF_HUB_OFFLINE=1)",
    )
    scoring.add_argument(
        "--allow-unofficial-lpips",
        action="store_true",
        help="score LPIPS with an AlexNet trunk whose SHA-256 is not torchvision's (recorded in run.json)",
    )
    parser.add_argument("--out", default="runs/latest", help="output folder (default: runs/latest)")
    return parser


# ---------------------------------------------------------------------------------------------- helpers


def _fetch_lpips_trunk(say: Callable[[str], None]) -> str | None:
    """Download the LPIPS trunk on first use (online, no --offline); returns the reason when that fails."""
    try:
        result = fetch_lpips(progress=True)
    except FetchError as exc:
        return f"LPIPS unavailable: {exc}"
    say(f"LPIPS AlexNet trunk {result.status} at {result.path}")
    return None


def parse_assignments(items: Sequence[str], flag: str) -> dict[str, dict[str, str]]:
    """``["lens.strength=12", ...]`` -> ``{"lens": {"strength": "12"}}``.

    Raises:
        InputError: an item is not ``LABEL.KEY=VALUE``.
    """
    result: dict[str, dict[str, str]] = {}
    for item in items:
        head, sep, value = item.partition("=")
        label, dot, key = head.partition(".")
        if not sep or not dot or not label or not key:
            raise InputError(f"{flag} {item!r} must look like LABEL.KEY=VALUE, e.g. lens.strength=12")
        result.setdefault(label, {})[key] = value
    return result


@dataclass
class MethodRun:
    """One column of the comparison: a registered method with its settings, or an external prediction folder."""

    label: str
    name: str
    kind: str  # "registered" or "external"
    method: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    folder: Path | None = None
    hardware: str = ""
    description: str = ""
    warmed: bool = False
    needs_depth: bool = False

    def config_hash(self) -> str:
        payload = {
            "name": self.name,
            "params": self.params,
            "options": {k: str(v) for k, v in self.options.items() if k != "device"},
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _create(name: str, options: dict[str, Any]) -> Any:
    from bokeh_model import create_method
    from bokeh_model.registry import get_method_class

    try:
        factory = get_method_class(name)
    except KeyError as exc:
        raise InputError(str(exc.args[0])) from None
    try:
        accepted = inspect.signature(factory).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    except (TypeError, ValueError):
        accepted, takes_any = {}, True
    kwargs = {k: v for k, v in options.items() if takes_any or k in accepted}
    unknown = sorted(set(options) - set(kwargs) - {"device"})
    if unknown:
        raise InputError(f"method {name!r} does not take the options {unknown}; it takes {sorted(accepted)}")
    try:
        return create_method(name, **kwargs)
    except TypeError as exc:
        raise InputError(f"method {name!r} does not accept these options {sorted(kwargs)}: {exc}") from None


def resolve_methods(args: argparse.Namespace, device: str) -> tuple[list[MethodRun], list[dict[str, str]]]:
    """The registered and external methods of this run, and the skipped ones (``{"method", "reason"}``).

    Raises:
        ModelUnavailableError: an explicitly requested method cannot run here (e.g. PyNET without weights).
        InputError: unknown method, bad parameter, or a --param/--option for a label that is not run.
    """
    from bokeh_model import list_methods

    params = parse_assignments(args.param, "--param")
    options = parse_assignments(args.option, "--option")
    skipped: list[dict[str, str]] = []
    explicit = args.methods is not None
    requested = [] if explicit and args.methods == ["none"] else (args.methods or list_methods())
    runs: list[MethodRun] = []
    for entry in requested:
        label, _, name = entry.partition("=") if "=" in entry else (entry, "", entry)
        method_options: dict[str, Any] = {"device": device, **options.get(label, {})}
        if name == "pynet" and args.weights:
            method_options.setdefault("weights", args.weights)
        method = _create(name, method_options)
        ok, reason = method.availability()
        if not ok:
            if explicit:
                raise ModelUnavailableError(f"method {label!r} ({name}) cannot run here: {reason}")
            skipped.append({"method": label, "reason": reason})
            continue
        checked = method.validate_params(params.get(label, {}))
        runs.append(
            MethodRun(
                label=label,
                name=name,
                kind="registered",
                method=method,
                params=checked,
                options={k: v for k, v in method_options.items()},
                hardware=hardware_label(device),
                description=method.description,
            )
        )
    for entry in args.predictions:
        label, _, folder = entry.rpartition("=") if "=" in entry else ("", "", entry)
        path = Path(folder).expanduser()
        label = label or path.name
        if not path.is_dir():
            raise InputError(f"--predictions {entry!r}: {path} is not a folder")
        runs.append(
            MethodRun(
                label=label, name=label, kind="external", folder=path, description=f"external predictions from {path}"
            )
        )
    labels = [run.label for run in runs]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise InputError(f"method labels must be unique, got {duplicates} twice; use LABEL=NAME to tell them apart")
    stray = sorted((set(params) | set(options)) - set(labels) - {n.split("=")[0] for n in requested})
    if stray:
        raise InputError(f"--param/--option given for {stray}, which are not run; run labels: {labels}")
    if not runs and not skipped:
        raise InputError("no method to evaluate: give --methods NAME or --predictions DIR")
    return runs, skipped


def _find_prediction(folder: Path, sample_id: str) -> Path | None:
    for extension in PREDICTION_EXTENSIONS:
        candidate = folder / f"{sample_id}{extension}"
        if candidate.is_file():
            return candidate
    return None


def _check_external(runs: list[MethodRun], ids: list[str] | None) -> None:
    if ids is None:
        return
    for run in runs:
        if run.kind != "external" or run.folder is None:
            continue
        missing = [i for i in ids if _find_prediction(run.folder, i) is None]
        if missing:
            shown = ", ".join(missing[:20]) + (f" ... ({len(missing)} in all)" if len(missing) > 20 else "")
            raise InputError(
                f"predictions of {run.label!r} in {run.folder} are missing for ids {shown} "
                f"(expected files like {run.folder}/<id>.png)"
            )


def _load_external(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable .npy prediction ({exc})") from None
        if array.ndim != 3 or array.shape[2] != 3:
            raise InputError(f"{path}: prediction must have shape (H, W, 3), got {array.shape}")
        if not np.all(np.isfinite(array)):
            raise InputError(f"{path}: prediction contains NaN or infinite values")
        return np.clip(array.astype(np.float32), 0.0, 1.0)
    return load_image(path)


def _quantize(array: np.ndarray) -> np.ndarray:
    """What the saved 8-bit PNG holds: round(clip(x) * 255) / 255 (as float64 for the metrics)."""
    return np.round(np.clip(array.astype(np.float64), 0.0, 1.0) * 255.0) / 255.0


def _exact_levels(image: np.ndarray) -> np.ndarray:
    """float32 k/255 values as exact float64 k/255 (8-bit images); other images just as float64."""
    wide = image.astype(np.float64)
    levels = np.round(wide * 255.0) / 255.0
    return levels if float(np.abs(levels - wide).max(initial=0.0)) < 1e-6 else wide


def _strict_json(value: Any) -> Any:
    """NaN and infinities as ``null`` so that run.json is strict JSON (readable from JavaScript too)."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(v) for v in value]
    return value


def _size(array: np.ndarray) -> str:
    return f"{array.shape[1]}x{array.shape[0]}"


# ---------------------------------------------------------------------------------------------- the run


@dataclass
class _Context:
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


def _prepare_input(ctx: _Context, sample: Sample, target: np.ndarray) -> np.ndarray:
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


def _depth_identity(ctx: _Context, sample: Sample) -> str | None:
    """What a method's depth input is made of: the row's depth map (by hash) or the depth model's name."""
    stored = sample.depth_sha256
    if stored is not None:
        return f"dataset:{stored}"
    return f"model:{ctx.depth_model}" if ctx.depth_estimator is not None else None


def _depth_for(ctx: _Context, sample: Sample, image: np.ndarray) -> np.ndarray | None:
    depth = sample.decode_depth()
    if depth is not None:
        return depth
    if ctx.depth_estimator is None:
        return None
    from bokeh_model.images import load_depth, save_depth

    # Estimated maps are kept in --out/depth, reused only for the same input bytes and the same depth model.
    cached = ctx.out / "depth" / f"{sample.id}.png"
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
    ctx: _Context, run: MethodRun, sample: Sample, target: np.ndarray, cache: dict[str, Any]
) -> tuple[np.ndarray, float, bool]:
    """The prediction of a registered method for one sample: (float64 quantised array, runtime s, reused?)."""
    pred_path = ctx.out / "predictions" / run.label / f"{sample.id}.png"
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
        user = run.options.get("_user_params", ())
        for name in FOCUS_PARAMS:
            if name in params and name not in user:
                params[name] = focus(sample.id)
        if "strength" in params and "strength" not in user:
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


def _external(ctx: _Context, run: MethodRun, sample: Sample, target: np.ndarray) -> np.ndarray:
    path = _find_prediction(run.folder, sample.id) if run.folder is not None else None
    if path is None:
        raise InputError(f"predictions of {run.label!r} in {run.folder} are missing for id {sample.id}")
    pred = _load_external(path)
    if pred.shape != target.shape:
        raise InputError(f"prediction {path} is {_size(pred)} but target {sample.id} is {_size(target)}")
    copy = ctx.out / "predictions" / run.label / f"{sample.id}.png"
    if path.resolve() != copy.resolve():
        save_image(pred, copy)
    return _quantize(pred)


def _write_pair_files(out: Path, sample: Sample) -> None:
    for folder, data in (("targets", sample.bokeh), ("inputs", sample.original)):
        path = out / folder / f"{sample.id}{image_extension(data)}"
        if not path.is_file() or path.stat().st_size != len(data) or path.read_bytes() != data:
            atomic_write(path, data)


def _score_shard(
    ctx: _Context, runs: list[MethodRun], shard: int, world: int, limit: int, show_progress: bool
) -> dict[str, Any]:
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


def _summaries(frame: Any, runs: list[MethodRun], synthetic: bool = False) -> dict[str, Any]:
    result = {}
    for run in runs:
        part = frame[frame["method"] == run.label]
        runtimes = part["runtime_s"].to_numpy(dtype=np.float64)
        result[run.label] = {
            "method": run.name,
            "kind": run.kind,
            "description": run.description,
            "params": run.params,
            "params_set_per_scene": (
                sorted(
                    p
                    for p in (*FOCUS_PARAMS, "strength")
                    if p in run.params and p not in run.options.get("_user_params", ())
                )
                if synthetic and run.kind == "registered"
                else []
            ),
            "options": {k: str(v) for k, v in run.options.items() if not k.startswith("_")},
            "hardware": run.hardware,
            "n_images": int(len(part)),
            "reused_predictions": int(part["reused"].sum()),
            "runtime_s": summarize(runtimes) if np.isfinite(runtimes).any() else None,
            "metrics": {m: summarize(part[m].to_numpy(dtype=np.float64)) for m in ("psnr", "ssim", "lpips")},
            "psnr_capped": int(part["psnr_capped"].sum()) if "psnr_capped" in part else 0,
            "psnr_cap_db": PSNR_CAP_DB,
        }
    return result


def _skip_methods_without_depth(
    source: EvalSource, runs: list[MethodRun], args: argparse.Namespace
) -> tuple[list[MethodRun], list[dict[str, str]]]:
    """Leave out methods that need depth when the data has none and no --depth-model was given.

    Checked before anything is written, so a run never stops part-way for this. A method named in
    --methods cannot be honoured, which is an error (exit 3) like PyNET without weights.

    Raises:
        ModelUnavailableError: an explicitly requested method needs depth that the run cannot provide.
    """
    needy = [run for run in runs if run.kind == "registered" and run.needs_depth]
    if not needy or args.depth_model:
        return runs, []
    with_depth, total = source.depth_coverage()
    if with_depth == 0:
        why = f"{source.description} has no depth maps"
    elif with_depth is not None and total is not None and with_depth < total:
        why = f"{total - with_depth} of {total} rows of {source.description} have no depth map"
    else:
        return runs, []  # every row has depth, or unknown until read (streaming): checked per row
    reason = (
        f"needs a depth map: {why} and no --depth-model was given; build the dataset once with "
        "`python -m evaluation.ebb build --depth-model MODEL` (every later run reuses the stored maps) "
        "or pass --depth-model MODEL"
    )
    if args.methods is not None:
        raise ModelUnavailableError(f"method(s) {[run.label for run in needy]} {reason}")
    return [run for run in runs if run not in needy], [{"method": run.label, "reason": reason} for run in needy]


def _coverage(source: EvalSource, scored: list[str], available: int | None, limit: int) -> dict[str, Any]:
    """How much of the split was scored: ``n`` of ``expected`` ids (Val294: 294), missing and extra ids."""
    expected = None if source.synthetic else EXPECTED_IDS.get(source.split)
    coverage: dict[str, Any] = {"n": len(scored), "expected": len(expected) if expected else available}
    missing: list[str] = []
    if expected:
        missing = sort_ids(set(expected) - set(scored))
        coverage["missing_ids"] = missing
        coverage["unexpected_ids"] = sort_ids(set(scored) - set(expected))
        coverage["expected_ids"] = f"{expected[0]}-{expected[-1]}"
    # --limit cut the split short when rows were left (streaming: unknown, so assume it did if it was reached)
    limited = bool(limit) and (available > len(scored) if available is not None else len(scored) >= limit)
    coverage["limit"] = limit or None
    coverage["complete"] = not missing and not coverage.get("unexpected_ids") and not limited
    return coverage


def run_evaluation(args: argparse.Namespace, argv: Sequence[str] | None = None) -> Path:
    """Run the evaluation described by parsed ``args``; returns the output folder.

    Everything that can be checked up front (data, methods, depth, weights, LPIPS) is checked before the
    output folder is touched; the tables are written at the end, each file atomically.

    Raises:
        InputError, ModelUnavailableError: see the module docstring's exit codes.
    """
    import pandas as pd
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=args.device == "cpu" or not torch.cuda.is_available())
    rank, world = state.process_index, state.num_processes
    device = str(state.device) if args.device == "auto" else args.device
    if device.startswith("cpu"):
        device = "cpu"
    elif device.startswith("cuda") and args.device == "auto" and world == 1:
        device = "cuda"
    out = Path(args.out)
    main_process = state.is_main_process
    say = print if main_process else (lambda *a, **k: None)

    profile = get_profile(args.profile)
    notes: list[str] = []
    try:
        width, height = (int(v) for v in args.synthetic_size.lower().split("x"))
    except ValueError:
        raise InputError(f"--synthetic-size must look like 256x192, got {args.synthetic_size!r}") from None
    if args.split is None:
        args.split = default_split(args.dataset)
        if args.split != "val294":
            say(f"split: {args.split} (the dataset has no val294 split)")
    source = open_source(
        args.dataset, args.split, streaming=args.streaming, num_scenes=args.synthetic_scenes, height=height, width=width
    )
    if source.synthetic:
        notes.append(
            "synthetic sample: methods taking focus_disparity / strength get each scene's true values "
            "unless --param sets them"
        )
        say(
            "=" * 78
            + f"\n  {source.description}\n  No --dataset given: these numbers are NOT EBB! results.\n"
            + "=" * 78
        )
    runs, skipped = resolve_methods(args, device)
    user_params = parse_assignments(args.param, "--param")
    for run in runs:
        run.options["_user_params"] = tuple(user_params.get(run.label, {}))
        if run.kind == "registered":
            run.needs_depth = bool(run.method.requires_depth())
    runs, no_depth = _skip_methods_without_depth(source, runs, args)
    skipped += no_depth
    for entry in skipped:
        say(f"note: skipped {entry['method']}: {entry['reason']}")
    all_ids = source.ids()
    ids = all_ids[: args.limit] if all_ids is not None and args.limit else all_ids
    _check_external(runs, ids)

    lpips_model = None
    lpips_info: dict[str, Any] = {"available": False, "reason": "skipped with --no-lpips"}
    if not args.no_lpips:
        ok, reason = lpips_status()
        if not ok and not is_offline(True if args.offline else None):
            reason = _fetch_lpips_trunk(say) or reason
            ok = lpips_status()[0]
        if ok:
            trunk = verify_lpips_trunk(allow_unofficial=args.allow_unofficial_lpips)
            if not trunk["official"]:
                say(f"warning: LPIPS uses an unofficial AlexNet trunk (SHA-256 {trunk['sha256'][:16]}...)")
            lpips_model = get_lpips_model(device)
            lpips_info = {"available": True, "reason": "", "net": "alex", "version": "0.1", "trunk": trunk}
            if not trunk["official"]:
                notes.append(
                    f"LPIPS trunk {trunk['path']} has SHA-256 {trunk['sha256'][:16]}..., "
                    f"not the official {ALEXNET_FILE}: LPIPS values are not comparable with published ones"
                )
        elif args.require_lpips:
            raise LPIPSUnavailableError(reason)
        else:
            lpips_info = {"available": False, "reason": reason}
            say(f"warning: {reason}")
    depth_estimator = None
    if args.depth_model and any(run.needs_depth for run in runs):
        from bokeh_model.depth import get_depth_estimator

        estimator = get_depth_estimator(args.depth_model, device)
        ok, reason = estimator.availability()
        if not ok:
            raise ModelUnavailableError(reason)
        depth_estimator = estimator.estimate

    if main_process:
        out.mkdir(parents=True, exist_ok=True)
        for name in DERIVED_FILES:  # never leave an old table next to a run that fails half way
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / ".shards", ignore_errors=True)
    state.wait_for_everyone()
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    ctx = _Context(
        out=out,
        profile=profile,
        source=source,
        lpips_model=lpips_model,
        depth_estimator=depth_estimator,
        warmup=args.warmup,
        depth_model=args.depth_model,
    )
    shard = _score_shard(ctx, runs, rank, world, args.limit, show_progress=main_process or world > 1)
    shard_file = out / ".shards" / f"rank-{rank:03d}-of-{world:03d}.json"
    atomic_write(shard_file, json.dumps(shard, default=float))
    state.wait_for_everyone()
    if not main_process:
        return out

    rows: list[dict[str, Any]] = []
    hashes: dict[str, str] = {}
    input_hashes: dict[str, str] = {}
    dropped: dict[str, str] = {}
    upsampled = 0
    for index in range(world):
        part = json.loads((out / ".shards" / f"rank-{index:03d}-of-{world:03d}.json").read_text(encoding="utf-8"))
        rows += part["rows"]
        hashes.update(part["hashes"])
        input_hashes.update(part["input_hashes"])
        dropped.update(part["dropped"])
        upsampled += part["upsampled_inputs"]
    expected = ids if ids is not None else sort_ids(hashes)
    missing = sorted(set(expected) - set(hashes))
    if missing:
        raise BokehError(f"shards did not score ids {missing[:20]}; the run is incomplete, no table was written")
    if not hashes:
        raise InputError(f"{source.description} has no images to evaluate")
    # a method one shard had to drop (a row without depth) is dropped from every shard
    rows = [row for row in rows if row["method"] not in dropped]
    skipped += [{"method": label, "reason": reason} for label, reason in dropped.items()]
    runs = [run for run in runs if run.label not in dropped]
    frame = pd.DataFrame(
        rows,
        columns=["method", "id", "psnr", "psnr_capped", "ssim", "lpips", "runtime_s", "reused", "width", "height"],
    )
    order = {sample_id: position for position, sample_id in enumerate(sort_ids(hashes))}
    frame["_order"] = frame["id"].map(order)
    frame["_method"] = frame["method"].map({run.label: i for i, run in enumerate(runs)})
    frame = frame.sort_values(["_method", "_order"]).drop(columns=["_order", "_method"]).reset_index(drop=True)
    for run in runs:
        if run.kind == "registered":
            runtimes = frame.loc[frame["method"] == run.label, "runtime_s"]
            if runtimes.isna().any():
                notes.append(f"{run.label}: {int(runtimes.isna().sum())} reused predictions had no recorded runtime")
    capped = frame.loc[frame["psnr_capped"].astype(bool)]
    if len(capped):
        counts = capped.groupby("method", sort=False).size()
        notes.append(
            f"PSNR capped at {PSNR_CAP_DB:g} dB (prediction equal to the target, or closer than that) for "
            + ", ".join(f"{label}: {count} image{'s' if count != 1 else ''}" for label, count in counts.items())
            + "; the means include them at the cap"
        )
    if upsampled:
        notes.append(f"{upsampled} half-resolution inputs were upsampled x2 (bicubic) to the target size")
    coverage = _coverage(source, sort_ids(hashes), len(all_ids) if all_ids is not None else None, args.limit)
    words = list(sys.argv) if argv is None else ["-m", "evaluation.run", *argv]
    command = "python " + " ".join(shlex.quote(str(a)) for a in words)
    env = environment_info(device)
    run_record = {
        "status": "complete",
        "started_at": started,
        "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "profile": profile.name,
        "profile_description": profile.description,
        "profile_border_px": profile.border,
        "dataset": {
            "name": source.name,
            "split": source.split,
            "synthetic": source.synthetic,
            "description": source.description,
            "meta": source.meta,
            "coverage": coverage,
            "fingerprint": fingerprint(source.name, source.split, hashes, input_hashes),
        },
        "lpips": lpips_info,
        "psnr_cap_db": PSNR_CAP_DB,
        "device": device,
        "hardware": env["hardware"],
        "versions": env,
        "world_size": world,
        "warmup_calls": args.warmup,
        "timing": "wall time of one method call per image after warm-up calls, CUDA synchronised before and after; "
        "includes the method's own pre/post-processing, excludes file I/O, decoding and metrics",
        "quantization": "predictions are scored as saved: 8-bit PNG levels",
        "notes": notes,
        "skipped_methods": skipped,
        "methods": _summaries(frame, runs, source.synthetic),
    }
    atomic_write(out / "per_image.csv", frame.to_csv(index=False))
    atomic_write(out / "run.json", json.dumps(_strict_json(run_record), indent=2, default=str, allow_nan=False))
    from evaluation.leaderboard import rebuild_tables

    rebuild_tables(out)
    shutil.rmtree(out / ".shards", ignore_errors=True)
    if not coverage["complete"]:
        say(f"warning: incomplete split: {coverage['n']} of {coverage['expected']} images scored")
    for label, summary in run_record["methods"].items():
        metrics = summary["metrics"]
        runtime = summary["runtime_s"]
        lpips_text = "n/a" if metrics["lpips"]["n"] == 0 else f"{metrics['lpips']['mean']:.4f}"
        say(
            f"{label:>16}: PSNR {metrics['psnr']['mean']:.2f}  SSIM {metrics['ssim']['mean']:.4f}  "
            f"LPIPS {lpips_text}  runtime "
            + (f"{runtime['mean']:.4f} s" if runtime else "n/a")
            + f"  ({summary['n_images']} images)"
        )
    for entry in skipped:
        say(f"{entry['method']:>16}: not scored ({entry['reason']})")
    say(f"wrote {out / 'table.md'}, {out / 'report.html'} and per-image results")
    return out


def evaluate_predictions(
    dataset: str,
    split: str,
    predictions_dir: str | os.PathLike,
    *,
    label: str = "submission",
    profile: str = DEFAULT_PROFILE,
    out_dir: str | os.PathLike,
    lpips: bool = True,
    require_lpips: bool = False,
    allow_unofficial_lpips: bool = False,
    device: str = "auto",
    limit: int = 0,
) -> dict[str, Any]:
    """Score a folder of predictions (``<id>.png|jpg|npy``) on a dataset split: the library form of
    ``python evaluation/run.py --dataset DATASET --split SPLIT --methods none --predictions LABEL=DIR``.

    Writes the usual outputs into ``out_dir`` and returns the run record (the content of ``run.json``:
    ``methods[label]`` holds the metric summaries, ``dataset.fingerprint`` and ``dataset.coverage`` what was
    scored, ``versions`` and ``lpips`` the environment).

    Raises:
        InputError: bad dataset, split, missing or malformed predictions (the message names the files).
        ModelUnavailableError: the dataset cannot be reached, or LPIPS is missing with ``require_lpips``.
    """
    argv = [
        "--dataset",
        str(dataset),
        "--split",
        split,
        "--methods",
        "none",
        "--predictions",
        f"{label}={os.fspath(predictions_dir)}",
        "--profile",
        profile,
        "--device",
        device,
        "--limit",
        str(limit),
        "--out",
        os.fspath(out_dir),
    ]
    if not lpips:
        argv.append("--no-lpips")
    if require_lpips:
        argv.append("--require-lpips")
    if allow_unofficial_lpips:
        argv.append("--allow-unofficial-lpips")
    out = run_evaluation(build_parser().parse_args(argv), argv)
    return json.loads((out / "run.json").read_text(encoding="utf-8"))


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from bokeh_model.errors import run_reporting_errors

    def evaluate() -> int:
        run_evaluation(args, argv)
        return 0

    return run_reporting_errors(
        evaluate, interrupted="interrupted: predictions written so far are reused by the next run"
    )


if __name__ == "__main__":
    sys.exit(main())
