"""Synthetic evaluation-run folders and simulated raters for tests, demos and the load benchmark.

The images are procedural (gradients plus noise); they stand in for renderings only in tests and say nothing
about any real method.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy import select

from evaluation.run_layout import PER_IMAGE, RUN_RECORD, method_dir, prediction_path, targets_dir

__all__ = ["make_fake_run", "simulated_score"]


def make_fake_run(
    run_dir: str | Path,
    methods: Sequence[str] = ("pynet", "blur", "identity"),
    scenes: Sequence[str] = ("1", "2", "3", "4"),
    *,
    size: tuple[int, int] = (32, 24),
    seed: int = 0,
) -> Path:
    """Write ``predictions/<method>/<id>.png``, ``targets/<id>.jpg``, ``run.json`` and ``per_image.csv``.

    The paths come from :mod:`evaluation.run_layout`, the one definition of a run folder.

    Method ``k`` deviates from the target by noise of strength ``k``; ``per_image.csv`` holds the real PSNR of
    each synthetic image plus made-up-free placeholders (``ssim`` and ``lpips`` are simple functions of the
    noise level so correlations can be exercised).

    Args:
        run_dir: Folder to create.
        methods: Method folder names.
        scenes: Scene ids.
        size: Image size (width, height).
        seed: Noise seed.

    Returns:
        The run folder.
    """
    rng = np.random.default_rng(seed)
    run = Path(run_dir)
    targets_dir(run).mkdir(parents=True, exist_ok=True)
    w, h = size
    rows = []
    for si, scene in enumerate(scenes):
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx / w, yy / h, np.full_like(xx, (si % 5) / 5.0, dtype=float)], axis=-1)
        Image.fromarray((base * 255).astype(np.uint8)).save(targets_dir(run) / f"{scene}.jpg", quality=95)
        for mi, m in enumerate(methods):
            noise = rng.normal(0, 0.05 * (mi + 1), base.shape)
            img = np.clip(base + noise, 0, 1)
            method_dir(run, m).mkdir(parents=True, exist_ok=True)
            Image.fromarray((img * 255).astype(np.uint8)).save(prediction_path(run, m, scene))
            mse = float(np.mean((img - base) ** 2))
            psnr = 10 * np.log10(1.0 / max(mse, 1e-10))
            rows.append(
                {
                    "method": m,
                    "id": scene,
                    "psnr": round(psnr, 4),
                    "ssim": round(1 - 4 * mse, 4),
                    "lpips": round(2 * mse**0.5, 4),
                }
            )
    with open(run / PER_IMAGE, "w", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=["method", "id", "psnr", "ssim", "lpips"])
        wr.writeheader()
        wr.writerows(rows)
    (run / RUN_RECORD).write_text(json.dumps({"methods": list(methods), "synthetic": True}))
    return run


def simulated_score(
    service,
    rater_id: str,
    slot_token: str,
    rng: np.random.Generator,
    *,
    quality: dict[str, float] | None = None,
    noise: float = 0.6,
    careless: bool = False,
) -> int:
    """Score a simulated rater gives to a slot (test helper: it reads the item kind from the database).

    Attentive raters answer hidden references with 0, gold with 4, traps as instructed and test items with
    ``quality[method] + noise``; ``careless`` raters answer uniformly at random.
    """
    from user_study.storage import Assignment, Item, Method, Slot

    if careless:
        return int(rng.integers(0, 5))
    aid, pos = slot_token.rsplit(":", 1)
    with service.Session() as s:
        row = s.execute(
            select(Item.kind, Item.expected_score, Method.name)
            .join(Slot, Slot.item_id == Item.id)
            .join(Assignment, Assignment.id == Slot.assignment_id)
            .outerjoin(Method, Method.id == Item.method_id)
            .where(Slot.assignment_id == aid, Slot.position == int(pos), Assignment.rater_id == rater_id)
        ).one()
    kind, expected, method = row
    if kind in ("hidden_ref", "gold", "trap"):
        return int(expected)
    base = (quality or {}).get(method, 2.0)
    return int(np.clip(round(base + rng.normal(0, noise)), 0, 4))
