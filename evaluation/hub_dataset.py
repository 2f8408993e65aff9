"""A dataset in Hugging Face Hub layout: ``data/{split}-NNNNN-of-NNNNN.parquet`` written in shards, and uploaded.

Both dataset builders write through here: the EBB! builder (``python -m evaluation.ebb build``) and the camera
pairs builder (``python -m evaluation.pairs``). ``datasets.load_dataset(DIR, split=...)`` and
``python evaluation/run.py --dataset DIR`` read the result; :func:`push_to_hub` uploads the folder as is.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bokeh_model.errors import BokehError

__all__ = ["push_to_hub", "write_hub_splits"]


def write_hub_splits(
    rows: dict[str, list[dict[str, Any]]],
    features: Any,
    out: str | os.PathLike,
    *,
    rows_per_shard: int = 250,
    prepare_row: Callable[[Any], dict[str, Any]] | None = None,
) -> Path:
    """Write ``rows`` per split as ``out/data/{split}-NNNNN-of-NNNNN.parquet`` (the Hub layout); returns ``out``.

    The new ``data/`` folder is written aside and swapped in at the end, so an interrupted build leaves the
    previous one intact. ``prepare_row`` (e.g. reading image bytes from files) runs one shard at a time, so
    only ``rows_per_shard`` rows of images are in memory at once.
    """
    import datasets
    from tqdm.auto import tqdm

    target = Path(out)
    target.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".data-", dir=target))
    try:
        total = sum(math.ceil(len(items) / rows_per_shard) for items in rows.values())
        with tqdm(total=total, desc="writing parquet", unit="shard") as progress:
            for split, items in rows.items():
                count = math.ceil(len(items) / rows_per_shard)
                for index in range(count):
                    chunk = items[index * rows_per_shard : (index + 1) * rows_per_shard]
                    if prepare_row is not None:
                        chunk = [prepare_row(r) for r in chunk]
                    columns = {name: [r[name] for r in chunk] for name in features}
                    datasets.Dataset.from_dict(columns, features=features).to_parquet(
                        str(staging / f"{split}-{index:05d}-of-{count:05d}.parquet")
                    )
                    progress.update(1)
        shutil.rmtree(target / "data", ignore_errors=True)
        os.replace(staging, target / "data")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


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
            "This needs internet access and a write token (`hf auth login`)."
        ) from None
    return f"https://huggingface.co/datasets/{repo_id}"
