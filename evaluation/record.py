"""The end of a run: merge the shards' scores, build the run record and write ``run.json`` and the tables.

Rank 0 reads every ``RUN/.shards/rank-*.json`` (:func:`merge_shards`), orders the rows by method and id, notes
what a reader must know (reused predictions without runtime, capped PSNR, upsampled inputs, an incomplete
split), summarises each method (mean, median, bootstrap CI) and writes ``per_image.csv``, ``run.json`` (strict
JSON) and the files derived from them (``table.md``, ``table.csv``, ``leaderboard.json``, ``report.html``).
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bokeh_model.errors import BokehError, InputError
from bokeh_model.files import atomic_write
from evaluation.dataset import EvalSource, fingerprint, sort_ids
from evaluation.methods import MethodRun
from evaluation.metrics import MetricProfile, summarize
from evaluation.run_layout import PER_IMAGE, RUN_RECORD, shard_path, shards_dir
from evaluation.runtime import environment_info
from evaluation.scoring import FOCUS_PARAMS, PSNR_CAP_DB

__all__ = [
    "EXPECTED_IDS",
    "Merged",
    "build_run_record",
    "coverage_of",
    "drop_shards",
    "merge_shards",
    "write_run_files",
]

# Ids a split must hold to be complete (Val294 = EBB! training ids 4400-4693, the DMSHN benchmark).
EXPECTED_IDS: dict[str, list[str]] = {"val294": [str(i) for i in range(4400, 4694)]}
PER_IMAGE_COLUMNS = ["method", "id", "psnr", "psnr_capped", "ssim", "lpips", "runtime_s", "reused", "width", "height"]


@dataclass
class Merged:
    """Every shard's results together: the per-image frame, the methods kept, hashes and notes."""

    frame: Any  # pandas.DataFrame with PER_IMAGE_COLUMNS, ordered by method then id
    runs: list[MethodRun]
    skipped: list[dict[str, str]]
    hashes: dict[str, str]
    input_hashes: dict[str, str]
    notes: list[str] = field(default_factory=list)


def merge_shards(
    out: Path,
    world: int,
    runs: list[MethodRun],
    skipped: list[dict[str, str]],
    ids: list[str] | None,
    source: Any,
    profile: str,
) -> Merged:
    """Read the ``world`` shard files of ``out`` into one ordered frame of ``profile``'s scores.

    A method one shard had to drop (a row without depth) is dropped from every shard and listed as skipped.

    Raises:
        BokehError: a shard did not score some of ``ids`` (no table is written).
        InputError: the source had no images.
    """
    import pandas as pd

    rows: list[dict[str, Any]] = []
    hashes: dict[str, str] = {}
    input_hashes: dict[str, str] = {}
    dropped: dict[str, str] = {}
    upsampled = 0
    for index in range(world):
        part = json.loads(shard_path(out, index, world).read_text(encoding="utf-8"))
        rows += part["rows"][profile]
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
    rows = [row for row in rows if row["method"] not in dropped]
    skipped = skipped + [{"method": label, "reason": reason} for label, reason in dropped.items()]
    runs = [run for run in runs if run.label not in dropped]
    frame = pd.DataFrame(rows, columns=PER_IMAGE_COLUMNS)
    order = {sample_id: position for position, sample_id in enumerate(sort_ids(hashes))}
    frame["_order"] = frame["id"].map(order)
    frame["_method"] = frame["method"].map({run.label: i for i, run in enumerate(runs)})
    frame = frame.sort_values(["_method", "_order"]).drop(columns=["_order", "_method"]).reset_index(drop=True)
    notes: list[str] = []
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
    return Merged(frame, runs, skipped, hashes, input_hashes, notes)


def coverage_of(source: EvalSource, scored: list[str], available: int | None, limit: int) -> dict[str, Any]:
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


def method_summaries(frame: Any, runs: list[MethodRun], synthetic: bool = False) -> dict[str, Any]:
    """``run.json``'s ``methods``: each method's settings, counts, runtime and metric summaries."""
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
                sorted(p for p in (*FOCUS_PARAMS, "strength") if p in run.params and p not in run.user_params)
                if synthetic and run.kind == "registered"
                else []
            ),
            "options": {k: str(v) for k, v in run.options.items() if not k.startswith("_")},
            "hardware": run.hardware,
            **({"backend": run.backend} if run.backend else {}),
            "n_images": int(len(part)),
            "reused_predictions": int(part["reused"].sum()),
            "runtime_s": summarize(runtimes) if np.isfinite(runtimes).any() else None,
            "metrics": {m: summarize(part[m].to_numpy(dtype=np.float64)) for m in ("psnr", "ssim", "lpips")},
            "psnr_capped": int(part["psnr_capped"].sum()) if "psnr_capped" in part else 0,
            "psnr_cap_db": PSNR_CAP_DB,
        }
    return result


def build_run_record(
    merged: Merged,
    *,
    source: EvalSource,
    profile: MetricProfile,
    coverage: dict[str, Any],
    lpips_info: dict[str, Any],
    notes: list[str],
    command: str,
    device: str,
    world: int,
    warmup: int,
    started: str,
) -> dict[str, Any]:
    """The content of ``run.json`` (before NaN becomes ``null``)."""
    env = environment_info(device)
    return {
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
            "fingerprint": fingerprint(source.name, source.split, merged.hashes, merged.input_hashes),
        },
        "lpips": lpips_info,
        "psnr_cap_db": PSNR_CAP_DB,
        "device": device,
        "hardware": env["hardware"],
        "versions": env,
        "world_size": world,
        "warmup_calls": warmup,
        "timing": "wall time of one method call per image after warm-up calls, CUDA synchronised before and after; "
        "includes the method's own pre/post-processing, excludes file I/O, decoding and metrics",
        "quantization": "predictions are scored as saved: 8-bit PNG levels",
        "notes": notes,
        "skipped_methods": merged.skipped,
        "methods": method_summaries(merged.frame, merged.runs, source.synthetic),
    }


def _strict_json(value: Any) -> Any:
    """NaN and infinities as ``null`` so that run.json is strict JSON (readable from JavaScript too)."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(v) for v in value]
    return value


def write_run_files(out: Path, frame: Any, record: dict[str, Any]) -> dict[str, Any]:
    """Write ``per_image.csv``, ``run.json`` and the derived tables into ``out`` (the run folder, or a profile's
    folder in it). Returns ``run.json``'s content."""
    from evaluation.leaderboard import rebuild_tables

    text = json.dumps(_strict_json(record), indent=2, default=str, allow_nan=False)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / PER_IMAGE, frame.to_csv(index=False))
    atomic_write(out / RUN_RECORD, text)
    rebuild_tables(out)
    return json.loads(text)


def drop_shards(out: Path) -> None:
    """Remove ``RUN/.shards`` once every profile's files are written."""
    shutil.rmtree(shards_dir(out), ignore_errors=True)
