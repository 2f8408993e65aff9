"""Settings of the Space, read once from the environment (all optional)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["EXAMPLES_DIR", "SpaceSettings"]

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
ROOT = Path(__file__).resolve().parents[1]


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None


@dataclass(frozen=True)
class SpaceSettings:
    """What the app serves and how.

    Attributes:
        pynet_weights: PyNET weights folder or hub id (``BOKEH_PYNET_WEIGHTS``); ``None`` = not configured.
        depth_model: transformers depth model id or folder (``BOKEH_DEPTH_MODEL``).
        results_dir: evaluation output folder shown on the leaderboard (``BOKEH_RESULTS_DIR``).
        study_db: SQLAlchemy URL of the user-study database (``BOKEH_STUDY_DB``; default SQLite in data/).
        organizer_token: token that unlocks the organizer views (``BOKEH_ORGANIZER_TOKEN``).
        max_render_side: depth and defocus are computed at this longest side (``BOKEH_MAX_RENDER_SIDE``); the
            result is then brought back to the photo's own size.
        max_photo_mp: largest photo accepted, in megapixels (``BOKEH_MAX_PHOTO_MP``); checked at upload.
        pynet_cpu_preview_side: a PyNET preview size the operator chooses (``BOKEH_PYNET_PREVIEW_SIDE``, long side
            in px, labelled on screen); 0 (default) = PyNET's trained scale (long side 1536 px) on CPU and GPU.
        max_upload_mb: upload limit in megabytes (``BOKEH_MAX_UPLOAD_MB``).
        concurrency: renders run at once (``BOKEH_CONCURRENCY``); more requests wait in the queue.
    """

    pynet_weights: str | None = None
    depth_model: str = "Intel/dpt-hybrid-midas"
    results_dir: Path = field(default_factory=lambda: ROOT / "runs" / "latest")
    study_db: str | None = None
    organizer_token: str | None = None
    max_render_side: int = 2048
    max_photo_mp: int = 24
    pynet_cpu_preview_side: int = 0
    max_upload_mb: int = 64
    concurrency: int = 2

    @classmethod
    def from_env(cls) -> SpaceSettings:
        from bokeh_model.depth import DEFAULT_DEPTH_MODEL

        return cls(
            pynet_weights=os.environ.get("BOKEH_PYNET_WEIGHTS") or None,
            depth_model=os.environ.get("BOKEH_DEPTH_MODEL") or DEFAULT_DEPTH_MODEL,
            results_dir=Path(os.environ.get("BOKEH_RESULTS_DIR") or ROOT / "runs" / "latest"),
            study_db=os.environ.get("BOKEH_STUDY_DB") or None,
            organizer_token=os.environ.get("BOKEH_ORGANIZER_TOKEN") or None,
            max_render_side=_int("BOKEH_MAX_RENDER_SIDE", 2048),
            max_photo_mp=_int("BOKEH_MAX_PHOTO_MP", 24),
            pynet_cpu_preview_side=_int("BOKEH_PYNET_PREVIEW_SIDE", 0),
            max_upload_mb=_int("BOKEH_MAX_UPLOAD_MB", 64),
            concurrency=_int("BOKEH_CONCURRENCY", 2),
        )
