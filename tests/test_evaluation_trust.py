"""Evaluation on EBB!-layout archives built here: the files on disk are what gets scored, depth is built once
and reused or the methods that need it are skipped with the reason, honest tables and a complete run record."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _tiny_models import save_tiny_dpt
from PIL import Image

from bokeh_model.registry import Method, registered_methods
from evaluation import ebb, leaderboard
from evaluation.run import PSNR_CAP_DB, evaluate_predictions, main

ROOT = Path(__file__).resolve().parents[1]


class _Dim(Method):
    """Test-only method without depth: the input, 10% darker."""

    name = "eval_trust_dim"
    description = "test-only: input x 0.9"
    needs_depth = False

    def render(self, image, depth):
        return image * 0.9


@pytest.fixture(scope="module", autouse=True)
def _test_methods():
    """eval_trust_dim is registered only while this module's tests run."""
    with registered_methods(_Dim):
        yield


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("BOKEH_EVAL_CACHE", str(tmp_path_factory.getbasetemp() / "eval-cache"))
    monkeypatch.delenv("BOKEH_PYNET_WEIGHTS", raising=False)
    import torch

    torch.set_num_threads(1)
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path_factory.getbasetemp() / "empty-hub"))


def _jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _archive(path: Path, ids, seed: int) -> dict[int, bytes]:
    """A Training.zip-layout archive (no depth maps, like the public one); returns the target bytes per id."""
    rng = np.random.default_rng(seed)
    targets = {}
    with zipfile.ZipFile(path, "w") as archive:
        for i in ids:
            photo = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
            bokeh = np.clip(photo.astype(int) // 2 + 60, 0, 255).astype(np.uint8)
            archive.writestr(f"Training/original/{i}.jpg", _jpeg(photo))
            targets[i] = _jpeg(bokeh)
            archive.writestr(f"Training/bokeh/{i}.jpg", targets[i])
    return targets


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _predictions(folder: Path, ids, value: int = 120) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in ids:
        Image.fromarray(np.full((96, 128, 3), value, np.uint8)).save(folder / f"{i}.png")
    return folder


def _score(dataset: Path, preds: Path, out: Path, *extra: str) -> dict:
    args = ["--dataset", str(dataset), "--split", "val294", "--predictions", f"mine={preds}", "--out", str(out)]
    assert main(["--methods", "none", *args, *extra]) == 0
    return json.loads((out / "run.json").read_text())


def test_rebuilding_a_folder_in_place_scores_the_new_files(tmp_path):
    built = tmp_path / "ebb_hf"
    preds = _predictions(tmp_path / "preds", range(4400, 4403))
    first = _archive(tmp_path / "first.zip", (0, 4400, 4401, 4402), seed=1)
    assert ebb.main(["build", "--source", str(tmp_path / "first.zip"), "--out", str(built), "--limit", "2"]) == 0
    run = _score(built, preds, tmp_path / "r1")
    assert run["dataset"]["fingerprint"]["ids"] == ["4400"]

    # a full rebuild into the same folder: the run scores the three rows now on disk
    assert ebb.main(["build", "--source", str(tmp_path / "first.zip"), "--out", str(built)]) == 0
    run = _score(built, preds, tmp_path / "r2")
    fingerprint = run["dataset"]["fingerprint"]
    assert fingerprint["ids"] == ["4400", "4401", "4402"]
    assert fingerprint["target_sha256"] == {str(i): _sha(first[i]) for i in (4400, 4401, 4402)}
    assert run["methods"]["mine"]["n_images"] == 3

    # same ids and file names, other images (e.g. a re-exported archive): the new bytes are scored
    second = _archive(tmp_path / "second.zip", (0, 4400, 4401, 4402), seed=2)
    assert ebb.main(["build", "--source", str(tmp_path / "second.zip"), "--out", str(built)]) == 0
    run = _score(built, preds, tmp_path / "r3")
    assert run["dataset"]["fingerprint"]["target_sha256"] == {str(i): _sha(second[i]) for i in (4400, 4401, 4402)}
    # the run record names the files it read, with their current hashes
    files = run["dataset"]["meta"]["read"]["data_files"]
    assert [Path(f["path"]).parent for f in files] == [built.resolve() / "data"]
    assert all(f["sha256"] == _sha(Path(f["path"]).read_bytes()) for f in files)


def test_two_folders_with_the_same_name_are_two_datasets(tmp_path):
    preds = _predictions(tmp_path / "preds", (4400, 4401))
    targets = {}
    for name, seed in (("a", 3), ("b", 4)):
        targets[name] = _archive(tmp_path / f"{name}.zip", (4400, 4401), seed=seed)
        assert (
            ebb.main(["build", "--source", str(tmp_path / f"{name}.zip"), "--out", str(tmp_path / name / "ebb")]) == 0
        )
    runs = {name: _score(tmp_path / name / "ebb", preds, tmp_path / f"r-{name}") for name in ("a", "b")}
    for name, run in runs.items():
        assert run["dataset"]["name"] == str((tmp_path / name / "ebb").resolve())
        assert run["dataset"]["fingerprint"]["target_sha256"] == {str(i): _sha(targets[name][i]) for i in (4400, 4401)}
    assert runs["a"]["dataset"]["fingerprint"]["sha256"] != runs["b"]["dataset"]["fingerprint"]["sha256"]
    assert runs["a"]["methods"]["mine"]["metrics"]["psnr"] != runs["b"]["methods"]["mine"]["metrics"]["psnr"]


def test_saved_predictions_are_not_reused_for_changed_inputs(tmp_path):
    built, out = tmp_path / "ebb_hf", tmp_path / "r"
    args = ["--dataset", str(built), "--split", "val294", "--methods", "eval_trust_dim", "--warmup", "0"]
    _archive(tmp_path / "one.zip", (4400, 4401), seed=5)
    ebb.build_dataset(tmp_path / "one.zip", built, log=lambda line: None)
    assert main([*args, "--out", str(out)]) == 0
    assert main([*args, "--out", str(out)]) == 0
    assert pd.read_csv(out / "per_image.csv")["reused"].all()  # same inputs: resumed from the saved files
    _archive(tmp_path / "two.zip", (4400, 4401), seed=6)
    ebb.build_dataset(tmp_path / "two.zip", built, log=lambda line: None)
    assert main([*args, "--out", str(out)]) == 0
    assert not pd.read_csv(out / "per_image.csv")["reused"].any()  # other input photos: rendered again


def _cli(*args: str, cwd: Path, env_dir: Path) -> subprocess.CompletedProcess:
    """``python evaluation/run.py ...`` as a user types it, in a fresh interpreter (only built-in methods)."""
    env = {
        **os.environ,
        "BOKEH_EVAL_CACHE": str(env_dir / "cache"),
        "TORCH_HOME": str(env_dir / "torch"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
    }
    env.pop("BOKEH_PYNET_WEIGHTS", None)
    return subprocess.run(
        [sys.executable, str(ROOT / "evaluation" / "run.py"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_archive_without_depth_maps_end_to_end(tmp_path):
    """The README's main path on a Training.zip-layout archive (no depth maps) with a tiny local DPT."""
    _archive(tmp_path / "Training.zip", (0, 4400, 4401), seed=7)
    plain, with_depth = tmp_path / "ebb_hf", tmp_path / "ebb_hf_depth"
    assert ebb.main(["build", "--source", str(tmp_path / "Training.zip"), "--out", str(plain)]) == 0
    card = (plain / "README.md").read_text()
    assert "| val294 | 2 of 294 (INCOMPLETE) |" in card and "Incomplete split" in card

    # no depth anywhere and no weights: nothing can be scored -> exit 3 naming every reason, and no run folder that
    # claims "measured on 2 images"
    out = tmp_path / "r-plain"
    done = _cli("--dataset", str(plain), "--split", "val294", "--out", str(out), cwd=tmp_path, env_dir=tmp_path)
    assert done.returncode == 3, done.stderr[-3000:]
    assert "no method can be scored here" in done.stderr
    assert "lens: needs a depth map" in done.stderr and "--depth-model" in done.stderr
    assert not (out / "run.json").exists()

    # the README's main path: depth estimated once at build time, every method that needs it is scored
    model = save_tiny_dpt(tmp_path / "tiny-dpt")
    assert (
        ebb.main(
            ["build", "--source", str(tmp_path / "Training.zip"), "--out", str(with_depth), "--depth-model", str(model)]
        )
        == 0
    )
    assert not (with_depth / ebb.DEPTH_CACHE).exists()
    out = tmp_path / "r-depth"
    done = _cli("--dataset", str(with_depth), "--split", "val294", "--out", str(out), cwd=tmp_path, env_dir=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    assert {"disk", "gaussian", "lens"} <= set(run["methods"])
    assert all(run["methods"][m]["n_images"] == 2 for m in ("disk", "gaussian", "lens"))
    coverage = run["dataset"]["coverage"]
    assert (coverage["n"], coverage["expected"], coverage["complete"]) == (2, 294, False)
    table = (out / "table.md").read_text()
    assert "INCOMPLETE SPLIT: 2 of 294 val294 images" in table and "**Not scored:**" in table
    assert "- **pynet**:" in table and "weights" in table
    report = (out / "report.html").read_text()
    assert "<table class='results'>" in report and "INCOMPLETE SPLIT" in report and "Not scored" in report
    # no published weights here: PyNET and every method with a weights spec (bokehme, ...) are skipped, saying so
    from bokeh_model.method_weights import weights_spec_names

    skipped = {entry["method"]: entry for entry in run["skipped_methods"]}
    assert set(skipped) == {"pynet", *weights_spec_names()}

    # or the depth model at run time on the plain folder
    out = tmp_path / "r-runtime-depth"
    done = _cli(
        "--dataset", str(plain), "--split", "val294", "--depth-model", str(model), "--out", str(out),
        cwd=tmp_path, env_dir=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert {"disk", "gaussian", "lens"} <= set(json.loads((out / "run.json").read_text())["methods"])


@pytest.mark.slow
def test_depth_build_is_batched_and_resumes(tmp_path, monkeypatch):
    from bokeh_model.depth import DepthEstimator, get_depth_estimator

    _archive(tmp_path / "Training.zip", (0, 1, 2, 4400, 4401), seed=8)
    model = str(save_tiny_dpt(tmp_path / "tiny-dpt"))
    built = tmp_path / "hf"
    calls: list[int] = []
    original = DepthEstimator.estimate_batch

    def failing_after_two(self, images):
        calls.append(len(images))
        if len(calls) > 2:
            raise KeyboardInterrupt  # the user stops the build part-way
        return original(self, images)

    monkeypatch.setattr(DepthEstimator, "estimate_batch", failing_after_two)
    with pytest.raises(KeyboardInterrupt):
        ebb.build_dataset(tmp_path / "Training.zip", built, depth_model=model, depth_batch=2, log=lambda line: None)
    assert calls == [2, 2, 1]
    assert len(list((built / ebb.DEPTH_CACHE).rglob("*.png"))) == 4 and not (built / "data").exists()

    calls.clear()
    monkeypatch.setattr(
        DepthEstimator, "estimate_batch", lambda self, images: calls.append(len(images)) or original(self, images)
    )
    lines: list[str] = []
    summary = ebb.build_dataset(tmp_path / "Training.zip", built, depth_model=model, depth_batch=2, log=lines.append)
    assert calls == [1]  # only the map that was missing
    assert any("resuming, 4 of 5" in line for line in lines)
    assert summary["has_depth"] and not (built / ebb.DEPTH_CACHE).exists()
    # a batched map equals the one-image estimate (16-bit PNG levels)
    from bokeh_model.tables import open_dataset

    row = open_dataset(str(built), "val294")[0]
    stored = np.asarray(Image.open(io.BytesIO(row["depth"]["bytes"])), dtype=np.float64) / 65535.0
    photo = np.asarray(Image.open(io.BytesIO(row["original"]["bytes"])).convert("RGB"), dtype=np.float32) / 255.0
    single = get_depth_estimator(model, "cpu").estimate(photo)
    assert np.abs(stored - single).max() < 1e-4


def test_identical_prediction_counts_at_the_psnr_cap(tmp_path):
    targets = _archive(tmp_path / "Training.zip", (4400, 4401), seed=9)
    built = tmp_path / "hf"
    ebb.build_dataset(tmp_path / "Training.zip", built, log=lambda line: None)
    exact = tmp_path / "exact"
    exact.mkdir()
    Image.open(io.BytesIO(targets[4400])).convert("RGB").save(exact / "4400.png")  # the target itself
    Image.open(io.BytesIO(targets[4401])).convert("RGB").save(exact / "4401.png")
    pixels = np.asarray(Image.open(exact / "4401.png")).copy()
    pixels[0, 0, 0] ^= 64  # one pixel off outside the 32-px crop is still identical inside it: use dmshn (no crop)
    Image.fromarray(pixels).save(exact / "4401.png")
    out = tmp_path / "r"
    run = _score(built, exact, out, "--profile", "dmshn")
    per_image = pd.read_csv(out / "per_image.csv", dtype={"id": str}).set_index("id")
    assert per_image.loc["4400", "psnr"] == PSNR_CAP_DB and per_image.loc["4400", "psnr_capped"]
    assert not per_image.loc["4401", "psnr_capped"] and per_image.loc["4401", "psnr"] < PSNR_CAP_DB
    summary = run["methods"]["mine"]
    assert summary["metrics"]["psnr"]["n"] == 2 and summary["psnr_capped"] == 1
    assert summary["metrics"]["psnr"]["mean"] == pytest.approx(per_image["psnr"].mean())
    assert "PSNR capped at 100 dB" in (out / "table.md").read_text()


def test_run_record_versions_and_public_function(tmp_path):
    _archive(tmp_path / "Training.zip", (4400, 4401), seed=10)
    built = tmp_path / "hf"
    ebb.build_dataset(tmp_path / "Training.zip", built, log=lambda line: None)
    preds = _predictions(tmp_path / "preds", (4400, 4401))
    record = evaluate_predictions(str(built), "val294", preds, label="team-x", profile="dmshn", out_dir=tmp_path / "r")
    assert record["profile"] == "dmshn" and record["methods"]["team-x"]["n_images"] == 2
    assert record == json.loads((tmp_path / "r" / "run.json").read_text())
    versions = record["versions"]
    assert versions["lpips"] == metadata.version("lpips") and versions["pillow"] == metadata.version("pillow")
    assert versions["libjpeg"] and versions["datasets"] == metadata.version("datasets")
    assert record["dataset"]["coverage"]["expected"] == 294
    # the paper's rows belong to the other protocol: absent here, with the reason in the notes
    board = json.loads((tmp_path / "r" / "leaderboard.json").read_text())
    assert [row["method"] for row in board["rows"]] == ["team-x"]
    assert any("not the same metric" in note for note in board["notes"])
    # --limit: fewer images than the split holds is flagged, with the reason
    limited = evaluate_predictions(str(built), "val294", preds, limit=1, lpips=False, out_dir=tmp_path / "l")
    assert limited["dataset"]["coverage"]["n"] == 1 and not limited["dataset"]["coverage"]["complete"]
    assert "limited with --limit 1" in (tmp_path / "l" / "table.md").read_text()


def test_report_shows_the_table_and_one_colour_per_method(tmp_path):
    out = tmp_path / "r"
    preds = _predictions(tmp_path / "preds", ("0", "1"), value=90)
    synth = ["--synthetic-scenes", "2", "--synthetic-size", "128x96", "--warmup", "0"]
    assert main([*synth, "--methods", "lens", "gaussian", "--predictions", f"files={preds}", "--out", str(out)]) == 0
    pd.DataFrame({"method": ["gaussian", "lens", "files"], "mos": [1.0, 0.5, 2.0], "ci_low": [0.8, 0.3, 1.7],
                  "ci_high": [1.2, 0.7, 2.3]}).to_csv(out / "mos.csv", index=False)  # fmt: skip
    leaderboard.rebuild_tables(out)
    report = (out / "report.html").read_text()
    table = pd.read_csv(out / "table.csv")
    for method in table["Method"]:
        assert f"{method}</td>" in report
    assert "Profile **pynet**" in (out / "table.md").read_text() and "(profile pynet)" in report

    figures = leaderboard.leaderboard_figures(out)
    colours: dict[str, set[str]] = {}
    for figure in figures:
        for trace in figure.data:
            if trace.type == "bar":
                for method, colour in zip(trace.x, trace.marker.color, strict=True):
                    colours.setdefault(method, set()).add(colour)
            else:
                colours.setdefault(trace.name, set()).add(trace.marker.color)
    assert set(colours) == {"lens", "gaussian", "files"}
    assert all(len(found) == 1 for found in colours.values()), colours
    assert len({next(iter(found)) for found in colours.values()}) == 3
    # the runtime chart holds only the methods run here (prediction files have no runtime)
    runtime = next(f for f in figures if "Runtime" in f.layout.title.text)
    assert {trace.name for trace in runtime.data} == {"lens", "gaussian"}


def test_prediction_files_only_give_no_runtime_chart(tmp_path):
    out = tmp_path / "r"
    preds = _predictions(tmp_path / "preds", ("0", "1"))
    synth = ["--synthetic-scenes", "2", "--synthetic-size", "128x96"]
    assert main([*synth, "--methods", "none", "--predictions", str(preds), "--out", str(out)]) == 0
    titles = [f.layout.title.text for f in leaderboard.leaderboard_figures(out)]
    assert len(titles) == 1 and "Per-image" in titles[0]
    assert "Runtime vs" not in (out / "report.html").read_text()


def test_rows_without_depth_skip_the_methods_that_need_it(tmp_path):
    """Depth for some rows only (PyNET layout, one depth map missing): decided up front when the table is
    loaded, or part-way when streaming; either way the run finishes and says which method was left out."""
    rng = np.random.default_rng(11)
    root = tmp_path / "ebb_dataset"
    for kind in ("original", "original_depth", "bokeh"):
        (root / "train" / kind).mkdir(parents=True)
    for i in (4400, 4401):
        (root / "train" / "original" / f"{i}.jpg").write_bytes(_jpeg((rng.random((96, 128, 3)) * 255).astype(np.uint8)))
        (root / "train" / "bokeh" / f"{i}.jpg").write_bytes(_jpeg((rng.random((96, 128, 3)) * 255).astype(np.uint8)))
    Image.fromarray(np.tile(np.linspace(0, 255, 128).astype(np.uint8), (96, 1))).save(
        root / "train" / "original_depth" / "4400.png"
    )
    built = tmp_path / "hf"
    assert ebb.build_dataset(root, built, log=lambda line: None)["has_depth"]
    args = ["--dataset", str(built), "--split", "val294", "--warmup", "0"]
    # named in --methods but cannot be honoured: exit 3 before anything is written
    assert main([*args, "--methods", "gaussian", "--out", str(tmp_path / "a")]) == 3
    assert not (tmp_path / "a").exists()
    # streaming cannot know up front: the method is dropped when the row without depth arrives
    out = tmp_path / "b"
    assert main([*args, "--streaming", "--methods", "gaussian", "eval_trust_dim", "--out", str(out)]) == 0
    run = json.loads((out / "run.json").read_text())
    assert list(run["methods"]) == ["eval_trust_dim"] and run["methods"]["eval_trust_dim"]["n_images"] == 2
    assert [entry["method"] for entry in run["skipped_methods"]] == ["gaussian"]
    assert "id 4401" in run["skipped_methods"][0]["reason"]
    assert set(pd.read_csv(out / "per_image.csv")["method"]) == {"eval_trust_dim"}
    assert "- **gaussian**: needs a depth map but id 4401" in (out / "table.md").read_text()
