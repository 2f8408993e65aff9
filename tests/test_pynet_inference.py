"""PyNET inference wrapper: pre-processing convention, weights handling, CLI errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bokeh_model import ModelUnavailableError, PyNET, create_method, load_pynet, predict, to_pynet_depth
from bokeh_model.cli import main
from bokeh_model.errors import EXIT_BAD_INPUT, EXIT_MISSING
from bokeh_model.pynet import run_pynet, weights_status

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Randomly initialised weights saved in the real format. Test plumbing only: not a trained model."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("pynet_random_weights")
    PyNET().save_pretrained(folder)
    return folder


def test_depth_follows_the_authors_convention() -> None:
    depth = np.linspace(0.2, 0.6, 40 * 60, dtype=np.float32).reshape(40, 60)
    converted = to_pynet_depth(depth, (20, 30))
    assert converted.shape == (20, 30)
    # Already in [0, 1] (e.g. an 8-bit PNG / 255): fed unchanged, as the authors' loader does; no stretch.
    assert abs(converted.min() - 0.2) < 0.01 and abs(converted.max() - 0.6) < 0.01
    stretched = to_pynet_depth(depth * 7.0 + 3.0, (20, 30))  # no fixed range (raw model output): min-max
    assert stretched.min() == 0.0 and stretched.max() == 1.0
    np.testing.assert_allclose(converted * 255.0, np.round(converted * 255.0), atol=1e-4)  # 8-bit levels
    assert converted[-1].mean() > converted[0].mean()  # near (large disparity) stays bright


def test_missing_weights_say_how_to_provide_them(tmp_path: Path) -> None:
    ok, reason = weights_status(None)
    assert not ok and "--weights" in reason and "convert-tf" in reason
    assert "python -m bokeh_model fetch pynet" in reason
    with pytest.raises(ModelUnavailableError, match="PyNET weights are not installed"):
        load_pynet(None)
    with pytest.raises(ModelUnavailableError, match="lacks"):
        load_pynet(tmp_path)
    ok, reason = weights_status("someone/pynet-bokeh")
    assert not ok and "not in the local Hugging Face cache" in reason
    method = create_method("pynet")
    assert method.availability()[0] is False
    with pytest.raises(ModelUnavailableError):
        method(np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), np.float32))


def test_unreachable_hub_id_is_a_clear_error() -> None:
    with pytest.raises(ModelUnavailableError, match="Could not load PyNET weights 'nobody/no-such-pynet'"):
        load_pynet("nobody/no-such-pynet")


def test_predict_returns_the_photo_size(weights_dir: Path) -> None:
    model = load_pynet(weights_dir, device="cpu")
    assert load_pynet(weights_dir, device="cpu") is model  # loaded once, shared
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (75, 101, 3), dtype=np.uint8))
    depth = Image.fromarray(rng.integers(0, 255, (38, 51), dtype=np.uint8))
    out = predict(model, photo, depth)
    assert out.size == photo.size and out.mode == "RGB"
    preview = predict(model, photo, depth, max_side=48)
    assert preview.size == photo.size


def test_channels_last_backend_leaves_the_cached_model_as_loaded(weights_dir: Path) -> None:
    """The channels_last backend runs a converted copy: the model load_pynet shares keeps its memory format."""
    model = load_pynet(weights_dir, device="cpu")
    before = {name: (p.data_ptr(), p.stride()) for name, p in model.named_parameters()}
    rng = np.random.default_rng(3)
    image, depth = rng.random((70, 90, 3), dtype=np.float32), rng.random((35, 45), dtype=np.float32)
    info: dict = {}
    fast = run_pynet(model, image, depth, level=3, backend="channels_last", info=info)
    assert info["backend"] == "channels_last"
    assert load_pynet(weights_dir, device="cpu") is model
    assert {name: (p.data_ptr(), p.stride()) for name, p in model.named_parameters()} == before
    kernels = [p for p in model.parameters() if p.ndim == 4]
    assert kernels and all(p.is_contiguous() for p in kernels)
    assert not all(p.is_contiguous(memory_format=torch.channels_last) for p in kernels)
    eager = run_pynet(model, image, depth, level=3, backend="eager")
    assert np.abs(fast - eager).max() <= 1e-4


def test_registered_method_runs_with_weights(weights_dir: Path) -> None:
    method = create_method("pynet", weights=str(weights_dir), device="cpu")
    assert method.availability() == (True, "")
    image = np.random.default_rng(1).random((64, 64, 3), dtype=np.float32)
    depth = np.random.default_rng(2).random((64, 64), dtype=np.float32)
    out = method(image, depth, disable_levels="5+", level=2)
    assert out.shape == image.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    with pytest.raises(Exception, match="needs a depth map"):
        method(image, None)


def test_cli_missing_weights_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo = tmp_path / "photo.png"
    Image.new("RGB", (32, 32), (120, 60, 30)).save(photo)
    code = main(["render", str(photo), str(tmp_path / "out.png"), "--method", "pynet"])
    assert code == EXIT_MISSING
    assert "PyNET weights are not installed" in capsys.readouterr().err
    assert not (tmp_path / "out.png").exists()


def test_cli_unreadable_image_exits_2(tmp_path: Path, weights_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"this is not a jpeg")
    code = main(["render", str(broken), str(tmp_path / "out.png"), "--weights", str(weights_dir)])
    assert code == EXIT_BAD_INPUT
    assert "broken.jpg is not an image file" in capsys.readouterr().err
    code = main(["render", str(tmp_path / "missing.png"), str(tmp_path / "out.png"), "--weights", str(weights_dir)])
    assert code == EXIT_BAD_INPUT
    assert "not found" in capsys.readouterr().err


def test_cli_renders_with_weights(tmp_path: Path, weights_dir: Path) -> None:
    photo, depth = tmp_path / "photo.jpg", tmp_path / "depth.png"
    Image.new("RGB", (96, 64), (200, 100, 50)).save(photo)
    Image.fromarray(np.tile(np.arange(48, dtype=np.uint8)[:, None] * 5, (1, 48))).save(depth)
    code = main(
        [
            "render",
            str(photo),
            str(tmp_path / "out.png"),
            "--weights",
            str(weights_dir),
            "--depth",
            str(depth),
            "--device",
            "cpu",
            "--max-side",
            "64",
        ]
    )
    assert code == 0
    assert Image.open(tmp_path / "out.png").size == (96, 64)


def test_cli_subprocess_help_and_exit_code(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "bokeh_model", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and "render" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "bokeh_model", "render", str(tmp_path / "nope.png"), str(tmp_path / "o.png")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode in (EXIT_BAD_INPUT, EXIT_MISSING)
    assert result.stderr.startswith("error: ")


def test_cli_says_which_scale_ran(tmp_path: Path, weights_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """PyNET runs at its trained scale (long side 1536, tests/test_pynet_scale.py); a preview is labelled."""
    weights = weights_dir
    photo, depth = tmp_path / "photo.jpg", tmp_path / "depth.png"
    Image.new("RGB", (96, 64), (200, 100, 50)).save(photo)
    Image.fromarray(np.tile(np.arange(48, dtype=np.uint8)[:, None] * 5, (1, 48))).save(depth)
    base = ["render", str(photo), str(tmp_path / "out.png"), "--weights", str(weights), "--depth", str(depth)]
    assert main([*base, "--device", "cpu", "--max-side", "64"]) == 0
    out = capsys.readouterr().out
    assert "PyNET PREVIEW (chosen): photo at 64x43 px" in out and "96x64 px by guided upsampling" in out
    assert Image.open(tmp_path / "out.png").size == (96, 64)
    assert main([*base, "--device", "cpu", "--own-size"]) == 0
    assert "trained scale" not in capsys.readouterr().out
    assert main(["render", str(photo), str(tmp_path / "o.png"), "--method", "gaussian", "--own-size"]) == 2
    assert "--own-size applies to --method pynet only" in capsys.readouterr().err
