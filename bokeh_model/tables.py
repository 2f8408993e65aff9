"""Reading bokeh datasets (input photo, DSLR target, optional depth per row) with ``datasets``.

One reader for evaluation and training: hub ids, hub-layout folders (what ``python -m evaluation.ebb build`` and
``python -m evaluation.pairs build`` write), parquet files and ``save_to_disk`` folders. Image columns stay
undecoded (the original bytes). Local data is read from exactly the files on disk now: the prepared copy that
``datasets`` caches is keyed here by the SHA-256 of the split's files, never by a folder's name or time stamps.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import BokehError, InputError, ModelUnavailableError

__all__ = [
    "COLUMN_ALIASES",
    "DatasetUnavailableError",
    "cache_root",
    "open_dataset",
    "open_local",
    "resolve_local_files",
]

# Accepted column names, first match wins (comHannah/bokeh-dataset uses original_image / bokeh_image).
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id", "image_id", "idx"),
    "original": ("original", "original_image", "input", "image"),
    "bokeh": ("bokeh", "bokeh_image", "target", "gt"),
    "depth": ("depth", "original_depth", "disparity"),
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class DatasetUnavailableError(ModelUnavailableError):
    """A dataset (hub id or path) cannot be reached or read here; the message says what to do."""


def cache_root() -> Path:
    """Where prepared dataset copies (and the synthetic benchmark) are cached: ``$BOKEH_EVAL_CACHE`` or
    ``~/.cache/bokeh-eval`` (``$XDG_CACHE_HOME`` honoured)."""
    root = os.environ.get("BOKEH_EVAL_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bokeh-eval"


def _hash_files(files: Sequence[Path]) -> list[dict[str, Any]]:
    """Path, size and SHA-256 of every data file (read in 8 MiB blocks)."""
    records = []
    for file in files:
        digest = hashlib.sha256()
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(8 << 20), b""):
                digest.update(block)
        records.append({"path": str(file), "bytes": file.stat().st_size, "sha256": digest.hexdigest()})
    return records


def _content_key(builder: str, split: str, records: Sequence[dict[str, Any]]) -> str:
    """One key for a split's exact bytes: builder, split and the files' hashes in order (names do not count)."""
    payload = "\n".join([builder, split, *(r["sha256"] for r in records)])
    return hashlib.sha256(payload.encode()).hexdigest()


def resolve_local_files(path: Path, split: str) -> tuple[str, list[Path]]:
    """The ``datasets`` builder name and the data files of ``split`` in a local folder or parquet file.

    A hub-layout folder is resolved exactly as ``datasets.load_dataset(folder)`` would (the card's ``configs``
    section, else the standard file-name patterns), but only to learn which files hold the split.

    Raises:
        InputError: the split does not exist (the available ones are listed) or the folder holds no data files.
    """
    if path.is_file():
        if path.suffix != ".parquet":
            raise InputError(f"{path} is neither a dataset folder nor a .parquet file")
        return "parquet", [path.resolve()]
    import datasets

    try:
        builder = datasets.load_dataset_builder(str(path))
    except FileNotFoundError as exc:
        raise InputError(f"{path} holds no dataset files: {exc}") from None
    data_files = builder.config.data_files or {}
    if split not in data_files:
        raise InputError(f"dataset {str(path)!r} has no split {split!r}; it has {sorted(data_files)}")
    files = [Path(str(f)).resolve() for f in data_files[split]]
    if not files:
        raise InputError(f"dataset {str(path)!r}: split {split!r} has no data files")
    return builder.name, files


def open_local(path: Path, split: str, *, streaming: bool = False) -> tuple[Any, dict[str, Any]]:
    """Open ``split`` of a local folder or parquet file from exactly the files on disk now.

    ``datasets`` caches a prepared copy keyed by the folder's name and the files' modification times, which
    can serve another folder's rows or a previous build of the same folder. Here the cache folder is keyed
    by the SHA-256 of the split's files, so a cached copy is only ever reused for identical bytes. Streaming
    reads the files directly (no cache).

    Returns:
        ``(dataset, record)``; ``record`` lists the data files with their SHA-256 and the content key.
    """
    import datasets

    builder, files = resolve_local_files(path, split)
    records = _hash_files(files)
    key = _content_key(builder, split, records)
    record = {"builder": builder, "data_files": records, "content_sha256": key}
    data_files = {split: [str(f) for f in files]}
    if streaming:
        dataset = datasets.load_dataset(builder, data_files=data_files, split=split, streaming=True)
    else:
        cache = cache_root() / "datasets" / key[:32]
        dataset = datasets.load_dataset(builder, data_files=data_files, split=split, cache_dir=str(cache))
    return dataset, record


def open_dataset(source: str, split: str, *, streaming: bool = False, record: dict[str, Any] | None = None) -> Any:
    """Open ``split`` of a dataset given by hub id, hub-layout folder, parquet file(s) or ``save_to_disk`` folder.

    Local folders and parquet files are read from the files on disk now (see :func:`open_local`); image
    columns are cast to undecoded (``decode=False``) so rows carry the original bytes.

    Args:
        record: when given, filled with what was read (data files and their SHA-256, or the hub revision).

    Raises:
        DatasetUnavailableError: a hub id that cannot be reached (offline, private, misspelt).
        InputError: the split does not exist (the available ones are listed) or the path is unusable.
    """
    import datasets

    path = Path(source).expanduser()
    info: dict[str, Any] = {}
    try:
        if path.exists():
            if path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
                # save_to_disk output is memory-mapped in place: no cache that could go stale
                loaded = datasets.load_from_disk(str(path))
                if isinstance(loaded, datasets.DatasetDict):
                    if split not in loaded:
                        raise InputError(f"{path} has no split {split!r}; it has {sorted(loaded)}")
                    loaded = loaded[split]
                files = [Path(f["filename"]) for f in getattr(loaded, "cache_files", [])]
                info = {
                    "builder": "save_to_disk",
                    "data_files": [{"path": str(f), "bytes": f.stat().st_size} for f in files],
                    "datasets_fingerprint": getattr(loaded, "_fingerprint", None),
                }
                dataset = loaded.to_iterable_dataset() if streaming else loaded
            else:
                dataset, info = open_local(path, split, streaming=streaming)
        elif _HUB_ID.match(source):
            dataset = datasets.load_dataset(source, split=split, streaming=streaming)
            info = {"builder": "hub", "hub_id": source}
        else:
            raise InputError(f"dataset {source!r} is neither an existing path nor a Hugging Face Hub id (owner/name)")
    except (InputError, BokehError):
        raise
    except ValueError as exc:
        if "split" in str(exc).lower():
            raise InputError(f"dataset {source!r} has no split {split!r}: {exc}") from None
        raise InputError(f"dataset {source!r} could not be read: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - network, auth, offline mode: all reported the same way
        raise DatasetUnavailableError(
            f"dataset {source!r} (split {split!r}) cannot be loaded here: {type(exc).__name__}: {exc}. "
            "EBB! is not on the Hub under an official id: build a copy with `python -m evaluation.ebb build "
            "--source Training.zip --out DIR` (from the AIM 2019/PyNET-Bokeh download) and pass --dataset DIR, "
            "or download the hub dataset on a machine with internet (`hf download --repo-type "
            "dataset ID`) and retry."
        ) from None
    features = getattr(dataset, "features", None) or {}
    for name, feature in features.items():
        if isinstance(feature, datasets.Image):
            dataset = dataset.cast_column(name, datasets.Image(decode=False))
    if record is not None:
        record.update(info)
    return dataset
