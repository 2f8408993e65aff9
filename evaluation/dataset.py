"""Evaluation data through ``datasets``: hub ids, hub-layout folders, parquet, ``save_to_disk`` output.

Every source is read as rows with an ``id``, an ``original`` (input photo) and a ``bokeh`` (target) image
column, and optionally ``depth``. Image columns are read undecoded (the original bytes), so a target can be
copied losslessly next to the predictions and hashed for the run's fingerprint.

>>> # source = open_source("path/to/ebb_hf", split="val294")
>>> # for sample in source.iter_samples(): ...
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bokeh_model.errors import InputError
from bokeh_model.tables import COLUMN_ALIASES, open_dataset

# Sample and EvalSource live in .samples so that .synthetic can subclass them without importing this module.
from .samples import EvalSource, Sample

__all__ = [
    "DatasetSource",
    "EvalSource",
    "Sample",
    "default_split",
    "fingerprint",
    "image_extension",
    "open_source",
    "sort_ids",
]

_FORMAT_EXT = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "TIFF": ".tif", "BMP": ".bmp", "MPO": ".jpg"}


def image_extension(data: bytes, default: str = ".png") -> str:
    """File extension for encoded image bytes from the format in its header (``.jpg``, ``.png``, ...)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return _FORMAT_EXT.get(image.format or "", default)
    except Exception:  # noqa: BLE001 - unreadable data is reported when it is decoded
        return default


def sort_ids(ids: Iterable[str]) -> list[str]:
    """Ids in natural order: numbers numerically (``"9" < "10"``), then the rest alphabetically."""
    return sorted(ids, key=lambda value: (0, int(value), "") if value.isdigit() else (1, 0, value))


def fingerprint(name: str, split: str, hashes: dict[str, str], inputs: dict[str, str] | None = None) -> dict[str, Any]:
    """A run's dataset fingerprint from the bytes that were scored.

    ``sha256`` combines the ids and the SHA-256 of every target (the images the metrics compared against);
    ``inputs_sha256`` does the same for the input photos the methods rendered, when given.
    """
    ids = sort_ids(hashes)
    combined = hashlib.sha256("\n".join(f"{i}:{hashes[i]}" for i in ids).encode()).hexdigest()
    result = {"name": name, "split": split, "n": len(ids), "sha256": combined, "ids": ids, "target_sha256": hashes}
    if inputs is not None:
        result["inputs_sha256"] = hashlib.sha256(
            "\n".join(f"{i}:{inputs.get(i, '')}" for i in ids).encode()
        ).hexdigest()
        result["input_sha256"] = {i: inputs.get(i, "") for i in ids}
    return result


def _column(names: Iterable[str], role: str, required: bool = True) -> str | None:
    available = list(names)
    for candidate in COLUMN_ALIASES[role]:
        if candidate in available:
            return candidate
    if required:
        raise InputError(
            f"the dataset has no {role!r} column; expected one of {list(COLUMN_ALIASES[role])}, found {available}"
        )
    return None


def _image_bytes(value: Any, where: str) -> bytes:
    """Bytes of an undecoded ``datasets.Image`` cell ({"bytes", "path"}), a PIL image or raw bytes."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"])
        if value.get("path"):
            path = Path(value["path"])
            if not path.is_file():
                raise InputError(f"{where}: image file {path} referenced by the dataset does not exist")
            return path.read_bytes()
    if isinstance(value, Image.Image):
        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        return buffer.getvalue()
    raise InputError(f"{where}: cannot read an image from a cell of type {type(value).__name__}")


def default_split(source: str | None) -> str:
    """The split to score when none is named: ``val294``, or ``val`` for a local dataset that has no ``val294``
    but has a ``val`` split (the layout ``python -m evaluation.pairs build`` writes for a user's own pairs)."""
    if not source:
        return "val294"
    path = Path(source).expanduser()
    if not path.is_dir() or (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        return "val294"
    import datasets

    try:
        splits = set(datasets.load_dataset_builder(str(path)).config.data_files or {})
    except Exception:  # noqa: BLE001 - an unreadable folder is reported by open_dataset with its reason
        return "val294"
    return "val" if "val294" not in splits and "val" in splits else "val294"


class DatasetSource(EvalSource):
    """An :class:`EvalSource` over a ``datasets`` dataset (see :func:`open_dataset`)."""

    def __init__(self, source: str, split: str, *, streaming: bool = False) -> None:
        path = Path(source).expanduser()
        # a local dataset is named by its absolute path: two folders called "ebb_hf" are different datasets
        name = str(path.resolve()) if path.exists() else source
        super().__init__(name=name, split=split, description=f"dataset {name!r}, split {split!r}")
        self.streaming = streaming
        self.record: dict[str, Any] = {}
        self.dataset = open_dataset(source, split, streaming=streaming, record=self.record)
        names = list(getattr(self.dataset, "column_names", None) or (self.dataset.features or {}).keys())
        self.columns = {
            "id": _column(names, "id", required=False),
            "original": _column(names, "original"),
            "bokeh": _column(names, "bokeh"),
            "depth": _column(names, "depth", required=False),
        }
        self.meta = {"streaming": streaming, "columns": self.columns, "read": self.record}

    def depth_coverage(self) -> tuple[int | None, int | None]:
        total = None if self.streaming else len(self.dataset)
        if self.columns["depth"] is None:
            return 0, total
        table = None if self.streaming else getattr(self.dataset, "data", None)
        if table is None or total is None:
            return None, total
        return total - int(table.column(self.columns["depth"]).null_count), total

    def ids(self) -> list[str] | None:
        if self.streaming:
            return None
        if self.columns["id"] is None:
            return [str(i) for i in range(len(self.dataset))]
        return [str(value) for value in self.dataset[self.columns["id"]]]

    def iter_samples(self, shard: int = 0, num_shards: int = 1) -> Iterator[Sample]:
        where = f"dataset {self.name!r} split {self.split!r}"
        seen: set[str] = set()
        for index, row in enumerate(self.dataset):
            sample_id = str(row[self.columns["id"]]) if self.columns["id"] else str(index)
            if sample_id in seen:
                raise InputError(f"{where}: id {sample_id!r} occurs twice")
            seen.add(sample_id)
            if index % num_shards != shard:
                continue
            depth_value = row[self.columns["depth"]] if self.columns["depth"] else None
            depth: bytes | np.ndarray | None
            if depth_value is None:
                depth = None
            elif isinstance(depth_value, (list, np.ndarray)):
                depth = np.asarray(depth_value, dtype=np.float32)
            else:
                depth = _image_bytes(depth_value, f"{where} id {sample_id} (depth)")
            yield Sample(
                id=sample_id,
                original=_image_bytes(row[self.columns["original"]], f"{where} id {sample_id} (original)"),
                bokeh=_image_bytes(row[self.columns["bokeh"]], f"{where} id {sample_id} (bokeh)"),
                depth=depth,
                where=where,
            )


def open_source(dataset: str | None, split: str = "val294", *, streaming: bool = False, **synthetic: Any) -> EvalSource:
    """The run's data: a dataset when ``dataset`` is given, else the built-in synthetic sample.

    Args:
        dataset: hub id, folder, parquet file or ``save_to_disk`` folder; ``None`` or ``"synthetic"`` for the
            built-in synthetic benchmark (not EBB!).
        split: split to evaluate (``val294`` is the community EBB! benchmark, ids 4400-4693).
        streaming: stream the rows instead of loading the table (large sets).
        **synthetic: options of :func:`evaluation.synthetic.synthetic_source`.
    """
    if dataset is None or dataset == "synthetic":
        from .synthetic import synthetic_source

        return synthetic_source(**synthetic)
    if not os.fspath(dataset).strip():
        raise InputError("--dataset is empty")
    return DatasetSource(dataset, split, streaming=streaming)
