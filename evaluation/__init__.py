"""EBB! evaluation: PSNR / SSIM / LPIPS under two profiles, runtime, Table 1 leaderboards.

``python evaluation/run.py --help`` runs an evaluation (in code: :func:`evaluation.runner.run_evaluation` with an
:class:`evaluation.config.EvalConfig`); :mod:`evaluation.metrics` holds the pure metric functions (``psnr``,
``ssim``, ``lpips_distance``) that training code can import for validation; :mod:`evaluation.run_layout` defines
the run folder. Other modules: ``dataset``/``synthetic`` (data), ``methods``/``scoring``/``record``/``console``
(the parts of a run), ``leaderboard``/``report`` (tables), ``ebb``/``pairs`` (dataset builders), ``portal`` and
``submit`` (submissions).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["DEFAULT_PROFILE", "METRICS", "PROFILES", "MetricProfile", "MetricSpec", "lpips_distance", "psnr", "ssim"]

if TYPE_CHECKING:
    from .metrics import DEFAULT_PROFILE, METRICS, PROFILES, MetricProfile, MetricSpec, lpips_distance, psnr, ssim


def __getattr__(name: str) -> Any:
    # The metric names load evaluation.metrics (and torch) on first use only: evaluation.run_layout, which the
    # user study's rater server imports, stays light.
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.metrics"), name)
    globals()[name] = value
    return value
