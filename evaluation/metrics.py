"""Full-reference image metrics for bokeh evaluation: PSNR, SSIM, LPIPS, and the two metric profiles.

This module is the metrics' front door: the metric registry (:data:`METRICS`), the two profiles, :func:`score_pair`
and the summaries (mean, median, bootstrap CI). The metrics themselves live in :mod:`evaluation.psnr_ssim` and
:mod:`evaluation.lpips_metric` and are re-exported here. Pure functions over arrays, no file I/O (beyond the
LPIPS trunk). The conventions follow the PyNET-Bokeh authors' evaluation
(``aiff22/PyNET-Bokeh:test_model.py``, TensorFlow ``tf.image.psnr`` / ``tf.image.ssim``):

* :func:`psnr`: ``10 log10(R^2 / MSE)`` with the MSE over all pixels and channels of one image, in float64.
* :func:`ssim`: Wang et al. SSIM as TensorFlow computes it: 11x11 Gaussian window with sigma 1.5,
  K1 = 0.01, K2 = 0.03, population (co)variances, only the 'valid' region (no padding), mean over the
  pixels of each channel, then mean over the channels. It equals
  ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, channel_axis=-1, data_range=R)`` (tested to 1e-6) and is several times faster
  (separable symmetric float64 filtering of the 'valid' region only, four filtered maps instead of five and the
  per-pixel formula fused into one numba-compiled pass, strips of rows run on a small thread pool).
* :func:`lpips_distance`: LPIPS v0.1 with the AlexNet trunk on inputs scaled to [-1, 1] (the ``lpips``
  package's own network). The network is built lazily, once, and never downloads by itself: the AlexNet trunk
  must be in the torch hub cache (:func:`~bokeh_model.lpips_trunk.alexnet_trunk_path`;
  ``python -m bokeh_model fetch lpips`` or ``evaluation/run.py`` put it there on request); otherwise
  :class:`LPIPSUnavailableError` says where to place ``alexnet-owt-7be5be79.pth``. :func:`verify_lpips_trunk`
  checks it is torchvision's published file.

Two profiles (:data:`PROFILES`):

* ``pynet`` (default): 32-px border crop on every side, RGB floats in [0, 1], the functions above.
* ``dmshn``: the settings of published Val294 tables (DMSHN / MPFNet ``eval.py``): no crop, uint8 levels,
  scikit-image defaults (PSNR with data range 255; SSIM with a 7x7 uniform window and sample covariance),
  LPIPS on the full image.

>>> import numpy as np
>>> a = np.random.default_rng(0).random((32, 32, 3))
>>> round(ssim(a, a), 6), psnr(a, a)
(1.0, inf)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bokeh_model.errors import InputError
from evaluation.lpips_metric import (
    LPIPSBatch,
    LPIPSUnavailableError,
    build_lpips,
    get_lpips_model,
    lpips_distance,
    lpips_status,
    lpips_trunk_info,
    verify_lpips_trunk,
)
from evaluation.psnr_ssim import check_pair, dmshn_levels, psnr, psnr_dmshn, pynet_levels, ssim, ssim_dmshn

__all__ = [
    "DEFAULT_PROFILE",
    "METRICS",
    "PROFILES",
    "LPIPSBatch",
    "LPIPSUnavailableError",
    "MetricProfile",
    "MetricSpec",
    "bootstrap_ci",
    "build_lpips",
    "check_pair",
    "get_lpips_model",
    "get_profile",
    "lpips_distance",
    "lpips_status",
    "lpips_trunk_info",
    "verify_lpips_trunk",
    "psnr",
    "psnr_dmshn",
    "score_levels",
    "score_pair",
    "ssim",
    "ssim_dmshn",
    "summarize",
]


# ---------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class MetricSpec:
    """One metric: its name, function ``fn(pred, target) -> float``, direction and whether it needs a target."""

    name: str
    fn: Callable[..., float]
    lower_better: bool
    needs_reference: bool = True

    @property
    def label(self) -> str:
        """Column label with the direction arrow, e.g. ``"PSNR ↑"``."""
        return f"{self.name.upper().replace('_', '-')} {'↓' if self.lower_better else '↑'}"


METRICS: dict[str, MetricSpec] = {
    "psnr": MetricSpec("psnr", psnr, lower_better=False),
    "ssim": MetricSpec("ssim", ssim, lower_better=False),
    "lpips": MetricSpec("lpips", lpips_distance, lower_better=True),
}


@dataclass(frozen=True)
class MetricProfile:
    """How images are prepared and scored: border crop and the PSNR / SSIM functions on [0, 1] floats.

    ``levels`` (optional) computes ``(psnr, ssim)`` of the cropped uint8 levels of 8-bit images directly, with the
    same values as ``psnr`` and ``ssim`` on ``levels / 255`` (to 1e-12), without float copies of the images.
    """

    name: str
    description: str
    border: int
    psnr: Callable[[np.ndarray, np.ndarray], float]
    ssim: Callable[[np.ndarray, np.ndarray], float]
    quantize: bool = True
    notes: tuple[str, ...] = field(default_factory=tuple)
    levels: Callable[[np.ndarray, np.ndarray], tuple[float, float]] | None = None
    ssim_window: int = 11  # the SSIM window's side: the cropped image must be at least this large

    @property
    def min_side(self) -> int:
        """The smallest image side (pixels) this profile can score: the border crop plus one SSIM window."""
        return 2 * self.border + self.ssim_window

    def crop(self, image: np.ndarray) -> np.ndarray:
        """Remove ``border`` pixels from every side (no-op for 0).

        Raises:
            ValueError: the image is too small for the crop.
        """
        if self.border <= 0:
            return image
        height, width = image.shape[:2]
        if height <= 2 * self.border or width <= 2 * self.border:
            raise ValueError(
                f"profile {self.name!r} crops {self.border} px per side; image {width}x{height} is too small"
            )
        return image[self.border : height - self.border, self.border : width - self.border]


PROFILES: dict[str, MetricProfile] = {
    "pynet": MetricProfile(
        name="pynet",
        description="PyNET-Bokeh authors' protocol: 32-px border crop, RGB in [0, 1], TF PSNR/SSIM, LPIPS-alex v0.1",
        border=32,
        psnr=psnr,
        ssim=ssim,
        notes=("SSIM: Gaussian 11, sigma 1.5, valid region, population statistics, mean of channels",),
        levels=pynet_levels,
    ),
    "dmshn": MetricProfile(
        name="dmshn",
        description="Published Val294 tables (DMSHN/MPFNet eval.py): no crop, uint8, scikit-image defaults",
        border=0,
        psnr=psnr_dmshn,
        ssim=ssim_dmshn,
        notes=("SSIM: 7x7 uniform window, sample covariance, data range 255 (not comparable with 'pynet')",),
        ssim_window=7,
        levels=dmshn_levels,
    ),
}
DEFAULT_PROFILE = "pynet"


def get_profile(name: str) -> MetricProfile:
    """The profile called ``name``.

    Raises:
        InputError: unknown name (the known ones are listed).
    """
    if name not in PROFILES:
        raise InputError(f"unknown metric profile {name!r}; choose one of {sorted(PROFILES)}")
    return PROFILES[name]


def score_pair(
    pred: np.ndarray,
    target: np.ndarray,
    profile: MetricProfile | str = DEFAULT_PROFILE,
    *,
    lpips_model: Any = None,
) -> dict[str, float]:
    """PSNR, SSIM (and LPIPS when ``lpips_model`` is given) of one pair under a profile.

    Args:
        pred: float (H, W, 3) in [0, 1], the full-size prediction.
        target: float (H, W, 3) in [0, 1], the full-size target.
        profile: a :class:`MetricProfile` or its name.
        lpips_model: an ``lpips.LPIPS`` network, or ``None`` to skip LPIPS (reported as NaN).

    Returns:
        ``{"psnr": ..., "ssim": ..., "lpips": ...}``.
    """
    if isinstance(profile, str):
        profile = get_profile(profile)
    pred, target = check_pair(pred, target)
    pred, target = profile.crop(pred), profile.crop(target)
    scores = {"psnr": profile.psnr(pred, target), "ssim": profile.ssim(pred, target)}
    scores["lpips"] = lpips_distance(pred, target, model=lpips_model) if lpips_model is not None else float("nan")
    return scores


def score_levels(
    pred: np.ndarray, target: np.ndarray, profile: MetricProfile | str = DEFAULT_PROFILE
) -> dict[str, float]:
    """PSNR and SSIM of two 8-bit images given as uint8 (H, W, 3) levels: :func:`score_pair` of ``levels / 255``
    (to 1e-12) without float copies of the whole images. LPIPS is not computed here (NaN; see :class:`LPIPSBatch`).

    Raises:
        ValueError: the shapes differ, or the image is too small for the profile's crop or window.
    """
    if isinstance(profile, str):
        profile = get_profile(profile)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from target shape {target.shape}")
    if pred.dtype != np.uint8 or target.dtype != np.uint8:
        raise ValueError(f"score_levels takes uint8 levels, got {pred.dtype} and {target.dtype}")
    pred, target = profile.crop(pred), profile.crop(target)
    if profile.levels is None or min(pred.shape[:2]) < 11:  # small images: the float functions say what is wrong
        scores = {
            "psnr": profile.psnr(pred / 255.0, target / 255.0),
            "ssim": profile.ssim(pred / 255.0, target / 255.0),
        }
    else:
        value_psnr, value_ssim = profile.levels(pred, target)
        scores = {"psnr": value_psnr, "ssim": value_ssim}
    scores["lpips"] = float("nan")
    return scores


# ---------------------------------------------------------------------------------------------- aggregation


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, *, level: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean (seeded, so tables are reproducible).

    Returns ``(nan, nan)`` for no finite values and ``(v, v)`` for a single value.
    """
    data = np.asarray(values, dtype=np.float64)
    data = data[np.isfinite(data)]
    if data.size == 0:
        return float("nan"), float("nan")
    if data.size == 1:
        return float(data[0]), float(data[0])
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(n_resamples, data.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def summarize(values: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Mean, median, 95% bootstrap CI and count of the finite values (``inf`` PSNR counts as not finite)."""
    data = np.asarray(values, dtype=np.float64)
    finite = data[np.isfinite(data)]
    low, high = bootstrap_ci(finite)
    return {
        "mean": float(finite.mean()) if finite.size else float("nan"),
        "median": float(np.median(finite)) if finite.size else float("nan"),
        "ci_low": low,
        "ci_high": high,
        "n": int(finite.size),
    }
