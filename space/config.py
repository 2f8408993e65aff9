"""Settings of the Space, read once from the environment (all optional)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from evaluation.run_layout import DEFAULT_RUN, RESULTS_DIR_ENV

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


def _choices(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    if raw.strip().lower() == "none":
        return ()
    return tuple(part.strip() for part in raw.split(",") if part.strip())


@dataclass(frozen=True)
class SpaceSettings:
    """What the app serves and how.

    Attributes:
        pynet_weights: PyNET weights folder or hub id (``BOKEH_PYNET_WEIGHTS``); ``None`` = not configured.
        depth_model: the default depth model: a short name, hub id or folder (``BOKEH_DEPTH_MODEL``).
        depth_choices: further depth models a visitor may pick in the Render tab (``BOKEH_DEPTH_CHOICES``, comma
            separated short names or hub ids; default every model in :data:`bokeh_model.depth_models.DEPTH_MODELS`;
            ``none`` = only the default).
        results_dir: evaluation output folder shown on the leaderboard (``BOKEH_RESULTS_DIR``).
        study_db: SQLAlchemy URL of the user-study database (``BOKEH_STUDY_DB``; default SQLite in data/).
        organizer_token: token that unlocks the organizer views (``BOKEH_ORGANIZER_TOKEN``).
        max_render_side: depth and defocus are computed at this longest side (``BOKEH_MAX_RENDER_SIDE``); the
            result is then brought back to the photo's own size.
        max_photo_mp: largest photo accepted, in megapixels (``BOKEH_MAX_PHOTO_MP``); checked at upload.
        pynet_cpu_preview_side: a PyNET preview size the operator chooses (``BOKEH_PYNET_PREVIEW_SIDE``, long side
            in px, labelled on screen); 0 (default) = PyNET's trained scale (long side 1536 px) on CPU and GPU.
        cpu_preview_side: on a machine without CUDA, the long side at which Bokehlicious and BokehMe render before
            the guided finish (``BOKEH_CPU_PREVIEW_SIDE``, default 768, labelled on screen; 0 = the processing size).
        max_upload_mb: upload limit in megabytes (``BOKEH_MAX_UPLOAD_MB``).
        concurrency: renders run at once (``BOKEH_CONCURRENCY``); more requests wait in the queue.
    """

    pynet_weights: str | None = None
    depth_model: str = "Intel/dpt-hybrid-midas"
    depth_choices: tuple[str, ...] = ("dpt-hybrid", "depth-anything-v2-small")
    results_dir: Path = field(default_factory=lambda: Path(DEFAULT_RUN).absolute())
    study_db: str | None = None
    organizer_token: str | None = None
    max_render_side: int = 2048
    max_photo_mp: int = 24
    pynet_cpu_preview_side: int = 0
    cpu_preview_side: int = 768
    max_upload_mb: int = 64
    concurrency: int = 2

    @classmethod
    def from_env(cls) -> SpaceSettings:
        from bokeh_model.depth import DEFAULT_DEPTH_MODEL

        return cls(
            pynet_weights=os.environ.get("BOKEH_PYNET_WEIGHTS") or None,
            depth_model=os.environ.get("BOKEH_DEPTH_MODEL") or DEFAULT_DEPTH_MODEL,
            depth_choices=_choices("BOKEH_DEPTH_CHOICES", cls.depth_choices),
            # where bokeh-eval writes by default: the working directory, not the installed package's folder
            results_dir=Path(os.environ.get(RESULTS_DIR_ENV) or DEFAULT_RUN).absolute(),
            study_db=os.environ.get("BOKEH_STUDY_DB") or None,
            organizer_token=os.environ.get("BOKEH_ORGANIZER_TOKEN") or None,
            max_render_side=_int("BOKEH_MAX_RENDER_SIDE", 2048),
            max_photo_mp=_int("BOKEH_MAX_PHOTO_MP", 24),
            pynet_cpu_preview_side=_int("BOKEH_PYNET_PREVIEW_SIDE", 0),
            cpu_preview_side=_int("BOKEH_CPU_PREVIEW_SIDE", 768),
            max_upload_mb=_int("BOKEH_MAX_UPLOAD_MB", 64),
            concurrency=_int("BOKEH_CONCURRENCY", 2),
        )

    @property
    def depth_models(self) -> tuple[str, ...]:
        """Every depth model a visitor can pick (resolved ids, each once): the default first, then the choices."""
        from bokeh_model.depth_models import resolve_depth_model

        ids = [resolve_depth_model(self.depth_model), *(resolve_depth_model(c) for c in self.depth_choices)]
        return tuple(dict.fromkeys(ids))

    def depth_component(self, model_id: str) -> str:
        """The Status tab's card (and background-fetch item) of a depth model: ``Depth model`` for the default."""
        from bokeh_model.depth_models import depth_model_info, resolve_depth_model

        model_id = resolve_depth_model(model_id)
        if model_id == resolve_depth_model(self.depth_model):
            return "Depth model"
        info = depth_model_info(model_id)
        return f"Depth model: {info.title if info is not None else model_id}"
