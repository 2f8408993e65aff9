"""Full-resolution finish: a result computed at processing resolution, brought back to the photo's own size."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from bokeh_model import InputError, create_method
from bokeh_model.images import resize_array
from bokeh_model.upsample import finish_full_resolution, guided_upsample


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    error = (np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2
    return float(10 * np.log10(1.0 / (error[mask] if mask is not None else error).mean()))


def scene(height: int = 450, width: int = 600) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A subject with pixel-fine texture (in focus) in front of a textured background (blurred)."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:height, 0:width]
    background = (gaussian_filter(rng.random((height, width, 3)), (2, 2, 0)) * 0.6 + 0.2).astype(np.float32)
    checker = 0.5 + 0.4 * np.sign(np.sin(xx / 1.3) * np.sin(yy / 1.7))
    texture = (checker[..., None] * np.array([0.9, 0.6, 0.3])).astype(np.float32)
    subject = (np.abs(yy - height / 2) < height / 4) & (np.abs(xx - width / 2) < width / 5)
    image = np.where(subject[..., None], texture, background).astype(np.float32)
    return image, np.where(subject, 0.9, 0.1).astype(np.float32), subject


def test_finish_keeps_in_focus_detail_and_matches_a_full_resolution_render() -> None:
    image, depth, subject = scene()
    height, width = depth.shape
    lens = create_method("lens")
    truth = lens(image, depth, strength=20.0, focus_disparity=0.9, highlight_boost=0.0)
    low = np.clip(resize_array(image, (height // 2, width // 2), resample="area"), 0, 1)
    low_depth = resize_array(depth, (height // 2, width // 2), resample="area")
    rendered = lens(low, low_depth, strength=10.0, focus_disparity=0.9, highlight_boost=0.0)
    finished = finish_full_resolution(image, low, rendered)
    bicubic = np.clip(resize_array(rendered, (height, width)), 0, 1)
    assert finished.shape == image.shape and finished.dtype == np.float32
    # the in-focus subject keeps its pixel-fine texture (a plain upscale loses it)
    assert psnr(finished, image, subject) > 40.0 > psnr(bicubic, image, subject) + 15.0
    # and the whole picture is close to rendering at full resolution, also just outside the subject (no halo)
    ring = ~subject & (gaussian_filter(subject.astype(float), 6) > 0.02)
    assert psnr(finished, truth) > 40.0 and psnr(finished, truth) > psnr(bicubic, truth) + 10.0
    assert psnr(finished, truth, ring) > psnr(bicubic, truth, ring)


def test_guided_upsample_of_a_flat_target_stays_flat_and_same_size_is_identity() -> None:
    image, _, _ = scene(90, 120)
    low = np.clip(resize_array(image, (45, 60), resample="area"), 0, 1)
    flat = np.full((45, 60, 3), 0.3, np.float32)
    np.testing.assert_allclose(guided_upsample(low, flat, image), 0.3, atol=1e-3)
    np.testing.assert_array_equal(finish_full_resolution(low, low, flat), flat)
    with pytest.raises(InputError, match="differ in size"):
        finish_full_resolution(image, low, flat[:10])


def test_cli_render_returns_the_input_size(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    from bokeh_model.cli import main

    photo = tmp_path / "photo.png"
    Image.fromarray((scene(210, 330)[0] * 255).astype(np.uint8)).save(photo)
    out = tmp_path / "out.png"
    code = main(["render", str(photo), str(out), "--method", "lens", "--approximate-depth", "--focus", "160,100"])
    assert code == 0 and Image.open(out).size == (330, 210)
