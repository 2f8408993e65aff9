"""Depth maps for an EBB! build: estimated once per input photo, in batches, kept in a resumable cache.

``python -m evaluation.ebb build --depth-model MODEL`` stores a ``depth`` column so that every later evaluation
reads it instead of running the depth model again. The maps are 16-bit PNGs (near = bright) in
``OUT/.depth-cache/<model key>/`` (one folder per depth model, so two models never share maps), named by the
input's SHA-256, so an interrupted build resumes and a changed photo is estimated again; the build removes the
cache once the maps are in the parquet files.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from PIL import Image

from bokeh_model.errors import ModelUnavailableError

__all__ = ["DEPTH_CACHE", "DepthPair", "depth_model_key", "estimate_depth"]

DEPTH_CACHE = ".depth-cache"


class DepthPair(Protocol):
    """What the depth step reads of an :class:`evaluation.ebb.EbbPair` (typed here so this module need not import
    ``evaluation.ebb``, which imports it)."""

    id: int
    part: str
    original: str | None


def depth_model_key(depth_model: str) -> str:
    """Short key of a depth model for the resumable depth cache: its name, and its config when it is a folder.

    A short name and its hub id (``depth-anything-v2-small``, ``depth-anything/Depth-Anything-V2-Small-hf``) give
    the same key; two different models never share cached maps.
    """
    from bokeh_model.depth_models import resolve_depth_model

    depth_model = resolve_depth_model(depth_model)
    digest = hashlib.sha256(str(depth_model).encode())
    folder = Path(depth_model).expanduser()
    if folder.is_dir():
        digest.update(str(folder.resolve()).encode())
        for name in ("config.json", "preprocessor_config.json"):
            if (folder / name).is_file():
                digest.update((folder / name).read_bytes())
    return digest.hexdigest()[:16]


def estimate_depth(
    read: Callable[[str], bytes],
    pairs: Sequence[DepthPair],
    depth_model: str,
    device: str,
    cache: Path,
    batch_size: int,
    log: Callable[[str], None],
) -> dict[tuple[str, int], Path]:
    """Depth maps (16-bit PNG, near = bright) for ``pairs``, estimated in batches into ``cache``.

    Each map is stored as soon as its batch is done, named by the input's SHA-256, so an interrupted build
    resumes where it stopped and a changed input photo is estimated again.

    Raises:
        ModelUnavailableError: the depth model cannot be loaded.
    """
    import numpy as np
    from tqdm.auto import tqdm

    from bokeh_model.depth import get_depth_estimator
    from bokeh_model.files import atomic_write
    from bokeh_model.images import load_image

    folder = cache / depth_model_key(depth_model)
    paths: dict[tuple[str, int], Path] = {}
    todo: list[tuple[DepthPair, bytes, Path]] = []
    for pair in pairs:
        original = read(pair.original or "")
        path = folder / f"{pair.part}-{pair.id}-{hashlib.sha256(original).hexdigest()[:16]}.png"
        paths[(pair.part, pair.id)] = path
        if not path.is_file():
            todo.append((pair, original, path))
    if not todo:
        if pairs:
            log(f"depth: all {len(pairs)} maps reused from {folder}")
        return paths
    estimator = get_depth_estimator(depth_model, device)
    ok, reason = estimator.availability()
    if not ok:
        raise ModelUnavailableError(reason)
    estimate_batch = getattr(estimator, "estimate_batch", None)
    done = len(pairs) - len(todo)
    if done:
        log(f"depth: resuming, {done} of {len(pairs)} maps already in {folder}")
    with tqdm(total=len(pairs), initial=done, desc="estimating depth", unit="img") as progress:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            images = [load_image(original) for _, original, _ in chunk]
            maps = estimate_batch(images) if estimate_batch else [estimator.estimate(image) for image in images]
            for (_, _, path), disparity in zip(chunk, maps, strict=True):
                buffer = io.BytesIO()
                Image.fromarray(np.round(np.clip(disparity, 0, 1) * 65535.0).astype(np.uint16)).save(buffer, "PNG")
                atomic_write(path, buffer.getvalue())
            progress.update(len(chunk))
    return paths
