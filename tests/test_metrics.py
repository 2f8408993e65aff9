"""Metric functions agree with the reference implementations (scikit-image, the lpips package)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from bokeh_model.lpips_trunk import ALEXNET_FILE
from evaluation import metrics
from evaluation.metrics import (
    METRICS,
    PROFILES,
    build_lpips,
    lpips_distance,
    lpips_status,
    psnr,
    score_pair,
    ssim,
    summarize,
)


def _pair(height: int = 64, width: int = 80, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    target = rng.random((height, width, 3))
    pred = np.clip(target + 0.1 * rng.standard_normal(target.shape), 0.0, 1.0)
    return pred, target


def test_psnr_matches_skimage():
    pred, target = _pair()
    ours = psnr(pred, target)
    ref = peak_signal_noise_ratio(target, pred, data_range=1.0)
    assert abs(ours - ref) <= 1e-9
    ours255 = psnr(pred * 255, target * 255, data_range=255.0)
    assert abs(ours255 - ref) <= 1e-9


@pytest.mark.parametrize("shape", [(64, 80, 3), (33, 47, 3), (40, 41)])
def test_ssim_matches_skimage_wang_settings(shape):
    rng = np.random.default_rng(1)
    target = rng.random(shape)
    pred = np.clip(target + 0.2 * rng.standard_normal(shape), 0, 1)
    ours = ssim(pred, target)
    ref = structural_similarity(
        target,
        pred,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        channel_axis=-1 if len(shape) == 3 else None,
    )
    assert abs(ours - ref) <= 1e-6
    # float32 inputs are computed in float64 too
    assert (
        abs(
            ssim(pred.astype(np.float32), target.astype(np.float32))
            - ssim(pred.astype(np.float32).astype(np.float64), target.astype(np.float32).astype(np.float64))
        )
        <= 1e-12
    )


def test_ssim_data_range_255():
    pred, target = _pair(seed=3)
    ref = structural_similarity(
        target * 255,
        pred * 255,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255.0,
        channel_axis=-1,
    )
    assert abs(ssim(pred * 255, target * 255, data_range=255.0) - ref) <= 1e-6


def test_identical_images():
    _, target = _pair()
    assert psnr(target, target) == float("inf")
    assert ssim(target, target) == pytest.approx(1.0, abs=1e-12)


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(64, 80, 3\).*\(64, 81, 3\)"):
        psnr(np.zeros((64, 80, 3)), np.zeros((64, 81, 3)))
    with pytest.raises(ValueError, match="NaN"):
        ssim(np.full((20, 20, 3), np.nan), np.zeros((20, 20, 3)))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(np.zeros((8, 20, 3)), np.zeros((8, 20, 3)))


def test_dmshn_profile_matches_skimage_defaults():
    pred, target = _pair(seed=4)
    p8 = np.round(pred * 255).astype(np.uint8)
    t8 = np.round(target * 255).astype(np.uint8)
    scores = score_pair(p8 / 255.0, t8 / 255.0, "dmshn")
    assert abs(scores["psnr"] - peak_signal_noise_ratio(t8, p8)) <= 1e-9
    assert abs(scores["ssim"] - structural_similarity(t8, p8, channel_axis=-1)) <= 1e-9
    assert np.isnan(scores["lpips"])


def test_pynet_profile_crops_32_pixels():
    pred, target = _pair(100, 120, seed=5)
    pred[:32] = 0.0  # damage only the border: the profile must ignore it
    scores = score_pair(pred, target, "pynet")
    inner = (slice(32, -32), slice(32, -32))
    assert scores["psnr"] == pytest.approx(psnr(pred[inner], target[inner]), abs=1e-12)
    assert scores["ssim"] == pytest.approx(ssim(pred[inner], target[inner]), abs=1e-12)
    with pytest.raises(ValueError, match="too small"):
        score_pair(pred[:60], target[:60], PROFILES["pynet"])


def test_registry_directions():
    assert METRICS["lpips"].lower_better and not METRICS["psnr"].lower_better
    assert METRICS["psnr"].label == "PSNR ↑" and METRICS["lpips"].label == "LPIPS ↓"


@pytest.mark.slow
def test_lpips_equals_lpips_package_value():
    import lpips

    torch.manual_seed(0)
    model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()  # random trunk: plumbing only
    pred, target = _pair(64, 96, seed=6)
    ours = lpips_distance(pred, target, model=model)
    with torch.no_grad():
        ref = model(
            lpips.im2tensor(np.round(pred * 255).astype(np.uint8)),
            lpips.im2tensor(np.round(target * 255).astype(np.uint8)),
        ).item()
        ref_float = model(
            torch.from_numpy(pred.transpose(2, 0, 1)[None]).float(),
            torch.from_numpy(target.transpose(2, 0, 1)[None]).float(),
            normalize=True,
        ).item()
    assert ours == pytest.approx(ref_float, abs=1e-6)
    quantized = lpips_distance(np.round(pred * 255) / 255, np.round(target * 255) / 255, model=model)
    assert quantized == pytest.approx(ref, abs=1e-5)
    assert lpips_distance(target, target, model=model) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.slow
def test_lpips_trunk_loader_equals_lpips_package(tmp_path, monkeypatch):
    """Our offline loader builds the same network lpips.LPIPS(net="alex") builds from the hub cache."""
    import lpips
    import torchvision

    torch.manual_seed(1)
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    ok, reason = lpips_status()
    assert not ok and ALEXNET_FILE in reason and str(tmp_path / "hub" / "checkpoints") in reason
    with pytest.raises(metrics.LPIPSUnavailableError, match="alexnet-owt-7be5be79.pth"):
        metrics.get_lpips_model()
    # A stand-in trunk file (random AlexNet weights) where torch hub looks for the real one.
    checkpoint = tmp_path / "hub" / "checkpoints" / ALEXNET_FILE
    checkpoint.parent.mkdir(parents=True)
    torch.save(torchvision.models.alexnet().state_dict(), checkpoint)
    assert lpips_status() == (True, "")
    ours = build_lpips()
    reference = lpips.LPIPS(net="alex", verbose=False).eval()  # loads the cached file, no download
    pred, target = _pair(64, 64, seed=7)
    assert lpips_distance(pred, target, model=ours) == pytest.approx(
        lpips_distance(pred, target, model=reference), abs=1e-7
    )


def test_summarize_and_bootstrap():
    stats = summarize([1.0, 2.0, 3.0, float("inf")])
    assert stats["n"] == 3 and stats["mean"] == 2.0 and stats["median"] == 2.0
    assert 1.0 <= stats["ci_low"] <= 2.0 <= stats["ci_high"] <= 3.0
    assert summarize([])["n"] == 0
