"""Build a ``datasets`` copy of EBB! from the official archives: ``python -m evaluation.ebb build ...``.

Accepted sources (zip archive or unpacked folder):

* the AIM 2019 training archive: ``Training/original/{id}.jpg`` and ``Training/bokeh/{id}.jpg`` (ids 0-4693);
* the PyNET-Bokeh code layout: ``{train,test}/{original,original_depth,bokeh}/{id}.jpg|png``.

Output (``--out DIR``) is a folder in Hugging Face Hub layout that ``datasets.load_dataset(DIR, split=...)``
and ``evaluation/run.py --dataset DIR`` read, and that ``--push-to-hub ID`` uploads as is:
``data/{split}-NNNNN-of-NNNNN.parquet``, ``README.md`` (card with the split configs) and ``bad_ids.json``.
Splits: ``train`` (ids 0-4399 and any other training id), ``val294`` (ids 4400-4693, the community
benchmark introduced with DMSHN) and ``test`` (PyNET layout, only where targets exist). Columns: ``id``
(int), ``original`` and ``bokeh`` (images, original bytes, no re-encoding) and ``depth`` (image) when depth
maps are present or computed with ``--depth-model``.

Every pair is decoded and checked: both files readable, same aspect ratio, and the target the same size as
the input or twice the size of a half-resolution input. Pairs that fail are left out and listed. A
``val294`` with fewer than its 294 ids is flagged as incomplete in the card.

The public archives have no depth maps, and the renderers need them: ``--depth-model`` estimates them once,
in batches (``--depth-batch``) with a progress bar, so every later evaluation reads the stored ``depth``
column. Maps are kept in ``OUT/.depth-cache/`` until the build succeeds; an interrupted build resumes there
(:mod:`evaluation.ebb_depth`). The parquet shards are written and uploaded by :mod:`evaluation.hub_dataset`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import sys
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from bokeh_model.errors import InputError, ModelUnavailableError, program_name
from evaluation.ebb_depth import DEPTH_CACHE, estimate_depth
from evaluation.hub_dataset import push_to_hub, write_hub_splits

__all__ = [
    "DEPTH_CACHE",
    "VAL294_IDS",
    "EbbPair",
    "assign_split",
    "build_dataset",
    "check_pair_sizes",
    "fetch_source",
    "find_pairs",
    "main",
    "push_to_hub",
    "write_hub_splits",
]

VAL294_IDS = range(4400, 4694)
_PATTERN = re.compile(
    r"^(?:.*/)?(?P<part>Training|train|test)/(?P<kind>original|original_depth|bokeh)/(?P<id>\d+)\.(?P<ext>jpe?g|png)$",
    re.IGNORECASE,
)


@dataclass
class EbbPair:
    """Where one id's files are inside the source (paths relative to the source root)."""

    id: int
    part: str  # "train" or "test"
    original: str | None = None
    bokeh: str | None = None
    depth: str | None = None


@dataclass
class _Source:
    root: Path
    names: list[str] = field(default_factory=list)
    archive: zipfile.ZipFile | None = None

    def read(self, name: str) -> bytes:
        if self.archive is not None:
            return self.archive.read(name)
        return (self.root / name).read_bytes()


def _open_source(path: Path) -> _Source:
    if not path.exists():
        raise InputError(f"--source {path} does not exist")
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise InputError(f"--source {path} is a file but not a zip archive; unpack it or pass the .zip")
        archive = zipfile.ZipFile(path)
        return _Source(root=path, names=[n for n in archive.namelist() if not n.endswith("/")], archive=archive)
    names = [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]
    return _Source(root=path, names=names)


def find_pairs(names: Sequence[str]) -> list[EbbPair]:
    """Group file paths of either EBB! layout into pairs by (part, id).

    Raises:
        InputError: no EBB! file found (the expected layouts are named).
    """
    pairs: dict[tuple[str, int], EbbPair] = {}
    for name in names:
        match = _PATTERN.match(name)
        if not match:
            continue
        part = "test" if match["part"].lower() == "test" else "train"
        key = (part, int(match["id"]))
        pair = pairs.setdefault(key, EbbPair(id=key[1], part=part))
        kind = match["kind"].lower()
        setattr(pair, "depth" if kind == "original_depth" else kind, name)
    if not pairs:
        raise InputError(
            "no EBB! images found: expected Training/{original,bokeh}/{id}.jpg (AIM 2019 archive) or "
            "{train,test}/{original,original_depth,bokeh}/{id}.jpg (PyNET-Bokeh layout)"
        )
    return sorted(pairs.values(), key=lambda p: (p.part, p.id))


def assign_split(pair: EbbPair) -> str:
    """``val294`` for training ids 4400-4693, ``train`` for other training ids, ``test`` for the test part."""
    if pair.part == "test":
        return "test"
    return "val294" if pair.id in VAL294_IDS else "train"


def check_pair_sizes(input_size: tuple[int, int], target_size: tuple[int, int]) -> str:
    """Empty string when a pair's sizes (width, height) fit, else the reason.

    The target must have the input's aspect ratio (1% tolerance) and be the same size or twice a
    half-resolution input (2 px tolerance).
    """
    (iw, ih), (tw, th) = input_size, target_size
    if min(iw, ih, tw, th) < 1:
        return f"empty image (input {iw}x{ih}, target {tw}x{th})"
    if abs(iw / ih - tw / th) > 0.01 * (tw / th):
        return f"aspect ratios differ: input {iw}x{ih}, target {tw}x{th}"
    if (iw, ih) == (tw, th) or (abs(2 * iw - tw) <= 2 and abs(2 * ih - th) <= 2):
        return ""
    return f"target {tw}x{th} is neither the input's size {iw}x{ih} nor twice it"


def _decoded_size(data: bytes, label: str) -> tuple[int, int]:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image.size
    except Exception as exc:  # noqa: BLE001 - any decoding failure marks the id as bad
        raise InputError(f"{label} cannot be decoded ({type(exc).__name__}: {exc})") from None


def _card(
    splits: dict[str, list[int]], bad: dict[str, str], has_depth: bool, source: str, depth: dict[str, Any] | None = None
) -> str:
    configs = "\n".join(f"  - split: {s}\n    path: data/{s}-*" for s in splits)
    rows = []
    warnings = []
    for split, ids in splits.items():
        if not ids:
            continue
        count = str(len(ids))
        if split == "val294":
            missing = sorted(set(VAL294_IDS) - set(ids))
            count = f"{len(ids)} of {len(VAL294_IDS)}"
            if missing:
                shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
                count += " (INCOMPLETE)"
                warnings.append(
                    f"**Incomplete split:** `val294` holds {len(ids)} of the {len(VAL294_IDS)} ids "
                    f"{VAL294_IDS.start}-{VAL294_IDS.stop - 1} ({len(missing)} missing: {shown}). Results on it are "
                    "not comparable with results on the full Val294 benchmark."
                )
        rows.append(f"| {split} | {count} | {min(ids)}-{max(ids)} |")
    counts = "\n".join(rows)
    warning_text = "".join(f"\n{w}\n" for w in warnings)
    depth_note = ", `depth` (disparity, near = bright)" if has_depth else ""
    if has_depth and depth:  # which model made the maps, so two builds with different depth never look alike
        depth_note = (
            f", `depth` (disparity, near = bright; estimated with `{depth['model']}`"
            + (f", licence {depth['license']}" if depth.get("name") else "")
            + ")"
        )
    return f"""---
configs:
- config_name: default
  data_files:
{configs}
license: other
task_categories:
- image-to-image
tags:
- bokeh
- ebb
---
# EBB! ("Everything is Better with Bokeh!") pairs

Built with `python -m evaluation.ebb build` from `{Path(source).name}`. Each row: `id`, `original` (narrow
aperture, sharp), `bokeh` (wide aperture target, Canon 7D, 50mm f/1.8){depth_note}.
Images are the source files' original bytes (no re-encoding).

| split | rows | ids |
|---|---|---|
{counts}
{warning_text}
`val294` (training ids 4400-4693) is the community benchmark introduced with DMSHN; train on `train` only when
reporting on it. {len(bad)} pairs failed the checks and are left out (see `bad_ids.json`).

Dataset terms are those of the AIM 2019 / PyNET-Bokeh download (Ignatov, Patel, Timofte, CVPRW 2020); the
PyNET-Bokeh code and models are CC BY-NC-SA 4.0.
"""


def build_dataset(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    depth_model: str | None = None,
    limit: int = 0,
    rows_per_shard: int = 250,
    device: str = "cpu",
    depth_batch: int = 8,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build the hub-layout dataset folder; returns a summary (splits with ids, bad ids with reasons).

    Three passes, each with a progress bar: check every pair, estimate missing depth maps in batches (kept
    in ``OUT/.depth-cache`` until the build succeeds, so an interrupted build resumes), then write the
    parquet shards one at a time (memory holds one shard, not the dataset).

    Args:
        source: zip archive or folder in one of the EBB! layouts.
        out: output folder (created; an existing ``data/`` folder inside is replaced).
        depth_model: depth model for a ``depth`` column when the source has no depth maps: a short name
            (``dpt-hybrid``, ``depth-anything-v2-small``), a cached hub id or a folder. Maps are cached per model.
        limit: keep only the first N pairs (0 = all); for trials.
        rows_per_shard: rows per parquet file (EBB! pairs are about 1.5 MB, so 250 rows is about 400 MB).
        device: device of the depth model.
        depth_batch: images per depth-model forward pass.
        log: where progress lines go.

    Raises:
        InputError: unusable source or no valid pair.
        ModelUnavailableError: ``depth_model`` cannot be loaded.
    """
    import datasets
    from tqdm.auto import tqdm

    if rows_per_shard < 1:
        raise InputError(f"rows_per_shard must be at least 1, got {rows_per_shard}")
    if depth_batch < 1:
        raise InputError(f"depth_batch must be at least 1, got {depth_batch}")
    reader = _open_source(Path(source))
    pairs = find_pairs(reader.names)
    if limit:
        pairs = pairs[:limit]
    if depth_model and not all(p.depth for p in pairs):
        from bokeh_model.depth import depth_model_status

        ok, reason = depth_model_status(depth_model)  # fail before the long checking pass
        if not ok:
            raise ModelUnavailableError(reason)
    bad: dict[str, str] = {}
    kept: dict[str, list[EbbPair]] = {"train": [], "val294": [], "test": []}
    no_target_test = 0
    for pair in tqdm(pairs, desc="checking pairs", unit="pair"):
        label = f"{pair.part}/{pair.id}"
        if pair.original is None or pair.bokeh is None:
            if pair.part == "test" and pair.bokeh is None:
                no_target_test += 1
                continue
            bad[label] = f"missing {'original' if pair.original is None else 'bokeh'} image"
            continue
        try:
            original, bokeh = reader.read(pair.original), reader.read(pair.bokeh)
            reason = check_pair_sizes(_decoded_size(original, pair.original), _decoded_size(bokeh, pair.bokeh))
            if pair.depth:
                _decoded_size(reader.read(pair.depth), pair.depth)
        except InputError as exc:
            reason = str(exc)
        if reason:
            bad[label] = reason
            continue
        kept[assign_split(pair)].append(pair)
    kept = {split: items for split, items in kept.items() if items}
    if not kept:
        raise InputError(f"no valid EBB! pair in {source}; {len(bad)} bad: {dict(list(bad.items())[:5])}")
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    estimated: dict[tuple[str, int], Path] = {}
    if depth_model:
        without = [p for items in kept.values() for p in items if not p.depth]
        estimated = estimate_depth(reader.read, without, depth_model, device, target / DEPTH_CACHE, depth_batch, log)
    has_depth = any(p.depth or (p.part, p.id) in estimated for items in kept.values() for p in items)
    features = datasets.Features(
        {
            "id": datasets.Value("int32"),
            "original": datasets.Image(),
            "bokeh": datasets.Image(),
            **({"depth": datasets.Image()} if has_depth else {}),
        }
    )

    def row(pair: EbbPair) -> dict[str, Any]:
        cell = {
            "id": pair.id,
            "original": {"bytes": reader.read(pair.original or ""), "path": Path(pair.original or "").name},
            "bokeh": {"bytes": reader.read(pair.bokeh or ""), "path": Path(pair.bokeh or "").name},
        }
        if has_depth:
            depth_path = estimated.get((pair.part, pair.id))
            data = None
            if depth_path is not None:
                data = depth_path.read_bytes()
            elif pair.depth:
                data = reader.read(pair.depth)
            name = Path(pair.depth or f"{pair.id}_depth.png").name
            cell["depth"] = {"bytes": data, "path": name} if data is not None else None
        return cell

    write_hub_splits(kept, features, target, rows_per_shard=rows_per_shard, prepare_row=row)
    shutil.rmtree(target / DEPTH_CACHE, ignore_errors=True)  # the maps are in the parquet files now
    splits = {split: [p.id for p in items] for split, items in kept.items()}
    depth_record = None
    if estimated:
        from bokeh_model.depth_models import depth_model_record

        depth_record = depth_model_record(depth_model)
    (target / "README.md").write_text(_card(splits, bad, has_depth, str(source), depth_record), encoding="utf-8")
    (target / "bad_ids.json").write_text(json.dumps(bad, indent=2), encoding="utf-8")
    for split, ids in splits.items():
        log(f"{split}: {len(ids)} pairs")
    if "val294" in splits and len(set(splits["val294"])) < len(VAL294_IDS):
        log(f"warning: val294 is incomplete: {len(splits['val294'])} of {len(VAL294_IDS)} ids (see README.md)")
    if no_target_test:
        log(f"test: {no_target_test} inputs without a bokeh target were left out (no split for them)")
    if bad:
        log(
            f"{len(bad)} bad pairs left out: "
            + "; ".join(f"{k}: {v}" for k, v in list(bad.items())[:10])
            + (" ..." if len(bad) > 10 else "")
            + f" (all in {target / 'bad_ids.json'})"
        )
    return {"splits": splits, "bad": bad, "has_depth": has_depth, "depth_model": depth_record, "out": str(target)}


def fetch_source(source: str, *, progress: bool = True) -> tuple[Path, dict[str, Any]]:
    """A ``--source`` that is a URL is downloaded (resumable, progress bar, SHA-256) into the project cache.

    Returns the local path and a record (``source``, ``bytes``, ``sha256``, and ``url`` for downloads) that
    :func:`main` writes to ``OUT/source.json``. A local zip is hashed too, so the record says which archive
    the dataset was built from.

    Raises:
        ModelUnavailableError: the URL cannot be fetched (offline, unreachable, cut off: run again to resume).
        InputError: a local path that does not exist.
    """
    from bokeh_model.download import download, is_offline, sha256_file
    from bokeh_model.pynet import bokeh_cache_dir

    if re.match(r"^(https?|file)://", source):
        name = Path(source.split("?")[0].rstrip("/")).name or "ebb_source.zip"
        if is_offline():
            raise ModelUnavailableError(f"--source {source}: offline (HF_HUB_OFFLINE / BOKEH_OFFLINE); cannot download")
        result = download(source, bokeh_cache_dir() / "downloads" / name, label=name, progress=progress)
        return result.path, {"source": source, "url": source, "bytes": result.bytes, "sha256": result.sha256}
    path = Path(source)
    if not path.exists():
        raise InputError(f"--source {path} does not exist")
    record: dict[str, Any] = {"source": str(path)}
    if path.is_file():
        record.update(bytes=path.stat().st_size, sha256=sha256_file(path))
    return path, record


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m evaluation.ebb build --source PATH --out DIR [--push-to-hub ID --private] [--depth-model ID]``."""
    parser = argparse.ArgumentParser(
        prog=program_name("python -m evaluation.ebb"),
        description=__doc__.split("\n")[0],
        epilog="Exit codes: 0 ok, 1 failure, 2 bad input, 3 missing depth model.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build a datasets folder (hub layout) from an EBB! archive or folder")
    build.add_argument(
        "--source",
        required=True,
        help="Training.zip / PyNET ebb_dataset folder or zip, or an http(s) URL of the archive (downloaded, "
        "resumable, SHA-256 recorded in OUT/source.json)",
    )
    build.add_argument("--out", required=True, help="output folder (hub layout: data/*.parquet + README.md)")
    build.add_argument("--push-to-hub", metavar="ID", help="also upload to this Hub dataset repo (needs internet)")
    build.add_argument("--private", action="store_true", help="create the Hub repo as private")
    build.add_argument(
        "--depth-model",
        help="depth model for a depth column: dpt-hybrid, depth-anything-v2-small, or a cached hub id or folder; "
        "estimated once, stored, resumable (cached per model)",
    )
    build.add_argument("--device", default="cpu", help="device of the depth model (default: cpu)")
    build.add_argument("--depth-batch", type=int, default=8, help="images per depth-model forward pass (default 8)")
    build.add_argument("--limit", type=int, default=0, help="only the first N pairs (0 = all)")
    build.add_argument("--rows-per-shard", type=int, default=250, help="rows per parquet file (default 250)")
    args = parser.parse_args(argv)
    from bokeh_model.errors import run_reporting_errors

    def build() -> int:
        source, record = fetch_source(args.source)
        summary = build_dataset(
            source,
            args.out,
            depth_model=args.depth_model,
            limit=args.limit,
            rows_per_shard=args.rows_per_shard,
            device=args.device,
            depth_batch=args.depth_batch,
        )
        if summary.get("depth_model"):
            record["depth_model"] = summary["depth_model"]  # which depth model made the `depth` column
        (Path(summary["out"]) / "source.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        if args.push_to_hub:
            print(f"pushed to {push_to_hub(summary['out'], args.push_to_hub, private=args.private)}")
            print(f"anyone can now run: python evaluation/run.py --dataset {args.push_to_hub} --split val294")
        print(f"wrote {args.out}; evaluate with: python evaluation/run.py --dataset {args.out} --split val294")
        return 0

    return run_reporting_errors(
        build,
        interrupted=f"interrupted: depth maps estimated so far are kept in {Path(args.out) / DEPTH_CACHE} and "
        "reused when the same command is run again",
    )


if __name__ == "__main__":
    sys.exit(main())
