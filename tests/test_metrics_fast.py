"""The compiled PSNR/SSIM path: exact against scikit-image and TensorFlow at the edges of its strip partition."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from evaluation.psnr_ssim import _STRIP_ROWS, psnr, ssim

FIXTURES = Path(__file__).parent / "fixtures"


def _skimage_ssim(pred: np.ndarray, target: np.ndarray) -> float:
    return structural_similarity(
        target,
        pred,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        channel_axis=-1 if pred.ndim == 3 else None,
    )


@pytest.mark.parametrize(
    "shape",
    [
        (11, 11, 3),  # a single valid pixel
        (11, 40),
        (_STRIP_ROWS + 10, 23, 3),  # exactly one strip
        (_STRIP_ROWS + 11, 23, 3),  # one strip and one row
        (3 * _STRIP_ROWS + 17, 57, 3),  # several strips and a remainder
    ],
)
def test_ssim_matches_skimage_at_strip_boundaries(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(sum(shape))
    target = rng.random(shape)
    pred = np.clip(target + 0.15 * rng.standard_normal(shape), 0, 1)
    assert abs(ssim(pred, target) - _skimage_ssim(pred, target)) <= 1e-9


def test_ssim_matches_tensorflow_fixture() -> None:
    """tf.image.ssim values stored by tests/fixtures/make_tf_fixtures.py (float32 in TF, hence 1e-6)."""
    with np.load(FIXTURES / "tf_ops.npz") as data:
        a, b, expected = data["ssim_a"], data["ssim_b"], data["ssim"]
    for pred, target, value in zip(a, b, expected, strict=True):
        assert ssim(pred, target) == pytest.approx(float(value), abs=1e-6)


def test_ssim_is_deterministic_and_symmetric() -> None:
    rng = np.random.default_rng(7)
    target = rng.random((150, 90, 3))
    pred = np.clip(target + 0.1 * rng.standard_normal(target.shape), 0, 1)
    first = ssim(pred, target)
    assert all(ssim(pred, target) == first for _ in range(3))
    assert ssim(target, pred) == pytest.approx(first, abs=1e-15)


def test_psnr_matches_skimage_on_a_large_pair() -> None:
    rng = np.random.default_rng(8)
    target = np.round(rng.random((512, 768, 3)) * 255) / 255
    pred = np.clip(target + 0.02 * rng.standard_normal(target.shape), 0, 1)
    assert abs(psnr(pred, target) - peak_signal_noise_ratio(target, pred, data_range=1.0)) <= 1e-9
