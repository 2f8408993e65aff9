"""Training data: a ``datasets`` table read lazily, one uint8 pair per draw.

The table has columns ``id``, ``original`` (the photo), ``bokeh`` (the target, same size) and ``depth``
(disparity, near = bright; optional with ``use_depth=False``), e.g. the folder written by ``python -m
evaluation.ebb build`` or ``python -m evaluation.pairs build``. Rows are decoded one sample at a time: the photo
is downscaled x0.5 (bicubic, as the authors), a random ``crop_size`` square is cut from it and the matching
``2 * crop_size`` square from the full-resolution target, which is then resized (bicubic) to the level's scale;
a random 90-degree rotation and vertical flip are applied to both. Memory is bounded by
``workers x prefetch x batch`` samples at every level.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import InputError
from ..modeling_pynet import LEVEL_SCALES
from ..tables import COLUMN_ALIASES, open_dataset

__all__ = ["DrawSampler", "PairCrops", "crop_pair", "open_table", "resolve_columns"]


def _decode(cell: Any, where: str) -> Image.Image:
    if isinstance(cell, Image.Image):
        image = cell
    else:
        data = None
        if isinstance(cell, (bytes, bytearray)):
            data = bytes(cell)
        elif isinstance(cell, dict):
            data = cell.get("bytes")
            if not data and cell.get("path"):
                data = Path(cell["path"]).read_bytes()
        if data is None:
            raise InputError(f"{where}: no image in this cell ({type(cell).__name__})")
        image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _to_uint8_rgb(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _to_uint8_depth(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """Depth as uint8 (H, W) at ``size`` = (W, H): 8-bit kept, 16-bit / float rescaled, then resized."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        array = array / (65535.0 if array.max() > 255 else 255.0) * 255.0
        image = Image.fromarray(np.clip(np.round(array), 0, 255).astype(np.uint8))
    elif image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        scale = 255.0 if array.max() <= 1.0 else 1.0
        image = Image.fromarray(np.clip(np.round(array * scale), 0, 255).astype(np.uint8))
    else:
        image = image.convert("L")
    if image.size != size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def crop_pair(
    photo: Image.Image,
    bokeh: Image.Image,
    depth: Image.Image | None,
    crop_size: int,
    target_size: int,
    rng: np.random.Generator | None,
    where: str = "sample",
) -> tuple[np.ndarray, np.ndarray]:
    """One training/validation pair as uint8 arrays.

    The photo is halved (bicubic) unless it already is half the target's size; a ``crop_size`` square is
    cut from it (random with ``rng``, centred without) and the matching ``2 * crop_size`` square from
    the target, resized (bicubic) to ``target_size``. With ``rng`` a random 90-degree rotation and
    vertical flip follow, identical for both.

    Returns:
        ``(input (crop, crop, 3 or 4), target (target_size, target_size, 3))``, uint8.
    """
    full_w, full_h = bokeh.size
    half = (full_w // 2, full_h // 2)
    if photo.size == bokeh.size:
        photo = photo.convert("RGB").resize(half, Image.Resampling.BICUBIC)
    elif abs(photo.size[0] - half[0]) > 1 or abs(photo.size[1] - half[1]) > 1:
        raise InputError(
            f"{where}: photo {photo.size[0]}x{photo.size[1]} is neither the target's size "
            f"{full_w}x{full_h} nor half of it"
        )
    rgb = _to_uint8_rgb(photo)[: half[1], : half[0]]
    h, w = rgb.shape[:2]
    if h < crop_size or w < crop_size:
        raise InputError(
            f"{where}: the half-resolution photo is {w}x{h}, smaller than the {crop_size}x{crop_size} "
            "crop; lower --crop-size or drop this image"
        )
    if rng is None:
        top, left = (h - crop_size) // 2, (w - crop_size) // 2
    else:
        top, left = int(rng.integers(0, h - crop_size + 1)), int(rng.integers(0, w - crop_size + 1))
    x = rgb[top : top + crop_size, left : left + crop_size]
    if depth is not None:
        d = _to_uint8_depth(depth, (w, h))[top : top + crop_size, left : left + crop_size]
        x = np.concatenate([x, d[..., None]], axis=2)
    box = (2 * left, 2 * top, 2 * (left + crop_size), 2 * (top + crop_size))
    target_image = bokeh.convert("RGB").crop(box)
    if target_size != 2 * crop_size:
        target_image = target_image.resize((target_size, target_size), Image.Resampling.BICUBIC)
    y = _to_uint8_rgb(target_image)
    if rng is not None:
        k = int(rng.integers(0, 4))
        x, y = np.rot90(x, k), np.rot90(y, k)
        if rng.integers(0, 2):
            x, y = x[::-1], y[::-1]
    return np.array(x, order="C"), np.array(y, order="C")  # writable copies


class PairCrops(torch.utils.data.Dataset):
    """Map-style view of a ``datasets`` table that decodes one row per item (lazily, as uint8).

    Items are indexed by a *draw number*: with ``random=True`` the row, crop and augmentation of draw
    ``d`` come from ``np.random.default_rng([seed, level, d])``, so a resumed run sees the same stream
    whatever the number of workers or processes. With ``random=False`` draw ``d`` is row ``d``, centre crop.
    """

    def __init__(
        self,
        table: Any,
        level: int,
        crop_size: int,
        *,
        random: bool,
        use_depth: bool = True,
        seed: int = 0,
        columns: Mapping[str, str | None] | None = None,
    ) -> None:
        self.table = table
        self.level = level
        self.crop_size = crop_size
        self.target_size = max(1, round(crop_size * LEVEL_SCALES[level]))
        self.random = random
        self.use_depth = use_depth
        self.seed = seed
        self.columns = dict(columns or resolve_columns(table, use_depth))

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, draw: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, self.level, int(draw)]) if self.random else None
        row_index = int(rng.integers(0, len(self.table))) if rng is not None else int(draw)
        row = self.table[row_index]
        sample_id = str(row[self.columns["id"]]) if self.columns.get("id") else str(row_index)
        where = f"row {row_index} (id {sample_id})"
        depth = _decode(row[self.columns["depth"]], where) if self.use_depth else None
        x, y = crop_pair(
            _decode(row[self.columns["original"]], where),
            _decode(row[self.columns["bokeh"]], where),
            depth,
            self.crop_size,
            self.target_size,
            rng,
            where,
        )
        return {
            "input": torch.from_numpy(x).permute(2, 0, 1),
            "target": torch.from_numpy(y).permute(2, 0, 1),
            "id": sample_id,
        }


class DrawSampler(torch.utils.data.Sampler[int]):
    """Draw numbers of one process: step s, process r, slot j -> (s * world + r) * batch + j."""

    def __init__(self, start_step: int, end_step: int, batch: int, rank: int, world: int) -> None:
        self.start_step, self.end_step, self.batch, self.rank, self.world = start_step, end_step, batch, rank, world

    def __iter__(self) -> Iterator[int]:
        for step in range(self.start_step, self.end_step):
            base = (step * self.world + self.rank) * self.batch
            yield from range(base, base + self.batch)

    def __len__(self) -> int:
        return (self.end_step - self.start_step) * self.batch


def resolve_columns(table: Any, use_depth: bool) -> dict[str, str | None]:
    """``{role: column name}`` for the roles id, original, bokeh and depth (``None`` where the table lacks one).

    Raises:
        InputError: a required column (original, bokeh; depth with ``use_depth``) is missing.
    """
    names = list(getattr(table, "column_names", None) or [])
    columns: dict[str, str | None] = {}
    for role, aliases in COLUMN_ALIASES.items():
        columns[role] = next((name for name in aliases if name in names), None)
    for role in ("original", "bokeh") + (("depth",) if use_depth else ()):
        if columns[role] is None:
            hint = " (or train the RGB-only variant with --no-depth)" if role == "depth" else ""
            raise InputError(f"the dataset has no {role!r} column{hint}; it has {names}")
    return columns


def open_table(source: str, split: str) -> Any:
    """``split`` of a dataset as a map-style ``datasets.Dataset`` whose image columns stay undecoded.

    Read by :func:`bokeh_model.tables.open_dataset` (the reader the evaluation uses too): a ``save_to_disk``
    folder, a hub-layout folder as ``python -m evaluation.ebb build`` and ``python -m evaluation.pairs build``
    write, a ``.parquet`` file (any split name reads it) or a Hugging Face Hub id. Image bytes are decoded per
    item by :class:`PairCrops`.

    Raises:
        InputError: the source or the split does not exist, or the dataset cannot be read as a table.
        ModelUnavailableError: a hub id that cannot be reached (offline, private, misspelt).
    """
    table = open_dataset(source, split)
    if not hasattr(table, "__len__") or not hasattr(table, "__getitem__"):
        raise InputError(f"dataset {source!r} split {split!r} must be map-style (not streaming) for training")
    return table
