"""Building the dataset: pair, align, depth, splits by scene, Hub-layout parquet, ``report.html``.

Work is kept per pair under ``OUT/.work/`` (aligned images, depth, numbers), keyed by the two files' paths,
sizes and modification times and the alignment settings, so a second run (after an interruption, or with
new photos added) only processes what is new; the parquet files, card and report are rewritten at the end.
Hidden folders are not uploaded by ``--push-to-hub``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bokeh_model.errors import InputError, ModelUnavailableError
from bokeh_model.files import atomic_write

from .align import AlignSettings, align_pair
from .discover import PairCandidate, describe_layouts, find_pairs, raw_support, read_photo

__all__ = ["PairResult", "assign_scene_splits", "build_pairs_dataset"]

WORK_DIR = ".work"
_VERSION = 1  # bump when the per-pair results change meaning, so old caches are not reused


@dataclass
class PairResult:
    """One candidate pair after processing: accepted (``ok``) or rejected with ``reason`` and the numbers."""

    name: str
    scene: str
    narrow: str
    wide: str
    ok: bool
    reason: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    folder: str = ""  # the pair's work folder (aligned images and thumbnails)
    id: int | None = None
    split: str = ""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _stamp(path: str) -> list[Any]:
    stat = Path(path).stat()
    return [str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns]


def _pair_key(pair: PairCandidate, settings: AlignSettings, image_format: str) -> str:
    try:
        stamps = [_stamp(pair.narrow), _stamp(pair.wide)]
    except OSError:
        stamps = [pair.narrow, pair.wide]
    payload = json.dumps([_VERSION, stamps, settings.to_json(), image_format], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def _encode(image: np.ndarray, image_format: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    pil = Image.fromarray(np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8))
    if image_format == "jpeg":
        pil.save(buffer, format="JPEG", quality=95, subsampling=0)
    else:
        pil.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def _thumbnail(image: np.ndarray, height: int = 160) -> bytes:
    import cv2
    from PIL import Image

    width = max(1, round(image.shape[1] * height / image.shape[0]))
    small = cv2.resize(np.clip(image, 0.0, 1.0).astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)
    buffer = io.BytesIO()
    Image.fromarray(np.round(small * 255).astype(np.uint8)).save(buffer, format="JPEG", quality=82)
    return buffer.getvalue()


def _overlay(narrow: np.ndarray, wide: np.ndarray) -> np.ndarray:
    """Red = narrow photo, green/blue = aligned wide photo: aligned edges are grey, misaligned ones coloured."""
    import cv2

    def luma(image: np.ndarray) -> np.ndarray:
        gray = cv2.cvtColor(image.astype(np.float32), cv2.COLOR_RGB2GRAY)
        return np.clip(gray / max(float(np.percentile(gray, 99)), 1e-6), 0.0, 1.0)

    a, b = luma(narrow), luma(wide)
    return np.stack([a, b, b], axis=-1)


def _process_pair(
    pair: PairCandidate, folder: Path, settings: AlignSettings, image_format: str
) -> tuple[bool, str, dict[str, Any]]:
    """Decode, align and store one pair in ``folder``; returns (ok, reason, metrics)."""
    try:
        narrow = read_photo(pair.narrow)
    except InputError as exc:
        return False, f"unreadable narrow photo: {exc}", {}
    try:
        wide = read_photo(pair.wide)
    except InputError as exc:
        return False, f"unreadable wide photo: {exc}", {}
    folder.mkdir(parents=True, exist_ok=True)
    # small previews of the inputs, so a rejected pair can be judged in the report
    atomic_write(folder / "input_narrow.jpg", _thumbnail(narrow))
    atomic_write(folder / "input_wide.jpg", _thumbnail(wide))
    result = align_pair(narrow, wide, settings)
    metrics = result.metrics()
    metrics["input_size"] = {"narrow": list(narrow.shape[1::-1]), "wide": list(wide.shape[1::-1])}
    if not result.ok:
        return False, result.reason, metrics
    ext = "jpg" if image_format == "jpeg" else "png"
    atomic_write(folder / f"original.{ext}", _encode(result.narrow, image_format))
    atomic_write(folder / f"bokeh.{ext}", _encode(result.wide, image_format))
    atomic_write(folder / "thumb_narrow.jpg", _thumbnail(result.narrow))
    atomic_write(folder / "thumb_wide.jpg", _thumbnail(result.wide))
    atomic_write(folder / "thumb_overlay.jpg", _thumbnail(_overlay(result.narrow, result.wide)))
    return True, "", metrics


def _depth_png(disparity: np.ndarray) -> bytes:
    """The EBB! builder's convention: disparity in [0, 1], near = bright, as a 16-bit grayscale PNG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(disparity, 0.0, 1.0) * 65535.0).astype(np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()


def assign_scene_splits(scenes: list[str], val_fraction: float) -> dict[str, str]:
    """``{scene: "train" | "val"}``: a scene's split depends only on its name (SHA-256), so adding photos later
    never moves an existing scene; at least one scene goes to ``val`` when ``val_fraction > 0`` and there are
    two scenes or more (all of them when ``val_fraction >= 1``).
    """
    if not 0.0 <= val_fraction <= 1.0:
        raise InputError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    unique = sorted(set(scenes))

    def position(scene: str) -> float:
        return int(hashlib.sha256(scene.encode()).hexdigest()[:12], 16) / float(16**12)

    splits = {s: ("val" if position(s) < val_fraction else "train") for s in unique}
    if val_fraction >= 1.0:
        return {s: "val" for s in unique}
    if val_fraction > 0 and len(unique) >= 2 and "val" not in splits.values():
        splits[min(unique, key=position)] = "val"
    if val_fraction < 1 and len(unique) >= 2 and "train" not in splits.values():
        splits[max(unique, key=position)] = "train"
    return splits


def _card(summary: dict[str, Any], has_depth: bool, depth_model: str | None) -> str:
    splits = summary["splits"]
    configs = "\n".join(f"  - split: {s}\n    path: data/{s}-*" for s in splits)
    counts = "\n".join(f"| {s} | {len(ids)} | {len(set(summary['scenes'][s]))} |" for s, ids in splits.items())
    depth_note = (
        f", `depth` (disparity from `{depth_model}`, 16-bit PNG, near = bright)" if has_depth else " (no depth column)"
    )
    return f"""---
configs:
- config_name: default
  data_files:
{configs}
task_categories:
- image-to-image
tags:
- bokeh
---
# Aperture pairs (EBB!-style)

Built with `python -m evaluation.pairs build`. Each row: `id`, `original` (narrow aperture, sharp), `bokeh`
(wide aperture, aligned onto `original` with SIFT + RANSAC, cropped to the common area){depth_note}, `name`
(the pair's file name) and `scene`. Splits are by scene, so no scene is in both.

| split | pairs | scenes |
|---|---|---|
{counts}

{len(summary["rejected"])} candidate pairs were rejected (reasons in `pairs.json` and `report.html`).
"""


def _published(summary: dict[str, Any], pairs_root: Path, out: Path) -> dict[str, Any]:
    """The summary as written to ``pairs.json`` / ``report.html``, which may be pushed to the Hub: file paths
    relative to the pairs folder and work folders relative to the output, so no local directory leaks."""
    prefixes = sorted({str(pairs_root) + os.sep, str(pairs_root.resolve()) + os.sep}, key=len, reverse=True)
    work_prefix = str(out.resolve()) + os.sep

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, str):
            value = value.replace(work_prefix, "")
            for prefix in prefixes:
                value = value.replace(prefix, "")
        return value

    public = clean({k: v for k, v in summary.items() if k not in ("pairs_dir", "out")})
    public["pairs_dir"] = pairs_root.name
    public["depth_model"] = _model_label(summary.get("depth_model"))
    return public


def _model_label(model_id: str | None) -> str | None:
    """A hub id as is; a local model folder by its name only (the card and report may be published)."""
    if model_id and Path(model_id).expanduser().exists():
        return f"local folder {Path(model_id).name}"
    return model_id


def build_pairs_dataset(
    pairs: str | os.PathLike,
    out: str | os.PathLike,
    *,
    depth: bool = True,
    depth_model: str | None = None,
    device: str = "cpu",
    val_fraction: float = 0.1,
    settings: AlignSettings | None = None,
    image_format: str = "png",
    max_gap_s: float = 30.0,
    min_aperture_ratio: float = 2.0,
    rows_per_shard: int = 100,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build an EBB!-style dataset folder (Hub layout) from your own aperture pairs; returns a summary.

    Args:
        pairs: folder with ``narrow/`` + ``wide/`` subfolders, or photos to pair by EXIF (see :func:`find_pairs`).
        out: output folder: ``data/{train,val}-*.parquet``, ``README.md``, ``pairs.json``, ``report.html``.
        depth: compute a ``depth`` column with ``depth_model``.
        depth_model: transformers depth model (folder or cached hub id); default ``$BOKEH_DEPTH_MODEL``, else
            ``Intel/dpt-hybrid-midas``, as in the app.
        device: device of the depth model.
        val_fraction: share of the *scenes* that go to the ``val`` split.
        settings: alignment thresholds and output height.
        image_format: ``png`` (lossless, default) or ``jpeg`` (quality 95, 4:4:4) for the stored images.
        max_gap_s, min_aperture_ratio: EXIF pairing (one-folder mode).
        rows_per_shard: rows per parquet file.
        progress: show a progress bar.
        log: where summary lines go.

    Raises:
        ModelUnavailableError: depth requested but the model is not available here (before any work is done).
        InputError: no pair found, or none survived the checks (``report.html`` is still written and names
            every reason).
    """
    from tqdm.auto import tqdm

    from ..hub_dataset import write_hub_splits

    settings = settings or AlignSettings()
    if image_format not in ("png", "jpeg"):
        raise InputError(f"image format must be png or jpeg, got {image_format!r}")
    if rows_per_shard < 1:
        raise InputError(f"rows_per_shard must be at least 1, got {rows_per_shard}")
    assign_scene_splits([], val_fraction)  # validates the fraction before any work
    candidates, problems, mode = find_pairs(pairs, max_gap_s=max_gap_s, min_aperture_ratio=min_aperture_ratio)
    estimator = None
    model_id = None
    if depth:
        from bokeh_model.depth import get_depth_estimator
        from bokeh_model.depth_models import resolve_depth_model

        model_id = resolve_depth_model(depth_model)  # a short name becomes its hub id; None = the default
        estimator = get_depth_estimator(model_id, device)
        ok, reason = estimator.availability()
        if not ok:
            # the shared message also names the renderers' --depth FILE / --approximate-depth, which a dataset
            # cannot use: keep its first sentence and say what works here
            what = reason.split(". Provide")[0].rstrip(".")
            looks_like_path = model_id.startswith((".", "/", "~")) or model_id.count("/") > 1
            cache = "" if looks_like_path else f"`hf download {model_id}` on a machine with internet, "
            raise ModelUnavailableError(
                f"{what}. Provide a depth model as a local folder (--depth-model /path/to/model with config.json, "
                f"preprocessor_config.json and the weights) or in the Hugging Face cache ({cache}or set "
                "BOKEH_DEPTH_MODEL to a cached id); or build without a depth column: --no-depth."
            )
    target = Path(out)
    work = target / WORK_DIR
    work.mkdir(parents=True, exist_ok=True)
    results: list[PairResult] = []
    reused = 0
    for pair in tqdm(candidates, desc="aligning pairs", unit="pair", disable=not progress):
        folder = work / _pair_key(pair, settings, image_format)
        record = folder / "result.json"
        if record.is_file():
            cached = json.loads(record.read_text(encoding="utf-8"))
            ok, reason, metrics = cached["ok"], cached["reason"], cached["metrics"]
            reused += 1
        else:
            ok, reason, metrics = _process_pair(pair, folder, settings, image_format)
            folder.mkdir(parents=True, exist_ok=True)
            payload = {"ok": ok, "reason": reason, "metrics": metrics, "pair": pair.to_json()}
            atomic_write(record, json.dumps(payload, indent=1))  # written last: the pair is complete
        results.append(PairResult(pair.name, pair.scene, pair.narrow, pair.wide, ok, reason, metrics, str(folder)))
    accepted = [r for r in results if r.ok]
    ext = "jpg" if image_format == "jpeg" else "png"
    if estimator is not None and accepted:
        depth_name = f"depth-{hashlib.sha256(model_id.encode()).hexdigest()[:10]}.png"  # type: ignore[union-attr]
        for result in tqdm(accepted, desc="depth", unit="pair", disable=not progress):
            path = Path(result.folder) / depth_name
            if not path.is_file():
                from bokeh_model.images import load_image

                disparity = estimator.estimate(load_image(Path(result.folder) / f"original.{ext}"))
                atomic_write(path, _depth_png(disparity))
            result.metrics["depth_file"] = depth_name
    # stable ids: a name keeps its id across runs; new names get the next numbers
    ids_path = work / "ids.json"
    ids: dict[str, int] = json.loads(ids_path.read_text(encoding="utf-8")) if ids_path.is_file() else {}
    for result in sorted(accepted, key=lambda r: r.name):
        if result.name not in ids:
            ids[result.name] = max(ids.values(), default=-1) + 1
        result.id = ids[result.name]
    atomic_write(ids_path, json.dumps(ids, indent=1))
    split_of = assign_scene_splits([r.scene for r in accepted], val_fraction)
    for result in accepted:
        result.split = split_of[result.scene]
    rejected = [r for r in results if not r.ok]
    summary: dict[str, Any] = {
        "mode": mode,
        "pairs_dir": str(pairs),
        "out": str(target),
        "settings": settings.to_json(),
        "depth_model": model_id,
        "raw_support": raw_support()[1],
        "accepted": [r.to_json() for r in sorted(accepted, key=lambda r: r.id or 0)],
        "rejected": [r.to_json() for r in rejected],
        "problems": [p.__dict__ for p in problems],
        "reused": reused,
    }
    rows: dict[str, list[dict[str, Any]]] = {}
    for result in sorted(accepted, key=lambda r: r.id or 0):
        rows.setdefault(result.split, []).append(
            {
                "id": result.id,
                "name": result.name,
                "scene": result.scene,
                "folder": result.folder,
                "depth_file": result.metrics.get("depth_file"),
            }
        )
    summary["splits"] = {s: [r["id"] for r in items] for s, items in sorted(rows.items())}
    summary["scenes"] = {s: [r["scene"] for r in items] for s, items in sorted(rows.items())}
    from .report import write_report

    for item in summary["accepted"] + summary["rejected"]:
        item["folder"] = str(Path(item["folder"]).resolve())
    public = _published(summary, Path(pairs).expanduser(), target)
    if not accepted:
        atomic_write(target / "pairs.json", json.dumps(public, indent=1, default=str))
        report = write_report(public, target / "report.html")
        found = f"{len(candidates)} candidate pairs, {len(problems)} other problems"
        if not candidates and not problems:
            raise InputError(f"no photos found in {pairs}: {describe_layouts()}")
        raise InputError(f"no pair survived in {pairs} ({found}); every reason is in {report}")

    import datasets

    has_depth = estimator is not None
    features = datasets.Features(
        {
            "id": datasets.Value("int32"),
            "original": datasets.Image(),
            "bokeh": datasets.Image(),
            **({"depth": datasets.Image()} if has_depth else {}),
            "name": datasets.Value("string"),
            "scene": datasets.Value("string"),
        }
    )

    def prepare_row(row: dict[str, Any]) -> dict[str, Any]:
        folder = Path(row["folder"])
        stem = f"{row['id']:05d}"

        def cell(path: Path, name: str) -> dict[str, Any]:
            return {"bytes": path.read_bytes(), "path": name}

        prepared = {
            "id": row["id"],
            "name": row["name"],
            "scene": row["scene"],
            "original": cell(folder / f"original.{ext}", f"{stem}.{ext}"),
            "bokeh": cell(folder / f"bokeh.{ext}", f"{stem}.{ext}"),
        }
        if has_depth:
            prepared["depth"] = cell(folder / row["depth_file"], f"{stem}_depth.png")
        return prepared

    write_hub_splits(rows, features, target, rows_per_shard=rows_per_shard, prepare_row=prepare_row)
    atomic_write(target / "README.md", _card(summary, has_depth, _model_label(model_id)))
    atomic_write(target / "pairs.json", json.dumps(public, indent=1, default=str))
    report = write_report(public, target / "report.html")
    for split, split_ids in summary["splits"].items():
        log(f"{split}: {len(split_ids)} pairs from {len(set(summary['scenes'][split]))} scenes")
    if rejected or problems:
        log(f"{len(rejected)} pairs rejected, {len(problems)} other files left out (reasons in {report}):")
        for item in rejected[:10]:
            log(f"  {item.name}: {item.reason}")
        for problem in problems[:10]:
            log(f"  {problem.what}: {problem.reason}")
    if reused:
        log(f"{reused} pairs reused from an earlier run ({work})")
    summary["report"] = str(report)
    return summary
