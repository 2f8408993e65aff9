"""Level-by-level PyNET training on a tiny synthetic dataset (CPU, 64-px crops), losses, data pipeline, resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

from bokeh_model.cli import main as cli_main
from bokeh_model.errors import InputError, ModelUnavailableError
from bokeh_model.modeling_pynet import PyNET
from bokeh_model.training import (
    DEFAULT_BATCH_SIZES,
    DEFAULT_ITERATIONS,
    PairCrops,
    TrainConfig,
    VGGPerceptual,
    crop_pair,
    level_loss,
    level_sequence,
    load_vgg19_relu5_4,
    open_table,
    parse_per_level,
    ssim_tf,
    train,
    vgg19_weights_path,
)

FIXTURES = Path(__file__).parent / "fixtures"


def _scene(rng: np.random.Generator, size: int) -> Image.Image:
    """A smooth random RGB scene with a few discs, so that blur changes it visibly."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = np.stack([xx, yy, 1 - xx], axis=2) * rng.uniform(0.3, 0.8, 3)
    for _ in range(6):
        cy, cx, r = rng.uniform(0, 1, 2).tolist() + [rng.uniform(0.05, 0.2)]
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 1, 3)
    return Image.fromarray(np.round(image * 255).astype(np.uint8))


def make_dataset(path: Path, train_rows: int = 3, val_rows: int = 2, size: int = 128) -> Path:
    """``save_to_disk`` folder with splits train / val294 and columns id, original, bokeh, depth (half-res)."""
    import datasets

    rng = np.random.default_rng(0)
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "original": datasets.Image(),
            "bokeh": datasets.Image(),
            "depth": datasets.Image(),
        }
    )
    splits = {}
    for split, rows in (("train", train_rows), ("val294", val_rows)):
        records: dict[str, list] = {"id": [], "original": [], "bokeh": [], "depth": []}
        for i in range(rows):
            photo = _scene(rng, size)
            depth = np.tile(np.linspace(0, 255, size // 2, dtype=np.float32)[:, None], (1, size // 2))
            records["id"].append(f"{split}{i}")
            records["original"].append(photo)
            records["bokeh"].append(photo.filter(ImageFilter.GaussianBlur(3)))
            records["depth"].append(Image.fromarray(depth.astype(np.uint8)))
        splits[split] = datasets.Dataset.from_dict(records, features=features)
    datasets.DatasetDict(splits).save_to_disk(str(path))
    return path


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "tiny")


def tiny_config(dataset_dir: Path, out: Path, **overrides) -> TrainConfig:
    values = dict(
        dataset=str(dataset_dir),
        output_dir=out,
        levels=(7, 6),
        iterations={7: 4, 6: 4},
        batch_sizes={7: 2, 6: 2},
        crop_size=64,
        learning_rate=3e-5,
        eval_every=4,
        log_every=1,
        val_split="train",
        val_images=3,
        num_samples=1,
        keep_checkpoints=1,
        workers=0,
        progress=False,
        cpu=True,
    )
    values.update(overrides)
    return TrainConfig(**values)


def fixed_batch_loss(model: PyNET, dataset_dir: Path, level: int) -> float:
    crops = PairCrops(open_table(str(dataset_dir), "train"), level, 64, random=False)
    items = [crops[i] for i in range(len(crops))]
    x = torch.stack([item["input"] for item in items]).float() / 255
    y = torch.stack([item["target"] for item in items]).float() / 255
    with torch.no_grad():
        return level_loss(level, model(x, level=level), y)[0].item()


@pytest.fixture(scope="module")
def two_runs(dataset_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run A stops after 2 of level 7's 4 steps; run B (same command) resumes and trains levels 7 and 6."""
    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("run")
    first = train(tiny_config(dataset_dir, out, stop_after=2))
    after_first = json.loads((out / "level_7" / "latest.json").read_text())
    second = train(tiny_config(dataset_dir, out))
    return {"out": out, "first": first, "second": second, "after_first": after_first}


@pytest.mark.slow
def test_resume_continues_from_the_saved_step(two_runs: dict) -> None:
    out = two_runs["out"]
    assert [(r["level"], r["status"], r["step"]) for r in two_runs["first"]] == [(7, "stopped", 2)]
    assert two_runs["after_first"] == {
        "step": 2,
        "checkpoint": "checkpoint-0000002",
        "done": False,
        "iterations": 4,
        "level": 7,
    }
    second = two_runs["second"]
    assert [(r["level"], r["status"], r["start_step"], r["step"]) for r in second] == [
        (7, "done", 2, 4),
        (6, "done", 0, 4),
    ]
    assert len(second[0]["losses"]) == 2  # only the remaining steps ran
    with open(out / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    train_steps = [(int(r["level"]), int(r["step"])) for r in rows if r["split"] == "train"]
    assert train_steps == [(7, s) for s in range(1, 5)] + [(6, s) for s in range(1, 5)]  # no step twice
    val = [r for r in rows if r["split"] == "val"]
    assert [(int(r["level"]), int(r["step"])) for r in val] == [(7, 0), (7, 2), (7, 4), (6, 0), (6, 4)]
    assert all(float(r["psnr"]) > 5 for r in val)
    assert all(r["ssim"] == "" for r in val if r["level"] == "7")  # 2x2 outputs: too small for SSIM
    state = torch.load(out / "level_7" / "checkpoint-0000004" / "training_state.pt", weights_only=False)
    assert state["step"] == 4
    assert {int(s["step"]) for s in state["optimizer"]["state"].values()} == {4}  # Adam moments were restored
    for level in (7, 6):
        assert json.loads((out / f"level_{level}" / "latest.json").read_text())["done"] is True
        assert (out / f"level_{level}" / "model" / "model.safetensors").is_file()
        assert [p.name for p in (out / f"level_{level}").glob("checkpoint-*")] == ["checkpoint-0000004"]
        assert (out / f"level_{level}" / "samples" / "step_0000004_0_train0.png").is_file()


@pytest.mark.slow
def test_two_levels_reduce_the_loss(two_runs: dict) -> None:
    """Validation on the (centre-cropped, un-augmented) training images: L1 at step 0 vs after training."""
    out = two_runs["out"]
    with open(out / "metrics.csv") as handle:
        val = {(int(r["level"]), int(r["step"])): float(r["l1"]) for r in csv.DictReader(handle) if r["split"] == "val"}
    assert val[(7, 4)] < 0.9 * val[(7, 0)], val
    assert val[(6, 4)] < 0.9 * val[(6, 0)], val
    level7 = PyNET.from_pretrained(str(out / "level_7" / "model"), strict=True)
    level6 = PyNET.from_pretrained(str(out / "level_6" / "model"), strict=True)
    # Level 6 started from level 7's weights and fine-tuned the shared part ...
    assert not torch.equal(level6.enc1.branches[0][0].conv.weight, level7.enc1.branches[0][0].conv.weight)
    # ... while parameters that never reach level 6's output (level 7's head, levels 5..1) kept their values.
    assert torch.equal(level6.l7_head.weight, level7.l7_head.weight)
    assert torch.equal(level6.l3_head.weight, level7.l3_head.weight)
    assert torch.equal(level6.l1_head.bias, torch.full((3,), 0.01))  # still the authors' initial bias


@pytest.mark.slow
def test_completed_levels_are_skipped(two_runs: dict, dataset_dir: Path) -> None:
    results = train(tiny_config(dataset_dir, two_runs["out"]))
    assert [(r["level"], r["status"]) for r in results] == [(7, "skipped"), (6, "skipped")]


def test_level1_loss_terms_match_hand_computed_values() -> None:
    with np.load(FIXTURES / "tf_ops.npz") as data:
        a, b, tf_ssim = data["ssim_a"], data["ssim_b"], data["ssim"]
    out = torch.from_numpy(a).permute(0, 3, 1, 2).requires_grad_(True)
    target = torch.from_numpy(b).permute(0, 3, 1, 2)
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 5, 3)
    vgg = VGGPerceptual(torch.nn.Sequential(conv, torch.nn.ReLU()))  # a stand-in for VGG-19, passed explicitly
    loss, terms = level_loss(1, out, target, vgg)

    l1 = np.abs(a.astype(np.float64) - b).mean()
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])

    def features(images: np.ndarray) -> np.ndarray:
        normalised = torch.from_numpy(((images - mean) / std).astype(np.float32)).permute(0, 3, 1, 2)
        with torch.no_grad():
            return F.relu(F.conv2d(normalised, conv.weight, conv.bias)).numpy().astype(np.float64)

    vgg_mse = np.mean((features(a) - features(b)) ** 2)
    from evaluation.metrics import ssim as eval_ssim

    ssim_numpy = np.mean([eval_ssim(a[i], b[i]) for i in range(len(a))])
    np.testing.assert_allclose(ssim_tf(out, target).detach().numpy(), tf_ssim, atol=2e-5)  # TensorFlow's tf.image.ssim
    np.testing.assert_allclose(ssim_numpy, tf_ssim.mean(), atol=2e-5)
    assert terms["l1"] == pytest.approx(l1, rel=1e-5)
    assert terms["vgg"] == pytest.approx(vgg_mse, rel=1e-4)
    assert terms["ssim_term"] == pytest.approx(1 - tf_ssim.mean(), abs=2e-5)
    expected = 10 * l1 + 0.1 * vgg_mse + 10 * (1 - tf_ssim.mean())
    assert loss.item() == pytest.approx(expected, rel=1e-4)
    loss.backward()  # differentiable end to end
    assert out.grad is not None and out.grad.abs().sum() > 0
    upper, upper_terms = level_loss(2, out, target)
    assert upper.item() == pytest.approx(100 * l1, rel=1e-5) and "vgg" not in upper_terms
    with pytest.raises(InputError, match="VGG"):
        level_loss(1, out, target)


def test_vgg_weights_come_only_from_the_hub_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dataset_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "vgg19-dcbb9e9d.pth"
    assert vgg19_weights_path() == expected
    with pytest.raises(ModelUnavailableError, match=str(expected)):
        load_vgg19_relu5_4()
    config = tiny_config(
        dataset_dir,
        tmp_path / "out",
        levels=(2, 1),
        iterations={2: 1, 1: 1},
        batch_sizes={2: 1, 1: 1},
        from_scratch=True,
    )
    with pytest.raises(ModelUnavailableError, match="vgg19-dcbb9e9d.pth"):
        train(config)  # fails at once, before any level is trained
    assert not (tmp_path / "out" / "level_2").exists()
    code = cli_main(
        [
            "train",
            "--dataset",
            str(dataset_dir),
            "--out",
            str(tmp_path / "cli"),
            "--levels",
            "1",
            "--from-scratch",
            "--no-progress",
        ]
    )
    assert code == 3 and "vgg19-dcbb9e9d.pth" in capsys.readouterr().err
    (expected.parent).mkdir(parents=True)
    expected.write_bytes(b"not a state dict")
    with pytest.raises(ModelUnavailableError, match="not a torchvision VGG-19"):
        load_vgg19_relu5_4()


def test_crops_align_input_and_target() -> None:
    rng = np.random.default_rng(1)
    photo = _scene(rng, 256)
    depth = Image.fromarray(np.tile(np.arange(128, dtype=np.uint16)[None] * 500, (128, 1)).astype(np.uint16))
    # Level 2: the target is the same region as the input at the same (half) resolution.
    x, y = crop_pair(photo, photo, depth, 64, 64, np.random.default_rng(5))
    assert x.shape == (64, 64, 4) and y.shape == (64, 64, 3) and x.dtype == y.dtype == np.uint8
    assert np.abs(x[..., :3].astype(int) - y).mean() < 3  # same pixels (resampling differs only at the edges)
    assert x[..., 3].max() > 100  # 16-bit depth rescaled to 8 bits
    # Level 1: target at twice the input resolution; centre crop without rng.
    x1, y1 = crop_pair(photo, photo, None, 64, 128, None)
    assert x1.shape == (64, 64, 3) and y1.shape == (128, 128, 3)
    down = np.asarray(Image.fromarray(y1).resize((64, 64), Image.Resampling.BICUBIC), dtype=int)
    assert np.abs(x1.astype(int) - down).mean() < 3
    # Photo stored at half resolution already.
    half = photo.resize((128, 128), Image.Resampling.BICUBIC)
    x2, _ = crop_pair(half, photo, None, 64, 128, None)
    np.testing.assert_array_equal(x2, x1)
    with pytest.raises(InputError, match="smaller than the 128x128 crop"):
        crop_pair(photo.resize((200, 200)), photo.resize((200, 200)), None, 128, 128, None)
    with pytest.raises(InputError, match="neither the target's size"):
        crop_pair(photo.resize((100, 90)), photo, None, 64, 64, None)


def test_draws_are_deterministic(dataset_dir: Path) -> None:
    crops = PairCrops(open_table(str(dataset_dir), "train"), 7, 64, random=True, seed=3)
    a, b = crops[10], crops[10]
    assert torch.equal(a["input"], b["input"]) and torch.equal(a["target"], b["target"])
    assert a["input"].shape == (4, 64, 64) and a["target"].shape == (3, 2, 2)
    assert not torch.equal(crops[11]["input"], a["input"]) or crops[11]["id"] != a["id"]


def test_config_parsing_and_validation(dataset_dir: Path, tmp_path: Path) -> None:
    assert parse_per_level("7=10,1=3", DEFAULT_ITERATIONS, "x") == {**DEFAULT_ITERATIONS, 7: 10, 1: 3}
    assert parse_per_level("4", DEFAULT_BATCH_SIZES, "x") == dict.fromkeys(range(7, 0, -1), 4)
    with pytest.raises(InputError, match="LEVEL=N"):
        parse_per_level("7:10", DEFAULT_ITERATIONS, "--iterations")
    assert level_sequence("7-1") == (7, 6, 5, 4, 3, 2, 1) and level_sequence("3,2") == (3, 2)
    for bad, match in (
        ({"crop_size": 100}, "multiple of 32"),
        ({"levels": (6, 7)}, "descending"),
        ({"iterations": {7: 0, 6: 1}}, "iterations for level 7"),
        ({"mixed_precision": "fp8"}, "mixed_precision"),
    ):
        with pytest.raises(InputError, match=match):
            tiny_config(dataset_dir, tmp_path, **bad).validate()
    with pytest.raises(InputError, match="--init-weights"):
        train(tiny_config(dataset_dir, tmp_path / "o", levels=(6,)))
    with pytest.raises(InputError, match="no 'depth' column"):
        PairCrops(open_table(str(dataset_dir), "train").remove_columns("depth"), 7, 64, random=False)


@pytest.mark.slow
def test_bf16_run_from_init_weights(two_runs: dict, dataset_dir: Path, tmp_path: Path) -> None:
    """--mixed-precision bf16 (CPU autocast) and --init-weights: one level-7 step from level 6's model."""
    config = tiny_config(
        dataset_dir,
        tmp_path / "bf16",
        levels=(7,),
        iterations={7: 1},
        batch_sizes={7: 1},
        val_split=None,
        mixed_precision="bf16",
        init_weights=str(two_runs["out"] / "level_6" / "model"),
    )
    (result,) = train(config)
    assert (result["level"], result["status"], result["step"]) == (7, "done", 1)
    assert np.isfinite(result["losses"]).all()
    model = PyNET.from_pretrained(str(tmp_path / "bf16" / "level_7" / "model"), strict=True)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay fp32 under autocast


def test_cli_builds_the_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import bokeh_model.training as train_module

    seen = {}

    def fake_train(config: TrainConfig) -> list[dict]:
        seen["config"] = config
        return [{"level": 7, "status": "done", "step": 5}]

    monkeypatch.setattr(train_module, "train", fake_train)
    code = cli_main(
        [
            "train",
            "--dataset",
            "d",
            "--out",
            str(tmp_path),
            "--levels",
            "7-5",
            "--iterations",
            "7=5,6=4",
            "--batch-size",
            "3",
            "--crop-size",
            "128",
            "--mixed-precision",
            "bf16",
            "--val-split",
            "",
            "--no-depth",
            "--loss-vgg",
            "0.5",
            "--stop-after",
            "9",
        ]
    )
    assert code == 0
    config = seen["config"]
    assert config.levels == (7, 6, 5) and config.iterations[7] == 5 and config.iterations[5] == 20000
    assert config.batch_sizes == dict.fromkeys(range(7, 0, -1), 3) and config.crop_size == 128
    assert config.val_split is None and config.use_depth is False and config.loss_weights.vgg == 0.5
    assert config.mixed_precision == "bf16" and config.stop_after == 9
    assert cli_main(["train", "--dataset", "d", "--out", str(tmp_path), "--iterations", "7:5"]) == 2


def test_training_imports_nothing_from_evaluation() -> None:
    """bokeh_model is the lowest package: training receives its validation metrics, it does not import them."""
    import subprocess
    import sys

    code = (
        "import sys, bokeh_model.training, bokeh_model.commands.train; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('evaluation', 'user_study', 'space')); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1], timeout=300)


def test_default_validation_metrics_match_the_evaluation_metrics() -> None:
    from bokeh_model.training import DEFAULT_METRICS, validation_psnr, validation_ssim
    from evaluation.metrics import psnr, ssim

    assert dict(DEFAULT_METRICS) == {"psnr": validation_psnr, "ssim": validation_ssim}
    rng = np.random.default_rng(4)
    target = rng.random((24, 30, 3))
    output = np.clip(target + rng.normal(0, 0.05, target.shape), 0, 1)
    assert validation_psnr(output, target) == pytest.approx(psnr(output, target), abs=1e-9)
    assert validation_ssim(output, target) == pytest.approx(ssim(output, target), abs=1e-5)
    assert validation_psnr(target, target) == float("inf")
    with pytest.raises(ValueError):
        validation_ssim(target[:8, :8], target[:8, :8])  # under 11x11: left out of the mean


def test_open_table_reads_the_layouts_the_builders_write(dataset_dir: Path, tmp_path: Path) -> None:
    """save_to_disk, the hub layout of `evaluation.ebb build` / `evaluation.pairs build` (data/{split}-*.parquet,
    with or without a card naming the splits) and a single parquet file; a missing split is an InputError."""
    import datasets

    source = datasets.load_from_disk(str(dataset_dir))
    hub = tmp_path / "hub"
    (hub / "data").mkdir(parents=True)
    for split in ("train", "val294"):
        source[split].to_parquet(str(hub / "data" / f"{split}-00000-of-00001.parquet"))
    carded = tmp_path / "pairs"
    (carded / "data").mkdir(parents=True)
    source["train"].to_parquet(str(carded / "data" / "val-00000-of-00001.parquet"))
    (carded / "README.md").write_text(
        "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: val\n    path: data/val-*\n---\n# pairs\n"
    )
    single = hub / "data" / "val294-00000-of-00001.parquet"
    for where, split, rows in (
        (dataset_dir, "train", 3),
        (hub, "train", 3),
        (hub, "val294", 2),
        (carded, "val", 3),
        (single, "anything", 2),
    ):
        table = open_table(str(where), split)
        assert len(table) == rows, (where, split)
        assert table.features["original"].decode is False  # bytes, decoded per item
        item = PairCrops(table, 7, 64, random=False)[0]
        assert item["input"].shape == (4, 64, 64)
    for where, split in ((dataset_dir, "nope"), (hub, "nope"), (carded, "val294")):
        with pytest.raises(InputError, match="split"):
            open_table(str(where), split)
    with pytest.raises(InputError, match="neither an existing path nor a Hugging Face Hub id"):
        open_table(str(tmp_path / "missing" / "x.txt"), "train")


@pytest.mark.slow
def test_train_uses_the_metrics_and_opener_it_is_given(dataset_dir: Path, tmp_path: Path) -> None:
    opened: list[tuple[str, str]] = []

    def opener(source: str, split: str):
        opened.append((source, split))
        return open_table(source, split)

    def mean_abs(output: np.ndarray, target: np.ndarray) -> float:
        return float(np.abs(output - target).mean())

    config = tiny_config(dataset_dir, tmp_path, levels=(7,), iterations={7: 1}, batch_sizes={7: 1})
    (result,) = train(config, metrics={"mae": mean_abs}, open_table=opener)
    assert result["status"] == "done"
    assert opened == [(str(dataset_dir), "train"), (str(dataset_dir), "train")]  # the train split, then val_split
    with open(tmp_path / "metrics.csv") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert "mae" in reader.fieldnames and "psnr" not in reader.fieldnames
    val = [r for r in rows if r["split"] == "val"]
    assert [int(r["step"]) for r in val] == [0, 1] and all(0 < float(r["mae"]) < 1 for r in val)
