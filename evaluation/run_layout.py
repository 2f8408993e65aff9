"""The one definition of an evaluation run folder's layout (``python evaluation/run.py --out RUN``).

Everything that writes or reads a run folder (the evaluation runner, the user study's item builder, test helpers)
builds its paths here, so the layout can change in one place::

    RUN/run.json                       the run record (methods, data, settings, environment)
    RUN/per_image.csv                  one row per (method, id) with every metric
    RUN/table.md|table.csv|leaderboard.json|report.html
    RUN/predictions/<method>/<id>.png  each method's saved output (+ <id>.json sidecar: settings, runtime)
    RUN/targets/<id>.<ext>             the DSLR targets, original bytes
    RUN/inputs/<id>.<ext>              the input photos, original bytes
    RUN/depth/<id>.png                 depth maps estimated with --depth-model (+ <id>.json: input and model)
    RUN/.shards/rank-RRR-of-WWW.json   each process's scores until rank 0 merges them (then removed)

A run scored under several metric profiles at once (``--profile pynet,dmshn``) shares ``predictions/``,
``targets/``, ``inputs/`` and ``depth/`` and writes each profile's record and tables into its own folder::

    RUN/<profile>/run.json, per_image.csv, table.md, table.csv, leaderboard.json, report.html
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "DEFAULT_RUN",
    "DEPTH",
    "DERIVED_FILES",
    "RESULTS_DIR_ENV",
    "INPUTS",
    "LEADERBOARD",
    "PER_IMAGE",
    "PREDICTIONS",
    "REPORT",
    "RUN_RECORD",
    "SHARDS",
    "TABLE_CSV",
    "TABLE_MD",
    "TARGETS",
    "depth_dir",
    "inputs_dir",
    "is_run_folder",
    "method_dir",
    "prediction_path",
    "predictions_dir",
    "remove_other_ids",
    "profile_dir",
    "shard_path",
    "shards_dir",
    "targets_dir",
]

# Where `bokeh-eval` writes and the Space's leaderboard reads when nothing else is said: relative to the working
# directory (an installed package has no checkout to put it in); $BOKEH_RESULTS_DIR moves both.
DEFAULT_RUN = "runs/latest"
RESULTS_DIR_ENV = "BOKEH_RESULTS_DIR"
PREDICTIONS = "predictions"
TARGETS = "targets"
INPUTS = "inputs"
RUN_RECORD = "run.json"
PER_IMAGE = "per_image.csv"
DEPTH = "depth"
SHARDS = ".shards"
TABLE_MD = "table.md"
TABLE_CSV = "table.csv"
LEADERBOARD = "leaderboard.json"
REPORT = "report.html"
# Files rebuilt from per_image.csv and run.json at the end of every run (a merge rewrites them all).
DERIVED_FILES = (TABLE_MD, TABLE_CSV, LEADERBOARD, REPORT, RUN_RECORD, PER_IMAGE)


def predictions_dir(run: str | Path) -> Path:
    """``RUN/predictions``: one sub-folder per method."""
    return Path(run) / PREDICTIONS


def method_dir(run: str | Path, method: str) -> Path:
    """``RUN/predictions/<method>``."""
    return predictions_dir(run) / method


def prediction_path(run: str | Path, method: str, sample_id: str, suffix: str = ".png") -> Path:
    """``RUN/predictions/<method>/<id>.png``: where a method's output for one sample is saved."""
    return method_dir(run, method) / f"{sample_id}{suffix}"


def targets_dir(run: str | Path) -> Path:
    """``RUN/targets``: the targets' original bytes, named ``<id>.<ext>``."""
    return Path(run) / TARGETS


def inputs_dir(run: str | Path) -> Path:
    """``RUN/inputs``: the input photos' original bytes, named ``<id>.<ext>``."""
    return Path(run) / INPUTS


def remove_other_ids(run: str | Path, ids: Iterable[str]) -> list[Path]:
    """Delete the per-id files (predictions, sidecars, targets, inputs) of ids not in ``ids``: what an earlier run
    with more ids left behind, which a user study built from this folder would otherwise rate. Returns them."""
    keep = set(ids)
    folders = [targets_dir(run), inputs_dir(run)]
    if predictions_dir(run).is_dir():
        folders += sorted(p for p in predictions_dir(run).iterdir() if p.is_dir())
    removed = []
    for folder in folders:
        for path in sorted(folder.glob("*")) if folder.is_dir() else []:
            if path.is_file() and path.stem not in keep:  # files are named <id><one suffix>
                path.unlink()
                removed.append(path)
    return removed


def depth_dir(run: str | Path) -> Path:
    """``RUN/depth``: depth maps estimated during the run, reused for the same input bytes and depth model."""
    return Path(run) / DEPTH


def profile_dir(run: str | Path, profile: str) -> Path:
    """``RUN/<profile>``: one profile's ``run.json`` and tables in a run scored under several profiles."""
    return Path(run) / profile


def shards_dir(run: str | Path) -> Path:
    """``RUN/.shards``: the processes' partial results of a run in progress."""
    return Path(run) / SHARDS


def shard_path(run: str | Path, rank: int, world: int) -> Path:
    """``RUN/.shards/rank-RRR-of-WWW.json``: the scores of process ``rank`` of ``world``."""
    return shards_dir(run) / f"rank-{rank:03d}-of-{world:03d}.json"


def is_run_folder(run: str | Path) -> bool:
    """True when ``run`` holds predictions and targets (what a user study needs of it)."""
    return predictions_dir(run).is_dir() and targets_dir(run).is_dir()
