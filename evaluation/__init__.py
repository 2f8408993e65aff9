"""EBB! evaluation: PSNR / SSIM / LPIPS under two profiles, runtime, Table 1 leaderboards.

``python evaluation/run.py --help`` runs an evaluation; :mod:`evaluation.metrics` holds the pure metric
functions (``psnr``, ``ssim``, ``lpips_distance``) that training code can import for validation.
"""

from __future__ import annotations

from .metrics import DEFAULT_PROFILE, METRICS, PROFILES, MetricProfile, MetricSpec, lpips_distance, psnr, ssim

__all__ = ["DEFAULT_PROFILE", "METRICS", "PROFILES", "MetricProfile", "MetricSpec", "lpips_distance", "psnr", "ssim"]
