"""EBB! evaluation: PSNR / SSIM / LPIPS under two profiles, runtime, Table 1 leaderboards.

``python evaluation/run.py --help`` runs an evaluation (in code: :func:`evaluation.runner.run_evaluation` with an
:class:`evaluation.config.EvalConfig`); :mod:`evaluation.metrics` holds the pure metric functions (``psnr``,
``ssim``, ``lpips_distance``) that training code can import for validation; :mod:`evaluation.run_layout` defines
the run folder. Other modules: ``dataset``/``synthetic`` (data), ``methods``/``scoring``/``record``/``console``
(the parts of a run), ``leaderboard``/``report`` (tables), ``ebb``/``pairs`` (dataset builders), ``portal`` and
``submit`` (submissions).
"""

from __future__ import annotations

from .metrics import DEFAULT_PROFILE, METRICS, PROFILES, MetricProfile, MetricSpec, lpips_distance, psnr, ssim

__all__ = ["DEFAULT_PROFILE", "METRICS", "PROFILES", "MetricProfile", "MetricSpec", "lpips_distance", "psnr", "ssim"]
