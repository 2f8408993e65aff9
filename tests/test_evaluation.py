"""End-to-end tests of evaluation/run.py, the leaderboard and the EBB! builder on tiny data built here."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _tiny_models import save_tiny_dpt
from PIL import Image

from bokeh_model.lpips_trunk import ALEXNET_FILE
from bokeh_model.registry import Method, ParamSpec, registered_methods
from evaluation import leaderboard
from evaluation.run import main

SYNTH = ["--synthetic-scenes", "2", "--synthetic-size", "128x96", "--warmup", "1"]


class _TestBlur(Method):
    """Deterministic numpy depth-of-field stand-in: box blur mixed in by distance from the focus."""

    name = "eval_test_blur"
    description = "test-only box blur"
    needs_depth = True
    params = (
        ParamSpec("radius", "int", 2, min=0, max=10),
        ParamSpec("focus_disparity", "float", 0.5, min=0.0, max=1.0),
    )

    def render(self, image, depth, *, radius, focus_disparity):
        padded = np.pad(image, ((radius, radius), (radius, radius), (0, 0)), mode="edge")
        size = 2 * radius + 1
        blurred = (
            sum(padded[y : y + image.shape[0], x : x + image.shape[1]] for y in range(size) for x in range(size))
            / size**2
        )
        weight = np.clip(4 * np.abs(depth - focus_disparity), 0, 1)[..., None]
        return image * (1 - weight) + blurred * weight


class _TestNaN(Method):
    name = "eval_test_nan"
    description = "test-only method returning NaN"
    needs_depth = False

    def render(self, image, depth):
        out = image.copy()
        out[0, 0, 0] = np.nan
        return out


TEST_METHODS = (_TestBlur, _TestNaN)


@pytest.fixture(scope="module", autouse=True)
def _test_methods():
    """eval_test_blur and eval_test_nan are registered only while this module's tests run."""
    with registered_methods(*TEST_METHODS):
        yield


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.getbasetemp() / "synthetic-cache"
    monkeypatch.setenv("BOKEH_EVAL_CACHE", str(cache))
    monkeypatch.delenv("BOKEH_PYNET_WEIGHTS", raising=False)
    import torch

    torch.set_num_threads(1)
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path_factory.getbasetemp() / "empty-hub"))


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def test_synthetic_run_writes_every_output(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [*SYNTH, "--methods", "eval_test_blur", "blur4=eval_test_blur", "--param", "blur4.radius=4", "--out", str(out)]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "SYNTHETIC SAMPLE, NOT EBB!" in captured.out
    for name in ("table.md", "table.csv", "per_image.csv", "run.json", "leaderboard.json", "report.html"):
        assert (out / name).is_file(), name
    assert not (out / ".shards").exists()
    for method in ("eval_test_blur", "blur4"):
        assert sorted(p.name for p in (out / "predictions" / method).glob("*.png")) == ["0.png", "1.png"]
    assert sorted(p.name for p in (out / "targets").iterdir()) == ["0.png", "1.png"]
    assert sorted(p.name for p in (out / "inputs").iterdir()) == ["0.png", "1.png"]

    table = pd.read_csv(out / "table.csv")
    assert list(table.columns[:7]) == ["Method", "Hardware", "Runtime s", "PSNR ↑", "SSIM ↑", "LPIPS ↓", "MOS ↓"]
    assert (table["Source"] == "reported in paper").sum() == 0  # the paper's rows only beside EBB! data
    measured = table
    assert set(measured["Method"]) == {"eval_test_blur", "blur4"}
    assert measured["PSNR ↑"].notna().all() and measured["LPIPS ↓"].isna().all()

    per_image = pd.read_csv(out / "per_image.csv", dtype={"id": str})
    assert {"method", "id", "psnr", "ssim", "lpips", "runtime_s"} <= set(per_image.columns)
    assert len(per_image) == 4 and per_image["runtime_s"].gt(0).all()

    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["profile"] == "pynet" and run["dataset"]["synthetic"]
    assert run["dataset"]["fingerprint"]["ids"] == ["0", "1"] and len(run["dataset"]["fingerprint"]["sha256"]) == 64
    assert {"python", "torch", "numpy"} <= set(run["versions"]) and run["device"] and run["command"]
    assert not run["lpips"]["available"] and "alexnet-owt-7be5be79.pth" in run["lpips"]["reason"]
    mean = run["methods"]["eval_test_blur"]["metrics"]["psnr"]["mean"]
    assert mean == pytest.approx(per_image.loc[per_image["method"] == "eval_test_blur", "psnr"].mean())
    # the synthetic scene's focus is passed to a method that takes focus_disparity
    from evaluation.synthetic import make_scene

    meta = json.loads((out / "predictions" / "eval_test_blur" / "1.json").read_text())
    assert meta["params"]["focus_disparity"] == pytest.approx(make_scene(1, 96, 128)[2])
    markdown = (out / "table.md").read_text()
    assert "SYNTHETIC SAMPLE, NOT EBB!" in markdown and "n/a" in markdown
    assert "plotly" in (out / "report.html").read_text()[:2_000_000].lower()

    # Resume: the second run reuses every prediction and gives the same numbers.
    stamp = (out / "predictions" / "blur4" / "1.png").stat().st_mtime_ns
    assert (
        main(
            [
                *SYNTH,
                "--methods",
                "eval_test_blur",
                "blur4=eval_test_blur",
                "--param",
                "blur4.radius=4",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    again = pd.read_csv(out / "per_image.csv", dtype={"id": str})
    assert again["reused"].all()
    assert np.allclose(again["psnr"], per_image["psnr"], rtol=0, atol=0)
    assert (out / "predictions" / "blur4" / "1.png").stat().st_mtime_ns == stamp


def test_mos_csv_and_leaderboard_api(tmp_path):
    out = tmp_path / "run"
    assert main([*SYNTH, "--methods", "eval_test_blur", "--profile", "dmshn", "--out", str(out)]) == 0
    pd.DataFrame(
        {
            "method": ["eval_test_blur"],
            "mos": [0.5],
            "ci_low": [0.4],
            "ci_high": [0.6],
            "rank": [1],
            "sig_rank": [1],
            "n_ratings": [40],
        }
    ).to_csv(out / "mos.csv", index=False)
    leaderboard.rebuild_tables(out)
    markdown = (out / "table.md").read_text()
    assert "| eval_test_blur |" in markdown and "0.50₁" in markdown
    # the paper's rows were measured under the other protocol: not beside dmshn numbers
    assert "0.85₁" not in markdown and "reported in paper" not in markdown
    assert "Table 1 rows are not shown" in markdown and "Profile **dmshn**" in markdown
    frame = leaderboard.load_leaderboard(out)
    assert list(frame.columns) == leaderboard.TABLE_COLUMNS
    assert frame.loc[frame["Method"] == "eval_test_blur", "MOS ↓"].item() == "0.50₁"
    figures = leaderboard.leaderboard_figures(out)
    assert len(figures) == 3 and all(hasattr(f, "to_html") for f in figures)
    assert json.loads((out / "run.json").read_text())["profile"] == "dmshn"
    assert json.loads((out / "leaderboard.json").read_text())["has_mos"]


def test_explicit_method_without_weights_exits_3(tmp_path, capsys):
    assert main([*SYNTH, "--methods", "pynet", "--out", str(tmp_path / "r")]) == 3
    assert "weights" in capsys.readouterr().err.lower()
    assert not (tmp_path / "r" / "table.md").exists()


def test_require_lpips_exits_3(tmp_path, capsys):
    assert main([*SYNTH, "--methods", "eval_test_blur", "--require-lpips", "--out", str(tmp_path / "r")]) == 3
    assert "alexnet-owt-7be5be79.pth" in capsys.readouterr().err


@pytest.mark.slow
def test_lpips_column_filled_when_trunk_present(tmp_path, monkeypatch):
    """Plumbing only: a random stand-in AlexNet trunk; its values are meaningless and never reported."""
    import torch
    import torchvision

    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))
    (hub / "checkpoints").mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet().state_dict(), hub / "checkpoints" / ALEXNET_FILE)
    out = tmp_path / "r"
    # A random AlexNet is not torchvision's file: refused by default, accepted (and recorded) when allowed.
    assert main([*SYNTH, "--methods", "eval_test_blur", "--require-lpips", "--out", str(out)]) == 3
    args = [*SYNTH, "--methods", "eval_test_blur", "--require-lpips", "--allow-unofficial-lpips", "--out", str(out)]
    assert main(args) == 0
    per_image = pd.read_csv(out / "per_image.csv")
    assert per_image["lpips"].notna().all()
    lpips_record = json.loads((out / "run.json").read_text())["lpips"]
    assert lpips_record["available"]
    # the trunk that was used is recorded by hash; a random one under the official name is flagged
    import hashlib

    trunk = hub / "checkpoints" / ALEXNET_FILE
    assert lpips_record["trunk"]["sha256"] == hashlib.sha256(trunk.read_bytes()).hexdigest()
    assert lpips_record["trunk"]["path"] == str(trunk) and not lpips_record["trunk"]["official"]
    assert "not comparable with published ones" in (out / "table.md").read_text()


def _external(folder: Path, ids, size=(96, 128), value=120) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in ids:
        (folder / f"{i}.png").write_bytes(_png(np.full((*size, 3), value, np.uint8)))
    return folder


def test_missing_external_predictions_list_the_ids(tmp_path, capsys):
    preds = _external(tmp_path / "mine", ["0"])
    out = tmp_path / "r"
    assert main([*SYNTH, "--methods", "none", "--predictions", f"mine={preds}", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "missing for ids 1" in err and str(preds) in err
    assert not (out / "table.md").exists() and not (out / "table.csv").exists()


def test_size_mismatch_names_file_and_sizes(tmp_path, capsys):
    preds = _external(tmp_path / "mine", ["0", "1"], size=(96, 120))
    assert main([*SYNTH, "--methods", "none", "--predictions", str(preds), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert str(preds / "0.png") in err and "120x96" in err and "128x96" in err


def test_corrupt_prediction_names_the_file(tmp_path, capsys):
    preds = _external(tmp_path / "mine", ["0", "1"])
    (preds / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert main([*SYNTH, "--methods", "none", "--predictions", str(preds), "--out", str(tmp_path / "r")]) == 2
    assert str(preds / "1.png") in capsys.readouterr().err
    assert not (tmp_path / "r" / "table.md").exists()


def test_nan_predictions_are_an_error(tmp_path, capsys):
    preds = tmp_path / "npy"
    preds.mkdir()
    for i in ("0", "1"):
        array = np.full((96, 128, 3), 0.5, np.float32)
        array[5, 5, 1] = np.nan
        np.save(preds / f"{i}.npy", array)
    assert main([*SYNTH, "--methods", "none", "--predictions", str(preds), "--out", str(tmp_path / "a")]) == 2
    assert "NaN" in capsys.readouterr().err
    assert main([*SYNTH, "--methods", "eval_test_nan", "--out", str(tmp_path / "b")]) == 2
    assert "NaN" in capsys.readouterr().err
    assert not (tmp_path / "b" / "table.md").exists()


def test_bad_cli_values(tmp_path, capsys):
    assert (
        main(
            [*SYNTH, "--methods", "eval_test_blur", "--param", "eval_test_blur.radius=99", "--out", str(tmp_path / "r")]
        )
        == 2
    )
    assert "radius" in capsys.readouterr().err
    assert main([*SYNTH, "--methods", "no_such_method", "--out", str(tmp_path / "r")]) == 2
    assert (
        main([*SYNTH, "--methods", "eval_test_blur", "--param", "lens.strength=3", "--out", str(tmp_path / "r")]) == 2
    )


def test_unreachable_hub_dataset_says_what_to_do(tmp_path, monkeypatch, capsys):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'someone/ebb' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    assert main(["--dataset", "someone/ebb", "--methods", "eval_test_blur", "--out", str(tmp_path / "r")]) == 3
    err = capsys.readouterr().err
    assert "someone/ebb" in err and "evaluation.ebb build" in err


def _ebb_zip(path: Path) -> Path:
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as archive:
        for i in (0, 1, 4400, 4401, 4402, 4403):
            photo = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
            bokeh = np.clip(photo.astype(int) // 2 + 60, 0, 255).astype(np.uint8)
            if i == 4402:
                bokeh = bokeh[:, :100]  # wrong aspect
            archive.writestr(f"Training/original/{i}.jpg", _jpeg(photo))
            archive.writestr(f"Training/bokeh/{i}.jpg", b"not a jpeg" if i == 4403 else _jpeg(bokeh))
    return path


def test_ebb_builder_and_evaluation_on_it(tmp_path, capsys):
    from bokeh_model.tables import open_dataset
    from evaluation import ebb

    source = _ebb_zip(tmp_path / "Training.zip")
    built = tmp_path / "ebb_hf"
    assert ebb.main(["build", "--source", str(source), "--out", str(built), "--rows-per-shard", "1"]) == 0
    bad = json.loads((built / "bad_ids.json").read_text())
    assert set(bad) == {"train/4402", "train/4403"} and "aspect" in bad["train/4402"]
    assert "Training/bokeh/4403.jpg" in bad["train/4403"]
    assert sorted(p.name for p in (built / "data").iterdir())[0] == "train-00000-of-00002.parquet"
    val = open_dataset(str(built), "val294")
    assert sorted(val["id"]) == [4400, 4401] and set(val.column_names) == {"id", "original", "bokeh"}
    assert sorted(open_dataset(str(built), "train")["id"]) == [0, 1]
    # the original JPEG bytes are kept: targets/ holds byte-identical copies
    with zipfile.ZipFile(source) as archive:
        original_target = archive.read("Training/bokeh/4400.jpg")
    preds = _external(tmp_path / "mine", ["4400", "4401"], size=(96, 128))
    out = tmp_path / "r"
    assert (
        main(
            [
                "--dataset",
                str(built),
                "--split",
                "val294",
                "--methods",
                "none",
                "--predictions",
                f"mine={preds}",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert (out / "targets" / "4400.jpg").read_bytes() == original_target
    run = json.loads((out / "run.json").read_text())
    assert run["dataset"]["fingerprint"]["ids"] == ["4400", "4401"] and not run["dataset"]["synthetic"]
    table = pd.read_csv(out / "table.csv")
    assert "SYNTHETIC" not in (out / "table.md").read_text()
    assert table.loc[table["Method"] == "mine", "Runtime s"].isna().all()
    # other readers: save_to_disk output and a single parquet file
    val.save_to_disk(str(tmp_path / "disk"))
    assert sorted(open_dataset(str(tmp_path / "disk"), "val294")["id"]) == [4400, 4401]
    single = next((built / "data").glob("val294-*.parquet"))
    assert len(open_dataset(str(single), "anything")) == 1
    assert ebb.main(["build", "--source", str(tmp_path / "nothing"), "--out", str(built)]) == 2


def test_pynet_layout_with_depth_and_half_resolution_inputs(tmp_path):
    from evaluation import ebb

    rng = np.random.default_rng(1)
    root = tmp_path / "ebb_dataset"
    for part, ids in (("train", (4400, 4401)), ("test", (0,))):
        for i in ids:
            for kind in ("original", "original_depth", "bokeh"):
                (root / part / kind).mkdir(parents=True, exist_ok=True)
            (root / part / "original" / f"{i}.jpg").write_bytes(_jpeg((rng.random((48, 64, 3)) * 255).astype(np.uint8)))
            (root / part / "original_depth" / f"{i}.png").write_bytes(
                _png(np.tile(np.linspace(0, 255, 64).astype(np.uint8), (48, 1)))
            )
            (root / part / "bokeh" / f"{i}.jpg").write_bytes(_jpeg((rng.random((96, 128, 3)) * 255).astype(np.uint8)))
    built = tmp_path / "hf"
    summary = ebb.build_dataset(root, built, log=lambda line: None)
    assert summary["splits"] == {"val294": [4400, 4401], "test": [0]} and summary["has_depth"]
    out = tmp_path / "r"
    assert (
        main(
            [
                "--dataset",
                str(built),
                "--split",
                "test",
                "--methods",
                "eval_test_blur",
                "--warmup",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    run = json.loads((out / "run.json").read_text())
    assert any("upsampled" in note for note in run["notes"])
    assert Image.open(out / "predictions" / "eval_test_blur" / "0.png").size == (128, 96)


@pytest.mark.slow
def test_accelerate_two_processes_give_the_same_table(tmp_path):
    """`accelerate launch` with 2 CPU processes (torchrun under --multi_gpu) equals 1 process."""
    import os
    import subprocess
    import sys

    script = tmp_path / "launch.py"
    script.write_text(
        "import sys\n"
        "from bokeh_model.registry import registered_methods\n"
        "from evaluation.run import main\n"
        "from test_evaluation import TEST_METHODS\n"
        "with registered_methods(*TEST_METHODS):  # eval_test_blur\n"
        "    code = main(sys.argv[1:])\n"
        "sys.exit(code)\n"
    )
    # The workers import this checkout's code (as the other subprocess tests do) and the test modules beside this one.
    here = Path(__file__).resolve().parent
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(here.parent), str(here)])}
    args = [*SYNTH, "--synthetic-scenes", "3", "--methods", "eval_test_blur", "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0  # one process, in this interpreter
    accelerate = Path(sys.executable).with_name("accelerate")
    two = subprocess.run(
        [
            str(accelerate),
            "launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            str(script),
            *args,
            "--out",
            str(tmp_path / "two"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    run_two = json.loads((tmp_path / "two" / "run.json").read_text())
    assert run_two["world_size"] == 2
    columns = ["Method", "PSNR ↑", "SSIM ↑", "LPIPS ↓", "MOS ↓", "Source"]
    first = pd.read_csv(tmp_path / "one" / "table.csv")[columns]
    second = pd.read_csv(tmp_path / "two" / "table.csv")[columns]
    pd.testing.assert_frame_equal(first, second)
    metrics = ["method", "id", "psnr", "ssim"]
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "one" / "per_image.csv")[metrics],
        pd.read_csv(tmp_path / "two" / "per_image.csv")[metrics],
    )


@pytest.mark.slow
def test_depth_model_fills_missing_depth(tmp_path):
    """A tiny random DPT (built here, saved locally) stands in for a real depth model: plumbing only."""
    from evaluation import ebb

    model_dir = save_tiny_dpt(tmp_path / "tiny-dpt")
    built = tmp_path / "hf"
    ebb.build_dataset(_ebb_zip(tmp_path / "Training.zip"), built, log=lambda line: None)
    out = tmp_path / "r"
    args = ["--dataset", str(built), "--split", "val294", "--methods", "eval_test_blur", "--warmup", "0"]
    # requested by name, needs depth, the dataset has none: exit 3 before anything is written
    assert main([*args, "--out", str(out)]) == 3
    assert not out.exists()
    assert main([*args, "--depth-model", str(model_dir), "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "depth").iterdir()) == ["4400.json", "4400.png", "4401.json", "4401.png"]
    assert main([*args, "--depth-model", str(tmp_path / "missing-model"), "--out", str(tmp_path / "x")]) == 3
    assert main([*args, "--streaming", "--depth-model", str(model_dir), "--out", str(tmp_path / "s")]) == 0
    streamed = pd.read_csv(tmp_path / "s" / "per_image.csv")
    pd.testing.assert_frame_equal(
        streamed[["id", "psnr", "ssim"]], pd.read_csv(out / "per_image.csv")[["id", "psnr", "ssim"]]
    )
