"""Per-level checkpoints: ``OUT/level_L/checkpoint-NNNNNNN/``, ``latest.json`` (what to resume from), ``model/``.

A checkpoint folder holds the ``from_pretrained`` files plus ``training_state.pt`` (step, optimizer and
grad-scaler state, the run's configuration, the trained parameter names). ``model/`` is written once the level
is done; the next level starts from it. Folders are written under a temporary name and renamed into place, and
``latest.json`` is replaced atomically, so an interrupted run resumes from the last complete checkpoint.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..files import atomic_directory, atomic_write

__all__ = [
    "LATEST_FILE",
    "MODEL_DIR",
    "TRAINING_STATE_FILE",
    "checkpoint_name",
    "load_training_state",
    "read_latest",
    "save_checkpoint",
    "write_json",
]

LATEST_FILE = "latest.json"
MODEL_DIR = "model"
TRAINING_STATE_FILE = "training_state.pt"


def checkpoint_name(step: int) -> str:
    return f"checkpoint-{step:07d}"


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    """``payload`` as indented JSON, written atomically."""
    atomic_write(path, json.dumps(payload, indent=1))


def read_latest(level_dir: Path) -> dict[str, Any] | None:
    """The level's ``latest.json`` (``step``, ``checkpoint``, ``done``, ``iterations``, ``level``), or ``None``."""
    path = level_dir / LATEST_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is corrupt ({exc}); delete it to restart level from scratch") from None


def load_training_state(level_dir: Path, latest: Mapping[str, Any]) -> dict[str, Any]:
    """The ``training_state.pt`` of the checkpoint ``latest`` names."""
    path = level_dir / latest["checkpoint"] / TRAINING_STATE_FILE
    return torch.load(path, map_location="cpu", weights_only=False)


def save_checkpoint(
    level_dir: Path,
    model: nn.Module,
    training_state: Mapping[str, Any],
    *,
    level: int,
    step: int,
    iterations: int,
    done: bool,
    keep: int,
) -> None:
    """Write ``checkpoint-<step>/`` (and ``model/`` when ``done``), point ``latest.json`` at it and delete all but
    the newest ``keep`` checkpoints. ``model`` is the unwrapped PyNET (it has ``save_pretrained``)."""
    name = checkpoint_name(step)

    with atomic_directory(level_dir / name) as folder:
        model.save_pretrained(folder)
        torch.save(dict(training_state), folder / TRAINING_STATE_FILE)
    if done:
        with atomic_directory(level_dir / MODEL_DIR) as folder:
            model.save_pretrained(folder)
    write_json(
        level_dir / LATEST_FILE,
        {"step": step, "checkpoint": name, "done": done, "iterations": iterations, "level": level},
    )
    kept = sorted(level_dir.glob("checkpoint-*"))
    for old in kept[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
