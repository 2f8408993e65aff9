"""Scoring at the speed of its kernels: several profiles in one pass, 8-bit levels scored without float copies, the
exact integer kernel of the dmshn profile, external PNGs copied instead of re-encoded, batched LPIPS."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import structural_similarity

from bokeh_model.images import load_image, load_image_levels
from bokeh_model.lpips_trunk import ALEXNET_FILE
from evaluation.metrics import LPIPSBatch, get_profile, lpips_distance, score_levels, score_pair
from evaluation.psnr_ssim import dmshn_levels, psnr_dmshn, ssim_dmshn
from evaluation.run import main

SYNTH = ["--synthetic-scenes", "3", "--synthetic-size", "128x96", "--warmup", "0"]


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("BOKEH_EVAL_CACHE", str(tmp_path_factory.getbasetemp() / "synthetic-cache"))
    import torch

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path_factory.getbasetemp() / "empty-hub"))


def _pair(shape: tuple[int, ...], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    target = rng.integers(0, 256, shape, dtype=np.uint8)
    pred = np.clip(target.astype(np.int16) + rng.integers(-25, 26, shape), 0, 255).astype(np.uint8)
    pred[: shape[0] // 3] = target[: shape[0] // 3]  # identical rows and flat areas: zero variances
    pred[-8:], target[-8:] = 200, 200
    return pred, target


@pytest.mark.parametrize("shape", [(96, 128, 3), (75, 61, 3), (7, 9, 3), (40, 33)])
def test_dmshn_kernel_equals_scikit_image(shape):
    pred, target = _pair(shape)
    psnr_value, ssim_value = dmshn_levels(pred, target)
    channel_axis = -1 if len(shape) == 3 else None
    reference = structural_similarity(
        target.astype(np.float64), pred.astype(np.float64), data_range=255.0, channel_axis=channel_axis
    )
    assert abs(ssim_value - reference) <= 1e-12
    assert abs(ssim_dmshn(pred / 255.0, target / 255.0) - reference) <= 1e-12
    # the PSNR from exact integer sums is the float function's value, bit for bit
    assert psnr_value == psnr_dmshn(pred / 255.0, target / 255.0)


@pytest.mark.parametrize("profile", ["pynet", "dmshn"])
@pytest.mark.parametrize("shape", [(160, 224, 3), (97, 131, 3)])
def test_scores_of_levels_equal_the_float_path(profile, shape):
    pred, target = _pair(shape, seed=3)
    fast = score_levels(pred, target, profile)
    slow = score_pair(pred / 255.0, target / 255.0, profile)
    assert abs(fast["psnr"] - slow["psnr"]) <= 1e-12
    assert abs(fast["ssim"] - slow["ssim"]) <= 1e-12
    assert score_levels(target, target, profile)["psnr"] == float("inf")


def _encoded(array: np.ndarray, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_load_image_levels_is_load_image_times_255_or_none():
    rgb = _pair((20, 30, 3))[0]
    for data in (_encoded(rgb, "PNG"), _encoded(rgb, "JPEG", quality=90), _encoded(rgb[..., 0], "PNG")):
        levels = load_image_levels(data)
        assert levels is not None and levels.dtype == np.uint8 and levels.shape == (20, 30, 3)
        assert np.array_equal(np.round(load_image(data).astype(np.float64) * 255.0), levels)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])
    rotated = Image.fromarray(rgb)
    exif = rotated.getexif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    rotated.save(buffer, format="JPEG", exif=exif.tobytes())
    deep = Image.fromarray(np.zeros((4, 5), np.uint16))
    for data in (_encoded(rgba, "PNG"), buffer.getvalue(), _encoded(np.asarray(deep), "PNG")):
        assert load_image_levels(data) is None  # alpha, EXIF rotation, 16-bit: the float path reads these


def _predictions(folder: Path, sizes: dict[str, tuple[int, int]], seed: int = 0, npy: bool = False) -> Path:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for sample_id, (height, width) in sizes.items():
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        if npy:
            np.save(folder / f"{sample_id}.npy", pixels / 255.0 + rng.normal(0, 1e-3, pixels.shape))
        else:
            (folder / f"{sample_id}.png").write_bytes(_encoded(pixels, "PNG"))
    return folder


def _random_trunk(hub: Path) -> None:
    import torch
    import torchvision

    (hub / "checkpoints").mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet().state_dict(), hub / "checkpoints" / ALEXNET_FILE)


def test_one_pass_under_both_profiles_equals_separate_runs(tmp_path, monkeypatch):
    """Numbers of ``--profile pynet,dmshn`` are byte-identical to one run per profile (LPIPS included, with a
    random stand-in trunk: plumbing only), and external PNGs are copied into the run folder as they are."""
    import torch

    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))
    _random_trunk(hub)
    sizes = {str(i): (96, 128) for i in range(3)}
    png = _predictions(tmp_path / "png", sizes)
    npy = _predictions(tmp_path / "npy", sizes, seed=1, npy=True)  # not 8-bit: the float path
    common = [*SYNTH, "--methods", "none", "--predictions", f"png={png}", "--predictions", f"npy={npy}"]
    common += ["--allow-unofficial-lpips", "--device", "cpu"]
    both = tmp_path / "both"
    assert main([*common, "--profile", "pynet,dmshn", "--out", str(both)]) == 0
    for profile in ("pynet", "dmshn"):
        alone = tmp_path / profile
        assert main([*common, "--profile", profile, "--out", str(alone)]) == 0
        assert (both / profile / "per_image.csv").read_bytes() == (alone / "per_image.csv").read_bytes()
        one = json.loads((both / profile / "run.json").read_text())
        other = json.loads((alone / "run.json").read_text())
        assert one["profile"] == profile and one["methods"] == other["methods"]
        assert one["dataset"]["fingerprint"] == other["dataset"]["fingerprint"]
        assert (both / profile / "table.md").is_file() and not (both / "run.json").exists()
    # the PNGs were copied byte for byte, not decoded and re-encoded
    for sample_id in sizes:
        assert (both / "predictions" / "png" / f"{sample_id}.png").read_bytes() == (
            png / f"{sample_id}.png"
        ).read_bytes()
    assert (both / "targets").is_dir() and (both / "inputs").is_dir()


def test_no_pair_files_and_bad_profiles(tmp_path, capsys):
    preds = _predictions(tmp_path / "p", {str(i): (96, 128) for i in range(3)})
    base = [*SYNTH, "--methods", "none", "--predictions", f"p={preds}", "--no-lpips"]
    out = tmp_path / "r"
    assert main([*base, "--no-pair-files", "--out", str(out)]) == 0
    assert not (out / "targets").exists() and not (out / "inputs").exists()
    record = json.loads((out / "run.json").read_text())
    assert set(record["dataset"]["fingerprint"]["target_sha256"]) == {"0", "1", "2"}
    for bad in ("pynet,pynet", "pynet,nope", ","):
        assert main([*base, "--profile", bad, "--out", str(tmp_path / "bad")]) == 2
        assert "profile" in capsys.readouterr().err


def test_lpips_batches_equal_single_pairs():
    import lpips
    import torch

    torch.manual_seed(0)
    model = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False).eval()
    profile = get_profile("pynet")
    pairs = [_pair((128, 160, 3), seed) for seed in range(3)] + [_pair((136, 150, 3), 9)]
    batch = LPIPSBatch(model, profile, size=2)
    rows = [{"method": "m"} for _ in pairs]
    for row, (pred, target) in zip(rows, pairs, strict=True):
        batch.add(row, pred, target)
    batch.flush()
    for row, (pred, target) in zip(rows, pairs, strict=True):
        single = lpips_distance(profile.crop(pred / 255.0), profile.crop(target / 255.0), model=model)
        assert row["lpips"] == pytest.approx(single, rel=1e-5, abs=1e-7)


def test_the_backend_that_rendered_is_recorded(tmp_path):
    """PyNET's backend="auto" resolves to a concrete backend per machine; run.json says which one ran."""
    from bokeh_model.registry import Method, registered_methods

    class _Backed(Method):
        name = "eval_test_backed"
        description = "test-only method that reports an execution backend"
        needs_depth = False
        last_backend = None

        def render(self, image, depth):
            self.last_backend = "openvino-stand-in"
            return image * 0.9

    with registered_methods(_Backed):
        out = tmp_path / "r"
        assert main([*SYNTH, "--methods", "eval_test_backed", "--no-lpips", "--out", str(out)]) == 0
    method = json.loads((out / "run.json").read_text())["methods"]["eval_test_backed"]
    assert method["backend"] == "openvino-stand-in"


def test_the_portal_scores_a_submission_in_one_pass(tmp_path, monkeypatch):
    """One evaluation call per submission for both profiles (each image decoded once), with the same numbers as
    separate runs; the split's targets are copied once, not per submission."""
    from _portal_testing import ALICE, META, build_val294_like, good_zip, make_portal, prediction_arrays

    from evaluation.portal import service
    from evaluation.runner import evaluate_predictions

    dataset = build_val294_like(tmp_path / "ebb")
    arrays = prediction_arrays(dataset)
    portal = make_portal(tmp_path, dataset)
    calls = []
    original = service.score_with_evaluation

    def counting(*args, **kwargs):
        calls.append((list(args[3]), kwargs.get("pair_files")))
        return original(*args, **kwargs)

    monkeypatch.setattr(service, "score_with_evaluation", counting)
    first = portal.submit(good_zip(tmp_path / "a.zip", arrays), META, ALICE)
    portal.process_next()
    second = portal.submit(good_zip(tmp_path / "b.zip", prediction_arrays(dataset, shift=3)), META, ALICE)
    portal.process_next()
    assert calls == [(["pynet", "dmshn"], True), (["pynet", "dmshn"], False)]
    assert portal.status(second)["status"] == "scored" and (portal.root / "targets" / "val294").is_dir()
    folder = tmp_path / "preds"
    folder.mkdir()
    for sample_id, array in arrays.items():
        Image.fromarray(array).save(folder / f"{sample_id}.png")
    for profile in ("pynet", "dmshn"):
        alone = evaluate_predictions(
            str(dataset), "val294", folder, profile=profile, out_dir=tmp_path / profile, lpips=False, device="cpu"
        )
        stored = portal.store.result(first, profile)["run"]["methods"]["submission"]["metrics"]
        assert stored == alone["methods"]["submission"]["metrics"]
