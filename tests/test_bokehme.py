"""BokehMe (``bokehme``, ``bokehme_classical``): parity with the authors' code, fetch path, CLI, labels.

Fixtures (``tests/fixtures/bokehme/``, written by ``tests/fixtures/make_bokehme_fixtures.py`` from the authors'
own ``neural_renderer.py`` and ``demo.py``): their ARNet/IUNet with seeded RANDOM weights saved in the published
checkpoint format, their outputs, and their demo pipeline's output on a 384x256 scene. The weights reach the
method through the real ``python -m bokeh_model fetch bokehme --url`` path from a 127.0.0.1 server.

The authors' classical renderer is a CUDA kernel (cupy); it cannot run here, so the scatter is compared with a
float64 evaluation of the same formula (``tests/_bokehme_reference.py``), and the end-to-end reference uses that
evaluation as its classical stage.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from _bokehme_reference import scatter_reference
from _local_server import LocalServer

from bokeh_model import InputError, ModelUnavailableError, create_method
from bokeh_model.method_weights import get_weights_spec, installed_weights
from bokeh_model.methods._bokehme_scatter import scatter_cpu, scatter_torch
from bokeh_model.methods.bokehme import BOKEHME_LICENSE, load_networks
from bokeh_model.modeling_bokehme import ARNet, IUNet, load_bokehme_checkpoint, parameter_count

FIXTURES = Path(__file__).parent / "fixtures" / "bokehme"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def fetched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """``python -m bokeh_model fetch bokehme --url http://127.0.0.1:PORT/`` into a fresh cache; its environment."""
    cache = tmp_path_factory.mktemp("bokehme_cache")
    env = {"BOKEH_CACHE": str(cache), "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2"}
    with LocalServer() as server:
        for name in ("arnet.pth", "iunet.pth"):
            server.add(f"/bokehme/{name}", (FIXTURES / name).read_bytes())
        command = ["fetch", "bokehme", "--url", server.url("/bokehme/"), "--no-progress"]
        done = subprocess.run(
            [sys.executable, "-m", "bokeh_model", *command],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert done.returncode == 0, done.stderr
    assert "non-commercial" in done.stdout  # the licence line is shown at fetch
    yield env


def _installed(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BOKEH_CACHE", env["BOKEH_CACHE"])
    folder = installed_weights("bokehme")
    assert folder is not None
    return folder


@pytest.mark.slow
def test_networks_match_the_authors_outputs(fetched: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _installed(fetched, monkeypatch)
    record = json.loads((folder / "source.json").read_text())
    assert record["license"] == BOKEHME_LICENSE and [f["file"] for f in record["files"]] == ["arnet.pth", "iunet.pth"]
    data = np.load(FIXTURES / "networks.npz")
    arnet, iunet = load_networks(folder, torch.device("cpu"))
    image, defocus, coarse = (torch.from_numpy(data[k]) for k in ("image", "defocus", "coarse"))
    gamma = float(data["gamma"])
    with torch.no_grad():
        bokeh, error = arnet(image, defocus, gamma)
        refined = iunet(image, defocus, coarse, gamma)
    np.testing.assert_allclose(bokeh.numpy(), data["arnet_bokeh"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(error.numpy(), data["arnet_error"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(refined.numpy(), data["iunet_bokeh"], rtol=0, atol=1e-5)


def test_the_published_widths_and_a_wrong_checkpoint(tmp_path: Path) -> None:
    assert parameter_count(ARNet()) == 923_664 and parameter_count(IUNet()) == 240_076
    torch.save({"model": IUNet().state_dict()}, tmp_path / "swapped.pth")
    with pytest.raises(ModelUnavailableError, match="ARNet checkpoint"):
        load_bokehme_checkpoint(ARNet(), str(tmp_path / "swapped.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelUnavailableError, match="not a readable"):
        load_bokehme_checkpoint(IUNet(), str(tmp_path / "junk.pth"))


def _scatter_case(height: int = 48, width: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    image = rng.random((height, width, 3), dtype=np.float32) ** 4  # as the pipeline feeds it: photo ** gamma
    ramp = np.linspace(-9.0, 9.0, height, dtype=np.float32)[:, None] * np.ones(width, np.float32)
    defocus = ramp + 1.5 * rng.standard_normal((height, width)).astype(np.float32)
    defocus[10:20, 20:30] = 0.3  # an in-focus patch: the dilated map must carry the blurred neighbours over it
    defocus[30:34, 50:60] = -12.7
    return image, defocus


@pytest.mark.parametrize("threads", [1, 2])
def test_cpu_scatter_matches_the_float64_reference(threads: int) -> None:
    image, defocus = _scatter_case()
    expected, expected_dilate = scatter_reference(image, defocus)
    bokeh, dilate = scatter_cpu(image, defocus, threads=threads)
    np.testing.assert_allclose(bokeh, expected, rtol=0, atol=2e-7)
    np.testing.assert_array_equal(dilate, expected_dilate)


def test_torch_scatter_matches_the_float64_reference() -> None:
    """The PyTorch path (used on CUDA) on the CPU, in float32 as it runs there."""
    image, defocus = _scatter_case(24, 32)
    expected, expected_dilate = scatter_reference(image, defocus)
    bokeh, dilate = scatter_torch(torch.from_numpy(image).permute(2, 0, 1)[None], torch.from_numpy(defocus)[None, None])
    np.testing.assert_allclose(bokeh[0].permute(1, 2, 0).numpy(), expected, rtol=0, atol=2e-6)
    np.testing.assert_array_equal(dilate[0, 0].numpy(), expected_dilate)


def _psnr8(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.round(a * 255.0) - np.round(b * 255.0)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.slow
def test_cli_render_gives_the_authors_output(fetched: dict[str, str], tmp_path: Path) -> None:
    """Done-when of the issue: fetch through --url, then ``render --method bokehme --depth`` on a 384x256 photo."""
    meta = json.loads((FIXTURES / "expected.json").read_text())
    out = tmp_path / "out.png"
    command = [sys.executable, "-m", "bokeh_model", "render", str(FIXTURES / "photo.png"), str(out)]
    command += ["--method", "bokehme", "--depth", str(FIXTURES / "depth.png"), "--device", "cpu"]
    command += ["--strength", str(meta["K"]), "--focus-disparity", repr(meta["disp_focus"])]
    command += ["--gamma", str(meta["gamma"])]
    done = subprocess.run(command, env=fetched, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    expected = cv2.imread(str(FIXTURES / "expected.png"), cv2.IMREAD_UNCHANGED)[..., ::-1] / 65535.0
    result = cv2.imread(str(out))[..., ::-1] / 255.0
    assert result.shape == expected.shape == (256, 384, 3)
    assert _psnr8(result, expected) >= 50.0


@pytest.mark.slow
def test_method_output_equals_the_authors_in_float(fetched: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The same render in process, compared before 8-bit rounding (the reference is stored as 16-bit PNG)."""
    from bokeh_model.images import load_depth, load_image

    _installed(fetched, monkeypatch)
    meta = json.loads((FIXTURES / "expected.json").read_text())
    method = create_method("bokehme", device="cpu")
    out = method(
        load_image(FIXTURES / "photo.png"),
        load_depth(FIXTURES / "depth.png"),
        strength=meta["K"],
        focus_disparity=meta["disp_focus"],
        gamma=meta["gamma"],
    )
    expected = cv2.imread(str(FIXTURES / "expected.png"), cv2.IMREAD_UNCHANGED)[..., ::-1] / 65535.0
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5)  # 16-bit step 1.5e-5: rounding + float32


def test_without_weights_full_is_unavailable_and_classical_runs() -> None:
    full = create_method("bokehme", device="cpu")
    ok, why = full.availability()
    assert not ok and "python -m bokeh_model fetch bokehme" in why
    rng = np.random.default_rng(0)
    image = rng.random((20, 24, 3), dtype=np.float32)
    depth = np.tile(np.linspace(0, 1, 20, dtype=np.float32)[:, None], (1, 24))
    with pytest.raises(ModelUnavailableError, match="fetch bokehme"):
        full(image, depth)
    classical = create_method("bokehme_classical", device="cpu")
    assert classical.availability() == (True, "")
    assert "ONLY" in classical.description and "not the full BokehMe" in classical.description
    out = classical(image, depth, strength=12, focus_disparity=0.5)
    assert out.shape == image.shape and np.abs(out - image).max() > 0.01
    with pytest.raises(InputError, match="gamma"):
        classical(image, depth, gamma=7)


def test_focus_is_normalised_with_the_depth_map() -> None:
    """A map spanning 0.2..0.6 is stretched to 0..1 as demo.py does, and the focus moves with it: the render equals
    that of the stretched map focused at the stretched value."""
    rng = np.random.default_rng(1)
    image = rng.random((32, 40, 3), dtype=np.float32)
    depth = np.full((32, 40), 0.2, np.float32)
    depth[8:24, 10:30] = 0.6
    depth[0, :] = 0.4
    method = create_method("bokehme_classical", device="cpu")
    out = method(image, depth, strength=40, focus_disparity=0.4)
    stretched = method(image, (depth - 0.2) / 0.4, strength=40, focus_disparity=0.5)
    np.testing.assert_allclose(out, stretched, rtol=0, atol=1e-5)
    assert np.abs(out - image).mean() > 0.05


def test_weights_spec_names_the_authors_files() -> None:
    spec = get_weights_spec("bokehme")
    assert spec.source == "https://github.com/JuewenPeng/BokehMe"
    urls = [f.url for f in spec.files()]
    assert urls == [
        "https://raw.githubusercontent.com/JuewenPeng/BokehMe/main/checkpoints/arnet.pth",
        "https://raw.githubusercontent.com/JuewenPeng/BokehMe/main/checkpoints/iunet.pth",
    ]
    assert "MIT" in spec.license and "non-commercial" in spec.license and "CVPR 2022" in spec.citation


def test_onnx_export_matches_eager_at_other_sizes(tmp_path: Path) -> None:
    import onnxruntime as ort

    from bokeh_model.modeling_bokehme import export_onnx

    torch.manual_seed(3)
    arnet, iunet = ARNet().eval(), IUNet().eval()
    arnet_path, iunet_path = export_onnx(arnet, iunet, tmp_path)
    rng = np.random.default_rng(3)
    image = rng.random((1, 3, 37, 51), dtype=np.float32)
    defocus = rng.uniform(-1, 1, (1, 1, 37, 51)).astype(np.float32)
    coarse = rng.random((1, 3, 10, 13), dtype=np.float32)  # not the folded size: the resize runs
    gamma = np.array(0.75, np.float32)
    cpu = ["CPUExecutionProvider"]
    got_a = ort.InferenceSession(str(arnet_path), providers=cpu).run(
        None, {"image": image, "defocus": defocus, "gamma": gamma}
    )
    got_i = ort.InferenceSession(str(iunet_path), providers=cpu).run(
        None, {"image": image, "defocus": defocus, "coarse": coarse, "gamma": gamma}
    )
    with torch.no_grad():
        want_a = arnet(torch.from_numpy(image), torch.from_numpy(defocus), 0.75)
        want_i = iunet(torch.from_numpy(image), torch.from_numpy(defocus), torch.from_numpy(coarse), 0.75)
    for got, want in zip([*got_a, *got_i], [*want_a, want_i], strict=True):
        np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=2e-5)


def test_the_render_tab_offers_bokehme_controls() -> None:
    """Through the registry alone: blur amount K as the main slider, gamma under Advanced, focus by clicking."""
    import gradio as gr

    from space.config import SpaceSettings
    from space.render_tab import build_render_tab

    with gr.Blocks() as demo:
        build_render_tab(SpaceSettings())
    sliders = {b.elem_id: b for b in demo.blocks.values() if isinstance(b, gr.Slider)}
    for name in ("bokehme", "bokehme_classical"):
        strength, gamma = sliders[f"{name}-strength"], sliders[f"{name}-gamma"]
        assert (strength.minimum, strength.maximum, strength.value) == (0.0, 120.0, 60.0)
        assert (gamma.minimum, gamma.maximum, gamma.value) == (1.0, 5.0, 4.0)
        assert f"{name}-focus_disparity" not in sliders  # set by a click on the photo


def test_a_photo_too_small_for_the_networks_scale_is_an_input_error() -> None:
    method = create_method("bokehme", weights=str(FIXTURES), device="cpu")
    image = np.full((8, 8, 3), 0.5, np.float32)
    depth = np.tile(np.linspace(0, 1, 8, dtype=np.float32)[:, None], (1, 8))
    with pytest.raises(InputError, match="too small for BokehMe.*lower the blur amount K"):
        method(image, depth, strength=60, focus_disparity=0)
    assert method(image, depth, strength=8, focus_disparity=0).shape == image.shape


class _NotAllowed:
    """Any other object in a checkpoint: unpickling it would run code, so it is refused."""


def test_checkpoints_may_carry_training_options_but_no_other_objects(tmp_path: Path) -> None:
    import argparse

    state = IUNet().state_dict()
    extras = {"args": argparse.Namespace(lr=1e-4), "best_psnr": np.float64(30.1), "epoch": 7, "hist": np.zeros(3)}
    torch.save({"model": state, **extras}, tmp_path / "training.pth")
    loaded = load_bokehme_checkpoint(IUNet(), str(tmp_path / "training.pth"))
    assert torch.equal(loaded.state_dict()["conv0.conv.weight"], state["conv0.conv.weight"])
    torch.save({"model": state, "thing": _NotAllowed()}, tmp_path / "other.pth")
    with pytest.raises(ModelUnavailableError, match="not a readable"):
        load_bokehme_checkpoint(IUNet(), str(tmp_path / "other.pth"))


def test_a_git_lfs_pointer_is_named_as_such(tmp_path: Path) -> None:
    pointer = "version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 3700615\n"
    (tmp_path / "arnet.pth").write_text(pointer)
    with pytest.raises(ModelUnavailableError, match="Git LFS pointer.*media.githubusercontent.com"):
        load_bokehme_checkpoint(ARNet(), str(tmp_path / "arnet.pth"))
