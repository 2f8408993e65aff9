"""Depth: a tiny random DPT through the real transformers loading path, offline; approximate depth; CLIs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from _tiny_models import save_tiny_dpt
from PIL import Image

from bokeh_model import InputError, ModelUnavailableError
from bokeh_model.cli import main
from bokeh_model.depth import (
    DEFAULT_DEPTH_MODEL,
    DepthEstimator,
    approximate_depth,
    default_depth_model,
    depth_model_status,
    focus_disparity_at,
    get_depth_estimator,
    normalize_disparity,
    to_pynet_depth,
)
from bokeh_model.pynet import to_pynet_depth as pynet_to_pynet_depth


@pytest.fixture(scope="module")
def tiny_dpt(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A random 170k-parameter DPT saved like a hub checkpoint (see docs/environment.md); not a real model."""
    return str(save_tiny_dpt(tmp_path_factory.mktemp("tiny-dpt")))


@pytest.fixture()
def photo() -> np.ndarray:
    rng = np.random.default_rng(0)
    image = np.full((90, 120, 3), (0.2, 0.5, 0.3), np.float32)
    image += rng.normal(0, 0.03, image.shape).astype(np.float32)
    yy, xx = np.mgrid[0:90, 0:120]
    image[((yy - 45) / 30) ** 2 + ((xx - 60) / 18) ** 2 < 1] = (0.9, 0.3, 0.6)  # a magenta subject
    return np.clip(image, 0, 1)


def test_default_model_id(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (os.environ.get("BOKEH_DEPTH_MODEL") or "Intel/dpt-hybrid-midas") == DEFAULT_DEPTH_MODEL
    monkeypatch.setenv("BOKEH_DEPTH_MODEL", "/models/my-dpt")
    assert default_depth_model() == "/models/my-dpt"
    monkeypatch.setenv("BOKEH_DEPTH_MODEL", " ")
    assert default_depth_model() == "Intel/dpt-hybrid-midas"


def test_status_of_local_folder_and_missing_models(tiny_dpt: str, tmp_path: Path) -> None:
    assert depth_model_status(tiny_dpt) == (True, "")
    ok, reason = depth_model_status("Intel/dpt-hybrid-midas")
    assert not ok and "Intel/dpt-hybrid-midas" in reason and "hf download" in reason
    (tmp_path / "config.json").write_text("{}")
    ok, reason = depth_model_status(str(tmp_path))
    assert not ok and "model.safetensors" in reason and "preprocessor_config.json" in reason
    ok, reason = depth_model_status(str(tmp_path / "nowhere" / "dpt"))
    assert not ok and "does not exist" in reason


def test_tiny_dpt_estimates_normalised_disparity_at_photo_size(tiny_dpt: str, photo: np.ndarray) -> None:
    estimator = DepthEstimator(tiny_dpt, device="cpu")
    disparity = estimator.estimate(photo)
    assert disparity.shape == photo.shape[:2] and disparity.dtype == np.float32
    assert disparity.min() == pytest.approx(0.0) and disparity.max() == pytest.approx(1.0)
    assert np.isfinite(disparity).all()


def test_depth_is_cached_by_content(tiny_dpt: str, photo: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    estimator = DepthEstimator(tiny_dpt, device="cpu", cache_size=2)
    calls = []
    original = estimator._predict
    monkeypatch.setattr(estimator, "_predict", lambda image: calls.append(1) or original(image))
    first = estimator.estimate(photo)
    again = estimator.estimate(photo.copy())  # same pixels, another array
    np.testing.assert_array_equal(first, again)
    assert len(calls) == 1
    again[:] = 0  # callers get copies
    np.testing.assert_array_equal(estimator.estimate(photo), first)
    estimator.estimate(photo[::-1].copy())
    estimator.estimate(photo[:, ::-1].copy())
    estimator.estimate(photo)  # evicted (LRU of 2): computed again
    assert len(calls) == 4


def test_shared_estimator(tiny_dpt: str) -> None:
    assert get_depth_estimator(tiny_dpt, "cpu") is get_depth_estimator(tiny_dpt, "cpu")
    assert get_depth_estimator(None).model_id == DEFAULT_DEPTH_MODEL


def test_missing_model_raises_clear_error(photo: np.ndarray) -> None:
    with pytest.raises(ModelUnavailableError, match=r"Intel/dpt-hybrid-midas.*hf download"):
        DepthEstimator("Intel/dpt-hybrid-midas", device="cpu").estimate(photo)
    with pytest.raises(ModelUnavailableError, match="does not exist"):
        DepthEstimator("/no/such/folder", device="cpu").estimate(photo)


def test_normalize_disparity() -> None:
    np.testing.assert_allclose(normalize_disparity(np.array([[2.0, 4.0], [3.0, 2.0]])), [[0, 1], [0.5, 0]])
    assert normalize_disparity(np.ones((2, 2))).max() == 0
    with pytest.raises(InputError, match="NaN"):
        normalize_disparity(np.array([[np.nan, 1.0]]))


def test_to_pynet_depth_is_reused() -> None:
    assert to_pynet_depth is pynet_to_pynet_depth


def test_focus_disparity_at_is_robust() -> None:
    depth = np.full((50, 60), 0.3, np.float32)
    depth[25, 30] = 1.0  # an outlier under the click
    assert focus_disparity_at(depth, 30, 25) == pytest.approx(0.3)
    depth[:, 40:] = 0.9
    assert focus_disparity_at(depth, 55, 10) == pytest.approx(0.9)
    with pytest.raises(InputError, match=r"outside the 60x50"):
        focus_disparity_at(depth, 60, 10)
    with pytest.raises(InputError, match="outside"):
        focus_disparity_at(depth, -1, 0)


def test_approximate_depth_finds_the_clicked_subject(photo: np.ndarray) -> None:
    depth = approximate_depth(photo, (60, 45))
    assert depth.shape == photo.shape[:2] and depth.dtype == np.float32
    assert depth.min() >= 0.0 and depth.max() <= 1.0
    assert depth[45, 60] == pytest.approx(0.8, abs=0.05)  # the subject
    assert depth[5, 5] < 0.1 and depth[5, 115] < 0.1  # far background at the top
    assert depth[85, 5] > depth[50, 5]  # ground plane rises towards the bottom
    np.testing.assert_array_equal(approximate_depth(photo), approximate_depth(photo, (60, 45)))
    with pytest.raises(InputError, match="outside"):
        approximate_depth(photo, (500, 10))
    flat = approximate_depth(np.full((40, 40, 3), 0.5, np.float32))  # GrabCut has nothing to separate
    assert np.isfinite(flat).all()


def test_depth_cli(tiny_dpt: str, tmp_path: Path, photo: np.ndarray, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "photo.png"
    Image.fromarray(np.round(photo * 255).astype(np.uint8)).save(source)
    out = tmp_path / "depth.png"
    assert main(["depth", str(source), str(out), "--depth-model", tiny_dpt, "--device", "cpu"]) == 0
    with Image.open(out) as saved:
        assert saved.size == (120, 90) and saved.mode.startswith("I")
    assert main(["depth", str(source), str(tmp_path / "p.png"), "--depth-model", tiny_dpt, "--pynet"]) == 0
    with Image.open(tmp_path / "p.png") as saved:
        assert saved.size == (60, 45) and saved.mode == "L"
    assert main(["depth", str(source), str(tmp_path / "a.png"), "--approximate", "--focus", "60,45"]) == 0
    assert "APPROXIMATE" in capsys.readouterr().out
    assert main(["depth", str(source), str(tmp_path / "m.png"), "--depth-model", "Intel/dpt-hybrid-midas"]) == 3
    assert "hf download" in capsys.readouterr().err
    (tmp_path / "junk.png").write_bytes(b"not an image")
    assert main(["depth", str(tmp_path / "junk.png"), str(tmp_path / "j.png"), "--approximate"]) == 2


@pytest.mark.slow
def test_render_cli_with_focus_and_depth_sources(
    tiny_dpt: str, tmp_path: Path, photo: np.ndarray, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "photo.png"
    Image.fromarray(np.round(photo * 255).astype(np.uint8)).save(source)
    depth = np.full((45, 60), 40, np.uint8)  # half size: resized to the photo
    depth[10:35, 20:40] = 220
    Image.fromarray(depth).save(tmp_path / "depth.png")
    out = tmp_path / "out.png"
    base = ["render", str(source), str(out), "--method", "lens", "--strength", "8"]
    assert main([*base, "--focus", "60,45", "--depth", str(tmp_path / "depth.png")]) == 0
    result = np.asarray(Image.open(out), dtype=np.float32) / 255
    assert np.abs(result[40:50, 55:65] - photo[40:50, 55:65]).max() <= 2 / 255  # the clicked subject is sharp
    assert main([*base, "--focus", "60,45", "--depth-model", tiny_dpt, "--device", "cpu"]) == 0
    assert main([*base, "--focus", "60,45", "--approximate-depth"]) == 0
    assert "APPROXIMATE" in capsys.readouterr().out
    assert main([*base, "--focus", "60,45"]) in (0, 3)  # default model: 3 unless it is cached here
    assert main([*base, "--depth-model", "Intel/dpt-hybrid-midas"]) == 3
    assert "Intel/dpt-hybrid-midas" in capsys.readouterr().err
    assert main([*base, "--focus", "600,45", "--approximate-depth"]) == 2
    assert main([*base, "--focus", "1;2", "--approximate-depth"]) == 2
    assert main([*base, "--focus", "1,2", "--focus-disparity", "0.5", "--approximate-depth"]) == 2
    assert main([*base, "--blades", "2", "--approximate-depth"]) == 2
    np.save(tmp_path / "nan.npy", np.full((90, 120), np.nan, np.float32))
    assert main([*base, "--depth", str(tmp_path / "nan.npy")]) == 2
    assert "NaN" in capsys.readouterr().err
    assert main(["render", str(source), str(out), "--method", "gaussian", "--approximate-depth"]) == 0


@pytest.mark.parametrize("command", ["render", "depth"])
def test_cli_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "--focus" in capsys.readouterr().out
