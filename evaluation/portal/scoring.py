"""Scoring a submission: the one place where the portal calls the evaluation.

The portal has no metric code of its own. :func:`_score_with_evaluation` runs exactly what
``python evaluation/run.py --dataset D --split S --methods none --predictions LABEL=DIR --profile pynet,dmshn
--out OUT`` runs (every profile in one pass, in this process: each image decoded once), and returns each
profile's ``run.json`` (profile, dataset fingerprint, versions, per-method summaries) and ``per_image.csv``.
Keep every call to the evaluation behind this function, so a change of its interface is a change here only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evaluation.run_layout import PER_IMAGE, method_dir, profile_dir

__all__ = ["SUBMISSION_LABEL", "count_scored", "dataset_targets", "score_with_evaluation"]

SUBMISSION_LABEL = "submission"


def _score_with_evaluation(
    dataset: str,
    split: str,
    predictions_dir: str | os.PathLike,
    profiles: str | Sequence[str],
    out_dir: str | os.PathLike,
    *,
    label: str = SUBMISSION_LABEL,
    lpips: bool = True,
    allow_unofficial_lpips: bool = False,
    device: str = "auto",
    pair_files: bool = True,
    times: Any = None,
) -> dict[str, dict[str, Any]]:
    """Score one folder of predictions under every profile of ``profiles`` with ``evaluation/run.py``, in one pass.

    LPIPS is computed when the AlexNet trunk is in the torch hub cache (``run.json``'s ``lpips`` says why not).
    ``pair_files=False`` leaves the targets and inputs out of ``out_dir`` (the portal keeps one copy per split);
    ``times`` (an :class:`evaluation.scoring.StageTimes`) receives the seconds per stage (benchmarks).

    Returns:
        ``{profile: {"run": <run.json>, "per_image_csv": <text of per_image.csv>, "out_dir": <path>}}``.

    Raises:
        InputError, ModelUnavailableError: as ``evaluation/run.py`` raises them (missing ids, wrong sizes,
        an unreachable dataset ...).
    """
    from evaluation.runner import evaluate_predictions

    names = [profiles] if isinstance(profiles, str) else list(profiles)
    result = evaluate_predictions(
        str(dataset),
        split,
        predictions_dir,
        label=label,
        profile=names,
        out_dir=out_dir,
        lpips=lpips,
        allow_unofficial_lpips=allow_unofficial_lpips,
        device=device,
        pair_files=pair_files,
        times=times,
    )
    runs = result if len(names) > 1 else {names[0]: result}
    scored = {}
    for name in names:
        folder = profile_dir(out_dir, name) if len(names) > 1 else Path(out_dir)
        scored[name] = {
            "run": runs[name],
            "per_image_csv": (folder / PER_IMAGE).read_text(encoding="utf-8"),
            "out_dir": str(folder),
        }
    return scored


score_with_evaluation = _score_with_evaluation


def count_scored(out_dir: str | os.PathLike, label: str = SUBMISSION_LABEL) -> int:
    """Images of a running evaluation done so far: ``evaluation/run.py`` saves ``predictions/<label>/<id>.png``
    as it scores each image (a documented output), so counting them gives progress without hooking into it."""
    folder = method_dir(out_dir, label)
    try:
        return sum(1 for p in folder.iterdir() if p.suffix == ".png")
    except OSError:
        return 0


def dataset_targets(dataset: str, split: str) -> dict[str, tuple[int, int]]:
    """id -> (width, height) of every target of a split, read from the image headers (nothing is decoded).

    Raises:
        InputError, ModelUnavailableError: the dataset or split cannot be opened (as ``evaluation`` reports it).
    """
    import io

    from PIL import Image

    from bokeh_model.errors import InputError
    from evaluation.dataset import open_source

    source = open_source(dataset, split)
    if source.synthetic:
        raise InputError("the portal scores a real dataset; set its dataset (e.g. a folder built by evaluation.ebb)")
    sizes: dict[str, tuple[int, int]] = {}
    for sample in source.iter_samples():
        try:
            with Image.open(io.BytesIO(sample.bokeh)) as image:
                sizes[sample.id] = image.size
        except Exception as exc:  # noqa: BLE001 - a broken target is the dataset's problem: say which
            raise InputError(f"{sample.where} id {sample.id}: target cannot be read ({exc})") from None
    if not sizes:
        raise InputError(f"dataset {dataset!r} split {split!r} has no rows")
    return sizes
