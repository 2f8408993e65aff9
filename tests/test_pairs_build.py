"""``evaluation.pairs build``: own aperture pairs -> EBB!-style dataset, end to end (CLI, report, resume, Hub)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from _browser import chromium_browser, require_chromium
from _pairs_testing import EXAMPLES, ROOT, homography, make_wide, save_with_exif, u8
from PIL import Image

from bokeh_model.images import load_image
from evaluation.pairs import (
    AlignSettings,
    build_pairs_dataset,
)
from evaluation.pairs.__main__ import main


def _good_pair(root: Path, name: str, photo: np.ndarray, **kwargs) -> None:
    h, w = photo.shape[:2]
    wide = make_wide(photo, homography(w, h, [[5, -3], [-4, 3], [3, 5], [-3, -4]]), **kwargs)
    (root / "narrow" / name).parent.mkdir(parents=True, exist_ok=True)
    (root / "wide" / name).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(u8(photo)).save(root / "narrow" / f"{name}.png")
    Image.fromarray(u8(wide)).save(root / "wide" / f"{name}.jpg", quality=95)


@pytest.fixture(scope="module")
def pairs_folder(tmp_path_factory) -> Path:
    """Good pairs (two in one scene folder, one 16-bit, one EXIF-rotated) and every kind of bad input."""
    root = tmp_path_factory.mktemp("pairs")
    from skimage import data

    _good_pair(root, "astronaut", load_image(EXAMPLES / "astronaut.png"))
    tissue = load_image(data.immunohistochemistry())  # scikit-image's bundled microscope photo
    _good_pair(root, "lab/tissue_a", tissue)
    _good_pair(root, "lab/tissue_b", tissue, blur=3.0, gain=0.9)
    # 16-bit PNG pair
    photo = load_image(EXAMPLES / "chelsea.png")
    h, w = photo.shape[:2]
    wide = make_wide(photo, homography(w, h, [[4, 2], [-3, 3], [2, -4], [-2, 3]]))
    cv2.imwrite(str(root / "narrow" / "cat16.png"), np.round(photo[..., ::-1] * 65535).astype(np.uint16))
    cv2.imwrite(str(root / "wide" / "cat16.png"), np.round(wide[..., ::-1] * 65535).astype(np.uint16))
    # narrow photo stored sideways with EXIF orientation 6 (as cameras do), wide one upright
    photo = load_image(EXAMPLES / "coffee.png")
    h, w = photo.shape[:2]
    wide = make_wide(photo, homography(w, h, [[3, 3], [-3, 2], [2, -3], [-3, 3]]))
    save_with_exif(root / "narrow" / "cup.jpg", np.rot90(photo, 1), orientation=6, f_number=16)
    save_with_exif(root / "wide" / "cup.jpg", wide, f_number=1.8)
    # bad input: different scenes, a corrupt file, a photo without partner, no texture at all
    Image.fromarray(u8(load_image(EXAMPLES / "chelsea.png"))).save(root / "narrow" / "mixed.png")
    Image.fromarray(u8(cv2.resize(load_image(EXAMPLES / "coffee.png"), (451, 300)))).save(root / "wide" / "mixed.png")
    (root / "narrow" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (root / "wide" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    Image.fromarray(np.full((64, 96, 3), 128, np.uint8)).save(root / "narrow" / "flat.png")
    Image.fromarray(np.full((64, 96, 3), 100, np.uint8)).save(root / "wide" / "flat.png")
    shutil.copy(root / "narrow" / "mixed.png", root / "narrow" / "lonely.png")
    return root


@pytest.fixture(scope="module")
def tiny_dpt(tmp_path_factory) -> Path:
    from _tiny_models import save_tiny_dpt

    return save_tiny_dpt(tmp_path_factory.mktemp("dpt"))


@pytest.fixture(scope="module")
def built(pairs_folder, tiny_dpt, tmp_path_factory) -> tuple[Path, int, str]:
    # a unique folder name: datasets caches a local folder by its name and card (see evaluation.dataset)
    out = tmp_path_factory.mktemp("built") / f"my_pairs_{os.getpid()}_{time.time_ns()}"
    argv = ["build", "--pairs", str(pairs_folder), "--out", str(out), "--depth-model", str(tiny_dpt)]
    argv += ["--height", "256", "--val-fraction", "0.4", "--rows-per-shard", "2", "--no-progress"]
    import contextlib
    import io

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(argv)
    return out, code, printed.getvalue()


def test_build_keeps_the_good_pairs_and_names_every_bad_input(built, pairs_folder):
    out, code, printed = built
    assert code == 0, printed
    summary = json.loads((out / "pairs.json").read_text())
    names = sorted(item["name"] for item in summary["accepted"])
    assert names == ["astronaut", "cat16", "cup", "lab/tissue_a", "lab/tissue_b"]
    rejected = {item["name"]: item["reason"] for item in summary["rejected"]}
    assert set(rejected) == {"broken", "flat", "mixed"}
    assert "unreadable narrow photo" in rejected["broken"]
    assert "keypoint" in rejected["mixed"] or "inliers" in rejected["mixed"]
    assert "keypoints" in rejected["flat"]
    assert any("lonely" in p["what"] and "no file named lonely" in p["reason"] for p in summary["problems"])
    report = (out / "report.html").read_text()
    for reason in list(rejected.values()) + ["no file named lonely.* in wide/"]:
        assert reason.split(":")[0] in report
    assert report.count('class="card"') == 5 and report.count('class="card bad"') == 3
    for item in summary["accepted"]:
        metrics = item["metrics"]
        assert metrics["score"] >= 0.9 and metrics["reprojection_error"] <= 1.0 and metrics["inliers"] >= 25
    # scenes are never split: both pairs of the lab/ scene share one split
    split_of = {item["name"]: item["split"] for item in summary["accepted"]}
    assert split_of["lab/tissue_a"] == split_of["lab/tissue_b"]
    assert set(summary["splits"]) == {"train", "val"}
    assert "python evaluation/run.py --dataset" in printed and "--split val" in printed
    # what may be pushed to the Hub names no local directory
    for published in ("pairs.json", "report.html", "README.md"):
        text = (out / published).read_text()
        assert str(out.parent) not in text and str(pairs_folder.parent) not in text


def test_built_folder_is_an_ebb_style_dataset(built):
    import datasets

    from evaluation.dataset import DatasetSource

    out, code, _ = built
    assert code == 0
    card = (out / "README.md").read_text()
    assert "split: train" in card and "split: val" in card
    assert sorted(p.name for p in (out / "data").iterdir())[0].startswith("train-00000-of-")
    rows = 0
    for split in ("train", "val"):
        table = datasets.load_dataset(str(out), split=split)
        assert {"id", "original", "bokeh", "depth", "name", "scene"} <= set(table.column_names)
        for row in table:
            rows += 1
            original, bokeh = row["original"], row["bokeh"]
            assert original.size == bokeh.size and original.size[1] <= 256
            assert row["depth"].size == original.size and row["depth"].mode.startswith("I")  # 16-bit disparity
        source = DatasetSource(str(out), split)
        for sample in source.iter_samples():
            photo, target, depth = sample.decode_original(), sample.decode_bokeh(), sample.decode_depth()
            assert photo.shape == target.shape and depth.shape == photo.shape[:2]
            assert depth.min() >= 0.0 and depth.max() <= 1.0
    assert rows == 5


def test_cup_photo_was_turned_upright_by_its_exif_orientation(built):
    out, _, _ = built
    summary = json.loads((out / "pairs.json").read_text())
    cup = next(item for item in summary["accepted"] if item["name"] == "cup")
    assert cup["metrics"]["input_size"]["narrow"] == [600, 400]  # stored 400x600, shown upright
    assert cup["metrics"]["size"][0] > cup["metrics"]["size"][1]


def test_rerun_resumes_and_gives_the_same_dataset(built, pairs_folder, tiny_dpt, capsys):
    out, _, _ = built
    before = json.loads((out / "pairs.json").read_text())
    summary = build_pairs_dataset(
        pairs_folder,
        out,
        depth_model=str(tiny_dpt),
        val_fraction=0.4,
        settings=AlignSettings(height=256),
        rows_per_shard=2,
        progress=False,
    )
    assert summary["reused"] == 8
    assert {i["name"]: i["id"] for i in summary["accepted"]} == {i["name"]: i["id"] for i in before["accepted"]}
    assert "8 pairs reused" in capsys.readouterr().out


def test_evaluation_run_reads_the_built_dataset(built, tmp_path, capsys):
    from evaluation.run import main as run_main

    out, _, _ = built
    # no --split: a dataset without val294 but with `val` is scored on `val`
    code = run_main(["--dataset", str(out), "--methods", "gaussian", "--out", str(tmp_path / "r")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "split: val (the dataset has no val294 split)" in captured.out
    per_image = (tmp_path / "r" / "per_image.csv").read_text()
    summary = json.loads((out / "pairs.json").read_text())
    for item in summary["accepted"]:
        if item["split"] == "val":
            assert f"\n{item['id']}," in per_image or f",{item['id']}," in per_image
    assert (tmp_path / "r" / "table.md").is_file()


def test_training_reads_the_built_dataset(built):
    from bokeh_model.training import PairCrops, open_table, resolve_columns

    out, _, _ = built
    table = open_table(str(out), "train")
    columns = resolve_columns(table, use_depth=True)
    item = PairCrops(table, level=3, crop_size=64, random=True, columns=columns)[0]
    assert tuple(item["input"].shape) == (4, 64, 64)  # RGB + depth at half resolution
    assert item["target"].shape[0] == 3


def test_no_pairs_and_no_survivors_exit_2_with_a_report(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["build", "--pairs", str(empty), "--out", str(tmp_path / "o1"), "--no-depth", "--no-progress"]) == 2
    assert "no photos found" in capsys.readouterr().err
    assert (tmp_path / "o1" / "report.html").is_file()

    bad = tmp_path / "bad"
    (bad / "narrow").mkdir(parents=True)
    (bad / "wide").mkdir()
    Image.fromarray(u8(load_image(EXAMPLES / "chelsea.png"))).save(bad / "narrow" / "x.png")
    Image.fromarray(u8(load_image(EXAMPLES / "astronaut.png"))).save(bad / "wide" / "x.png")
    (bad / "narrow" / "y.jpg").write_bytes(b"not a photo")
    (bad / "wide" / "y.jpg").write_bytes(b"not a photo")
    code = main(["build", "--pairs", str(bad), "--out", str(tmp_path / "o2"), "--no-depth", "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "no pair survived" in err and "report.html" in err
    report = (tmp_path / "o2" / "report.html").read_text()
    assert "x</div>" in report and "y</div>" in report and "unreadable" in report
    assert not (tmp_path / "o2" / "data").exists()


def test_missing_depth_model_exits_3_before_any_work(tmp_path, pairs_folder, capsys):
    out = tmp_path / "o"
    code = main(["build", "--pairs", str(pairs_folder), "--out", str(out), "--depth-model", str(tmp_path / "none")])
    assert code == 3
    err = capsys.readouterr().err
    assert "--no-depth" in err and "none" in err
    assert not (out / ".work").exists()


def test_bad_arguments_exit_2(tmp_path, pairs_folder, capsys):
    assert main(["build", "--pairs", str(tmp_path / "missing"), "--out", str(tmp_path / "o"), "--no-depth"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    argv = ["build", "--pairs", str(pairs_folder), "--out", str(tmp_path / "o"), "--no-depth", "--val-fraction", "2"]
    assert main(argv) == 2


@pytest.mark.browser
@pytest.mark.slow
def test_report_in_a_browser(built, tmp_path):
    require_chromium()
    out, _, _ = built
    artifacts = Path(os.environ.get("BOKEH_TEST_ARTIFACTS", ROOT / "artifacts")) / "browser"
    artifacts.mkdir(parents=True, exist_ok=True)
    with chromium_browser(tmp_path / "home") as browser:
        for width, height in ((1366, 768), (390, 844)):
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto((out / "report.html").as_uri())
            assert page.locator(".card").count() == 8
            # every thumbnail decodes (inline JPEG data) and nothing overflows sideways on a phone
            broken = page.evaluate("[...document.images].filter(i => !i.complete || i.naturalWidth === 0).length")
            assert broken == 0
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            page.screenshot(path=str(artifacts / f"pairs_report_{width}.png"), full_page=True)
            page.close()


def test_push_to_hub_uploads_the_built_folder(monkeypatch, built, tmp_path, pairs_folder, capsys):
    from evaluation import ebb

    calls = []
    monkeypatch.setattr(
        ebb, "push_to_hub", lambda folder, repo, private=False: calls.append((folder, repo, private)) or "url"
    )
    out = tmp_path / "copy"
    shutil.copytree(built[0], out)  # reuses the work folder: nothing is aligned again
    argv = ["build", "--pairs", str(pairs_folder), "--out", str(out), "--no-depth", "--height", "256"]
    assert main([*argv, "--val-fraction", "0.4", "--push-to-hub", "me/pairs", "--private", "--no-progress"]) == 0
    assert calls == [(str(out), "me/pairs", True)]
    assert "8 pairs reused" in capsys.readouterr().out
