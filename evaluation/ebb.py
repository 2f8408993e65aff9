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
the input or twice the size of a half-resolution input. Pairs that fail are left out and listed.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from bokeh_model.errors import BokehError, InputError, ModelUnavailableError

__all__ = [
    "VAL294_IDS",
    "EbbPair",
    "assign_split",
    "build_dataset",
    "check_pair_sizes",
    "fetch_source",
    "find_pairs",
    "main",
    "push_to_hub",
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


def _card(splits: dict[str, list[int]], bad: dict[str, str], has_depth: bool, source: str) -> str:
    configs = "\n".join(f"  - split: {s}\n    path: data/{s}-*" for s in splits)
    counts = "\n".join(f"| {s} | {len(ids)} | {min(ids)}-{max(ids)} |" for s, ids in splits.items() if ids)
    depth_note = ", `depth` (disparity, near = bright)" if has_depth else ""
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
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build the hub-layout dataset folder; returns a summary (splits with ids, bad ids with reasons).

    Args:
        source: zip archive or folder in one of the EBB! layouts.
        out: output folder (created; an existing ``data/`` folder inside is replaced).
        depth_model: transformers depth model for a ``depth`` column when the source has no depth maps.
        limit: keep only the first N pairs (0 = all); for trials.
        rows_per_shard: rows per parquet file (EBB! pairs are about 1.5 MB, so 250 rows is about 400 MB).
        device: device of the depth model.
        log: where progress lines go.

    Raises:
        InputError: unusable source or no valid pair.
        ModelUnavailableError: ``depth_model`` cannot be loaded.
    """
    import datasets
    import numpy as np
    from tqdm.auto import tqdm

    if rows_per_shard < 1:
        raise InputError(f"rows_per_shard must be at least 1, got {rows_per_shard}")
    reader = _open_source(Path(source))
    pairs = find_pairs(reader.names)
    if limit:
        pairs = pairs[:limit]
    estimator = None
    if depth_model and not all(p.depth for p in pairs):
        from bokeh_model.depth import get_depth_estimator

        model = get_depth_estimator(depth_model, device)
        ok, reason = model.availability()
        if not ok:
            raise ModelUnavailableError(reason)
        estimator = model.estimate
    bad: dict[str, str] = {}
    rows: dict[str, list[dict[str, Any]]] = {"train": [], "val294": [], "test": []}
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
            depth = reader.read(pair.depth) if pair.depth else None
            if depth is not None:
                _decoded_size(depth, pair.depth or "")
        except InputError as exc:
            reason, depth = str(exc), None
        if reason:
            bad[label] = reason
            continue
        if depth is None and estimator is not None:
            from bokeh_model.images import load_image

            disparity = estimator(load_image(original))
            buffer = io.BytesIO()
            Image.fromarray(np.round(disparity * 65535.0).astype(np.uint16)).save(buffer, format="PNG")
            depth = buffer.getvalue()
        cell = lambda data, name: {"bytes": data, "path": Path(name).name}  # noqa: E731
        rows[assign_split(pair)].append(
            {
                "id": pair.id,
                "original": cell(original, pair.original),
                "bokeh": cell(bokeh, pair.bokeh),
                "depth": cell(depth, pair.depth or f"{pair.id}_depth.png") if depth is not None else None,
            }
        )
    rows = {split: items for split, items in rows.items() if items}
    if not rows:
        raise InputError(f"no valid EBB! pair in {source}; {len(bad)} bad: {dict(list(bad.items())[:5])}")
    has_depth = any(r["depth"] is not None for items in rows.values() for r in items)
    features = datasets.Features(
        {
            "id": datasets.Value("int32"),
            "original": datasets.Image(),
            "bokeh": datasets.Image(),
            **({"depth": datasets.Image()} if has_depth else {}),
        }
    )
    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".data-", dir=target))
    try:
        for split, items in rows.items():
            count = math.ceil(len(items) / rows_per_shard)
            for index in range(count):
                chunk = items[index * rows_per_shard : (index + 1) * rows_per_shard]
                columns = {name: [r[name] for r in chunk] for name in features}
                datasets.Dataset.from_dict(columns, features=features).to_parquet(
                    str(staging / f"{split}-{index:05d}-of-{count:05d}.parquet")
                )
        shutil.rmtree(target / "data", ignore_errors=True)
        os.replace(staging, target / "data")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    splits = {split: [r["id"] for r in items] for split, items in rows.items()}
    (target / "README.md").write_text(_card(splits, bad, has_depth, str(source)), encoding="utf-8")
    (target / "bad_ids.json").write_text(json.dumps(bad, indent=2), encoding="utf-8")
    for split, ids in splits.items():
        log(f"{split}: {len(ids)} pairs")
    if no_target_test:
        log(f"test: {no_target_test} inputs without a bokeh target were left out (no split for them)")
    if bad:
        log(
            f"{len(bad)} bad pairs left out: "
            + "; ".join(f"{k}: {v}" for k, v in list(bad.items())[:10])
            + (" ..." if len(bad) > 10 else "")
            + f" (all in {target / 'bad_ids.json'})"
        )
    return {"splits": splits, "bad": bad, "has_depth": has_depth, "out": str(target)}


def fetch_source(source: str, *, progress: bool = True) -> tuple[Path, dict[str, Any]]:
    """A ``--source`` that is a URL is downloaded (resumable, progress bar, SHA-256) into the project cache.

    Returns the local path and a record (``source``, ``bytes``, ``sha256``, and ``url`` for downloads) that
    :func:`main` writes to ``OUT/source.json``. A local zip is hashed too, so the record says which archive
    the dataset was built from.

    Raises:
        ModelUnavailableError: the URL cannot be fetched (offline, unreachable, cut off: run again to resume).
        InputError: a local path that does not exist.
    """
    from bokeh_model.fetch import download, is_offline, sha256_file
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


def push_to_hub(folder: str | os.PathLike, repo_id: str, *, private: bool = False, api: Any = None) -> str:
    """Upload a built folder to a Hub dataset repo (needs internet and a token); returns the repo URL.

    ``api`` is an ``HfApi``-like object (default ``HfApi()``); tests pass a stand-in.
    """
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        api.upload_folder(
            folder_path=str(folder), repo_id=repo_id, repo_type="dataset", ignore_patterns=[".*", "**/.*"]
        )
    except Exception as exc:  # noqa: BLE001 - network and auth errors are reported alike
        raise BokehError(
            f"pushing {folder} to the Hub dataset {repo_id!r} failed: {type(exc).__name__}: {exc}. "
            "This needs internet access and a write token (`huggingface-cli login`)."
        ) from None
    return f"https://huggingface.co/datasets/{repo_id}"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m evaluation.ebb build --source PATH --out DIR [--push-to-hub ID --private] [--depth-model ID]``."""
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.ebb",
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
    build.add_argument("--depth-model", help="transformers depth model for a depth column (folder or cached hub id)")
    build.add_argument("--device", default="cpu", help="device of the depth model (default: cpu)")
    build.add_argument("--limit", type=int, default=0, help="only the first N pairs (0 = all)")
    build.add_argument("--rows-per-shard", type=int, default=250, help="rows per parquet file (default 250)")
    args = parser.parse_args(argv)
    from bokeh_model.cli import run_reporting_errors

    def build() -> int:
        source, record = fetch_source(args.source)
        summary = build_dataset(
            source,
            args.out,
            depth_model=args.depth_model,
            limit=args.limit,
            rows_per_shard=args.rows_per_shard,
            device=args.device,
        )
        (Path(summary["out"]) / "source.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        if args.push_to_hub:
            print(f"pushed to {push_to_hub(summary['out'], args.push_to_hub, private=args.private)}")
            print(f"anyone can now run: python evaluation/run.py --dataset {args.push_to_hub} --split val294")
        print(f"wrote {args.out}; evaluate with: python evaluation/run.py --dataset {args.out} --split val294")
        return 0

    return run_reporting_errors(build)


if __name__ == "__main__":
    sys.exit(main())
