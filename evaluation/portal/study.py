"""Bridge to the user study: chosen submissions as an evaluation run folder that ``python -m user_study create``
accepts (``predictions/<method>/<id>.<ext>`` and ``targets/<id>.<ext>``).

Method folders are named after the submitted method (made unique), so the study's MOS table names them the way
the leaderboard does; ``methods.json`` maps each folder to its submission id and content hash.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bokeh_model.files import atomic_write
from evaluation.run_layout import method_dir, targets_dir

if TYPE_CHECKING:
    from .models import PortalState

__all__ = ["build_study_run"]


def _label(method: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_-]+", "_", method).strip("_") or "method"
    label, n = base, 2
    while label in taken:
        label, n = f"{base}_{n}", n + 1
    taken.add(label)
    return label


def build_study_run(
    portal: PortalState, sub_ids: Sequence[str], out: str | os.PathLike, *, with_measured: Sequence[str] = ()
) -> Path:
    """Write a study run folder for ``sub_ids`` (scored submissions of one split) into ``out``.

    Args:
        with_measured: method folders of the portal's measured run (``predictions/<name>/``) to rate beside
            the submissions, e.g. ``("lens",)``.

    Raises:
        PortalError: unknown or unscored submission, submissions of different splits, no kept targets,
            a measured method without predictions for the split's ids.
    """
    from .models import PortalError

    if not sub_ids:
        raise PortalError("choose at least one submission")
    records = []
    for sub_id in sub_ids:
        record = portal.store.submission(sub_id)
        if record is None:
            raise PortalError(f"no submission {sub_id!r}")
        if record.get("status") != "scored":
            raise PortalError(f"submission {sub_id} is {record.get('status')}, not scored")
        records.append(record)
    splits = {r["split"] for r in records}
    if len(splits) != 1:
        raise PortalError(f"the submissions are on different splits {sorted(splits)}; a study rates one split")
    split = splits.pop()
    targets = portal.root / "targets" / split
    if not targets.is_dir():
        raise PortalError(f"no targets kept for split {split!r} under {targets}; score a submission first")
    folder = Path(out)
    if folder.exists() and any(folder.iterdir()):
        raise PortalError(f"{folder} exists and is not empty; choose a new folder")
    taken: set[str] = set()
    mapping = {}
    try:
        shutil.copytree(targets, targets_dir(folder))
        for record in records:
            label = _label(record["meta"]["method"], taken)
            shutil.copytree(portal.root / "predictions" / record["id"], method_dir(folder, label))
            mapping[label] = {
                "submission": record["id"],
                "sha256": record["sha256"],
                "method": record["meta"]["method"],
            }
        measured = portal.settings.measured_dir
        for name in with_measured:
            source = method_dir(measured or "", name)
            if not source.is_dir():
                raise PortalError(f"measured method {name!r} has no predictions in {source}")
            label = _label(name, taken)
            method_dir(folder, label).mkdir(parents=True)
            for path in source.glob("*.png"):
                shutil.copyfile(path, method_dir(folder, label) / path.name)
            mapping[label] = {"measured_run": str(measured), "method": name}
        atomic_write(folder / "methods.json", json.dumps({"split": split, "methods": mapping}, indent=2))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder
