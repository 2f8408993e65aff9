"""``evaluation.pairs``: own aperture pairs -> EBB!-style dataset.

Synthetic pairs are made from the bundled real photos (``space/examples``): the wide-aperture shot is the
photo seen through a known homography, blurred outside an in-focus ellipse, with its exposure changed. The
alignment must recover the warp (corners within 1 px); unrelated photos must be rejected.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from bokeh_model.errors import InputError
from bokeh_model.images import load_image
from evaluation.pairs import (
    AlignSettings,
    align_pair,
    assign_scene_splits,
    build_pairs_dataset,
    find_pairs,
    gradient_orientation_score,
    read_photo,
    read_photo_info,
)
from evaluation.pairs.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "space" / "examples"
PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg"]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _homography(width: int, height: int, offsets: list[list[float]]) -> np.ndarray:
    corners = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    return cv2.getPerspectiveTransform(corners, corners + np.float32(offsets))


def make_wide(photo: np.ndarray, to_narrow: np.ndarray, *, blur: float = 6.0, gain: float = 0.7) -> np.ndarray:
    """The wide-aperture shot of ``photo``: warped so that ``to_narrow`` maps it back, defocused outside an
    ellipse around the centre, darker and with a slightly different tone curve."""
    height, width = photo.shape[:2]
    wide = cv2.warpPerspective(
        photo, np.linalg.inv(to_narrow), (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
    )
    wide = np.clip(wide, 0.0, 1.0)
    yy, xx = np.mgrid[0:height, 0:width]
    focus = (((xx - 0.5 * width) / (0.28 * width)) ** 2 + ((yy - 0.45 * height) / (0.3 * height)) ** 2 < 1).astype(
        np.float32
    )
    focus = cv2.GaussianBlur(focus, (0, 0), 3)[..., None]
    wide = focus * wide + (1 - focus) * cv2.GaussianBlur(wide, (0, 0), blur)
    return np.clip(gain * np.clip(wide, 0, 1) ** 1.1, 0.0, 1.0).astype(np.float32)


def _corner_error(found: list[list[float]], true: np.ndarray, width: int, height: int) -> float:
    corners = np.float64([[0, 0], [width, 0], [width, height], [0, height]]).reshape(-1, 1, 2)
    a = cv2.perspectiveTransform(corners, np.asarray(found, np.float64))
    b = cv2.perspectiveTransform(corners, true.astype(np.float64))
    return float(np.linalg.norm(a - b, axis=-1).max())


def _u8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


@pytest.mark.parametrize("name", PHOTOS)
def test_recovered_homography_maps_the_corners_within_one_pixel(name):
    photo = load_image(EXAMPLES / name)
    height, width = photo.shape[:2]
    true = _homography(width, height, [[6, -4], [-5, 3], [4, 7], [-3, -5]])
    result = align_pair(photo, make_wide(photo, true), AlignSettings(height=height, min_inliers=15))
    assert result.ok, result.reason
    assert result.model == "homography"
    error = _corner_error(result.matrix, true, width, height)
    assert error < 1.0, f"{name}: corners off by {error:.2f} px"
    assert result.score > 0.95 and result.reprojection_error < 1.0
    # the common area is a little smaller than the photo and is not upscaled to the requested height
    assert result.narrow.shape == result.wide.shape and result.narrow.shape[0] < height
    assert any("not upscaled" in note for note in result.notes)


@pytest.mark.parametrize("wide_side", [512, 384])
def test_warp_is_recovered_when_working_below_full_resolution(wide_side):
    """Output 128 px high from 512 px photos (and a wide photo saved at a lower resolution): the full-resolution
    warp is still right to within 1 px of the output."""
    photo = load_image(EXAMPLES / "astronaut.png")
    true = _homography(512, 512, [[6, -4], [-5, 3], [4, 7], [-3, -5]])
    wide = make_wide(photo, true)
    to_wide_pixels = np.diag([512 / wide_side, 512 / wide_side, 1.0])
    wide = cv2.resize(wide, (wide_side, wide_side), interpolation=cv2.INTER_AREA)
    result = align_pair(photo, wide, AlignSettings(height=128, min_inliers=15))
    assert result.ok, result.reason
    assert result.size[1] == 128
    error_output_px = _corner_error(result.matrix, true @ to_wide_pixels, wide_side, wide_side) * 128 / 512
    assert error_output_px < 1.0


@pytest.mark.parametrize("name", ["astronaut.png", "chelsea.png", "coffee.png"])
def test_warp_is_recovered_when_the_bokeh_comes_from_the_lens_renderer(name):
    """A more lens-like wide photo: the project's thin-lens renderer (layered occlusion, highlights, disc
    aperture) on the approximate depth, focused on the centre, then warped and darkened. (rocket.jpg, with 3%
    of its frame in focus, is recovered to 1.7 px here, see the README.)"""
    from bokeh_model.depth import approximate_depth, focus_disparity_at
    from bokeh_model.registry import create_method

    photo = load_image(EXAMPLES / name)
    height, width = photo.shape[:2]
    cv2.setRNGSeed(0)  # GrabCut inside approximate_depth draws from OpenCV's generator: the same photo every run
    depth = approximate_depth(photo)
    focus = focus_disparity_at(depth, width // 2, height // 2)
    bokeh = create_method("lens", device="cpu")(photo, depth, strength=14.0, focus_disparity=focus)
    true = _homography(width, height, [[6, -4], [-5, 3], [4, 7], [-3, -5]])
    wide = cv2.warpPerspective(
        bokeh, np.linalg.inv(true), (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT
    )
    wide = np.clip(0.8 * np.clip(wide, 0, 1) ** 1.1, 0, 1).astype(np.float32)
    result = align_pair(photo, wide, AlignSettings(height=height, min_inliers=15))
    assert result.ok, result.reason
    assert _corner_error(result.matrix, true, width, height) < 1.0


def test_a_shift_and_focus_breathing_is_fitted_by_the_affine_model():
    photo = load_image(EXAMPLES / "coffee.png")
    height, width = photo.shape[:2]
    zoom = 1.02  # focus breathing: the wide aperture frame is slightly magnified, plus a small shift
    true = np.array([[zoom, 0, 3.5 - (zoom - 1) * width / 2], [0, zoom, -2.0 - (zoom - 1) * height / 2], [0, 0, 1]])
    result = align_pair(photo, make_wide(photo, true, blur=4.0, gain=1.25), AlignSettings(height=height))
    assert result.ok, result.reason
    assert result.model == "affine"
    assert _corner_error(result.matrix, true, width, height) < 1.0


@pytest.mark.parametrize(("first", "second"), [("chelsea.png", "coffee.png"), ("astronaut.png", "rocket.jpg")])
def test_unrelated_photos_are_rejected_with_their_numbers(first, second):
    a = load_image(EXAMPLES / first)
    b = cv2.resize(load_image(EXAMPLES / second), (a.shape[1], a.shape[0]), interpolation=cv2.INTER_AREA)
    result = align_pair(a, b, AlignSettings(height=a.shape[0]))
    assert not result.ok
    assert "keypoint matches" in result.reason or "inliers" in result.reason or "implausible" in result.reason
    assert str(result.matches) in result.reason or str(result.inliers) in result.reason


def test_alignment_score_ignores_exposure_and_blur_but_not_a_shift():
    photo = cv2.cvtColor(load_image(EXAMPLES / "astronaut.png"), cv2.COLOR_RGB2GRAY)
    assert gradient_orientation_score(photo, 0.5 * photo + 0.1) > 0.99
    assert gradient_orientation_score(photo, cv2.GaussianBlur(photo, (0, 0), 1.5)) > 0.9
    shifted = np.roll(photo, 3, axis=1)
    assert gradient_orientation_score(photo, shifted) < 0.6
    noise = np.random.default_rng(0).random(photo.shape).astype(np.float32)
    assert abs(gradient_orientation_score(photo, noise)) < 0.1


@pytest.mark.parametrize("name", PHOTOS)
def test_default_score_threshold_keeps_a_1px_error_and_rejects_2px(name):
    """The default ``min_score`` separates a pair misaligned by 1 px (kept) from one off by 2 px (rejected)."""
    from evaluation.pairs.align import _gray, in_focus_mask

    photo = load_image(EXAMPLES / name)
    height, width = photo.shape[:2]
    true = _homography(width, height, [[6, -4], [-5, 3], [4, 7], [-3, -5]])
    sharp, wide = _gray(photo), _gray(make_wide(photo, true))
    scores = {}
    for shift in (0.0, 1.0, 2.0):
        moved = np.float64([[1, 0, shift], [0, 1, 0], [0, 0, 1]]) @ true
        warped = cv2.warpPerspective(wide, moved, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        scores[shift] = gradient_orientation_score(sharp, warped, in_focus_mask(sharp, warped, sigma=0.01 * height))
    threshold = AlignSettings().min_score
    assert scores[0.0] > 0.99 and scores[1.0] >= threshold > scores[2.0], scores


def _save_with_exif(
    path: Path, image: np.ndarray, *, f_number=None, focal=None, time=None, orientation=None, quality=95
) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation or 1  # Pillow writes no EXIF block without a tag in the main directory
    sub = exif.get_ifd(0x8769)
    if f_number is not None:
        sub[0x829D] = float(f_number)
    if focal is not None:
        sub[0x920A] = float(focal)
    if time is not None:
        sub[0x9003] = time
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_u8(image)).save(path, exif=exif, quality=quality)
    return path


def test_exif_pairing_by_time_aperture_focal_length_and_orientation(tmp_path):
    tiny = np.full((40, 60, 3), 0.5, np.float32)
    portrait = np.full((60, 40, 3), 0.5, np.float32)
    shots = [  # name, f-number, focal length, time, image, orientation
        ("a1", 1.8, 50, "2026:05:01 10:00:00", tiny, 1),
        ("a2", 16, 50, "2026:05:01 10:00:04", tiny, 1),  # pairs with a1 (wide first)
        ("b1", 16, 50, "2026:05:01 10:05:00", tiny, 1),
        ("b2", 1.8, 50, "2026:05:01 10:07:00", tiny, 1),  # 120 s later: time gap
        ("c1", 16, 50, "2026:05:01 10:07:03", tiny, 1),  # pairs with b2 instead
        ("d1", 16, 35, "2026:05:01 10:10:00", tiny, 1),
        ("d2", 2.0, 50, "2026:05:01 10:10:05", tiny, 1),  # zoomed: focal length change
        ("e1", 11, 50, "2026:05:01 10:20:00", tiny, 1),
        ("e2", 11, 50, "2026:05:01 10:20:05", tiny, 1),  # same aperture: no partner
        ("f1", 16, 50, "2026:05:01 10:30:00", tiny, 1),
        ("f2", 1.8, 50, "2026:05:01 10:30:05", portrait, 1),  # camera turned
        ("g1", 16, 50, "2026:05:01 10:40:00", tiny, 1),
        ("g2", 1.8, 50, "2026:05:01 10:40:05", portrait, 6),  # stored sideways, upright like g1: a pair
    ]
    for name, f_number, focal, taken, image, orientation in shots:
        _save_with_exif(
            tmp_path / f"{name}.jpg", image, f_number=f_number, focal=focal, time=taken, orientation=orientation
        )
    Image.fromarray(_u8(tiny)).save(tmp_path / "no_exif.jpg")
    _save_with_exif(tmp_path / ".work" / "thumb.jpg", tiny, f_number=4, time="2026:05:01 10:00:02")  # hidden
    info = read_photo_info(tmp_path / "a1.jpg")
    assert info.f_number == pytest.approx(1.8) and info.focal_length == 50 and info.time is not None

    pairs, problems, mode = find_pairs(tmp_path)
    assert mode == "exif"
    found = {(Path(p.narrow).stem, Path(p.wide).stem) for p in pairs}
    assert found == {("a2", "a1"), ("c1", "b2"), ("g1", "g2")}  # the larger f-number is the narrow photo
    reasons = " | ".join(f"{p.what}: {p.reason}" for p in problems)
    assert "time gap 120.0 s" in reasons
    assert "focal length changed: 35 mm vs 50 mm" in reasons
    assert "f/11 vs f/11" in reasons
    assert "orientation changed: 60x40 vs 40x60" in reasons
    assert "no_exif.jpg: no EXIF capture time or aperture" in reasons


def test_two_folders_matched_by_name_with_swapped_apertures_named(tmp_path):
    tiny = np.full((40, 60, 3), 0.5, np.float32)
    _save_with_exif(tmp_path / "narrow" / "kitchen" / "one.jpg", tiny, f_number=16)
    _save_with_exif(tmp_path / "wide" / "kitchen" / "ONE.JPG", tiny, f_number=1.8)
    (tmp_path / "wide" / "kitchen" / "ONE.CR2").write_bytes(b"raw shot beside its JPEG: the JPEG is used")
    _save_with_exif(tmp_path / "narrow" / "garden.jpg", tiny, f_number=1.8)
    _save_with_exif(tmp_path / "wide" / "garden.png", tiny, f_number=16)
    _save_with_exif(tmp_path / "wide" / "extra.jpg", tiny)
    pairs, problems, mode = find_pairs(tmp_path)
    assert mode == "folders"
    assert [(p.name, p.scene) for p in pairs] == [("kitchen/one", "kitchen")]
    reasons = {Path(p.what).name: p.reason for p in problems}
    assert "swapped" in reasons["garden"]
    assert "no file named extra.* in narrow/" in reasons["extra.jpg"]


def test_scene_splits_are_stable_and_never_empty():
    scenes = [f"scene{i}" for i in range(40)]
    splits = assign_scene_splits(scenes, 0.25)
    assert 4 <= sum(s == "val" for s in splits.values()) <= 18
    assert assign_scene_splits(scenes + ["new"], 0.25)["scene3"] == splits["scene3"]
    assert set(assign_scene_splits(["a", "b"], 0.01).values()) == {"train", "val"}
    assert set(assign_scene_splits(["a", "b"], 1.0).values()) == {"val"}
    assert set(assign_scene_splits(["a", "b"], 0.0).values()) == {"train"}


def test_camera_raw_is_decoded_with_rawpy(tmp_path):
    rawpy = pytest.importorskip("rawpy")
    tifffile = pytest.importorskip("tifffile")
    photo = load_image(EXAMPLES / "chelsea.png")[:200, :300]
    linear = (photo**2.2 * 60000).astype(np.uint16)
    mosaic = np.zeros(linear.shape[:2], np.uint16)  # RGGB Bayer mosaic
    mosaic[0::2, 0::2], mosaic[0::2, 1::2] = linear[0::2, 0::2, 0], linear[0::2, 1::2, 1]
    mosaic[1::2, 0::2], mosaic[1::2, 1::2] = linear[1::2, 0::2, 1], linear[1::2, 1::2, 2]
    identity = (1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1, 1, 1)
    tags = [
        (271, "s", 0, "Test", False),
        (272, "s", 0, "Camera", False),
        (33421, "H", 2, (2, 2), False),  # CFARepeatPatternDim
        (33422, "B", 4, (0, 1, 1, 2), False),  # CFAPattern RGGB
        (50706, "B", 4, (1, 4, 0, 0), False),  # DNGVersion
        (50708, "s", 0, "Test Camera", False),
        (50714, "I", 1, (0,), False),  # BlackLevel
        (50717, "I", 1, (65535,), False),  # WhiteLevel
        (50721, "2i", 9, identity, False),  # ColorMatrix1
        (50728, "2I", 3, (1, 1, 1, 1, 1, 1), False),  # AsShotNeutral
        (50778, "H", 1, (21,), False),
    ]
    tifffile.imwrite(tmp_path / "shot.dng", mosaic, photometric=32803, extratags=tags)
    decoded = read_photo(tmp_path / "shot.dng")
    assert decoded.shape == (200, 300, 3) and decoded.dtype == np.float32
    gray = lambda image: cv2.cvtColor(image.astype(np.float32), cv2.COLOR_RGB2GRAY)  # noqa: E731
    assert gradient_orientation_score(gray(photo), gray(decoded)) > 0.8  # the same picture, demosaicked
    assert rawpy.__version__


def _good_pair(root: Path, name: str, photo: np.ndarray, **kwargs) -> None:
    h, w = photo.shape[:2]
    wide = make_wide(photo, _homography(w, h, [[5, -3], [-4, 3], [3, 5], [-3, -4]]), **kwargs)
    (root / "narrow" / name).parent.mkdir(parents=True, exist_ok=True)
    (root / "wide" / name).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_u8(photo)).save(root / "narrow" / f"{name}.png")
    Image.fromarray(_u8(wide)).save(root / "wide" / f"{name}.jpg", quality=95)


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
    wide = make_wide(photo, _homography(w, h, [[4, 2], [-3, 3], [2, -4], [-2, 3]]))
    cv2.imwrite(str(root / "narrow" / "cat16.png"), np.round(photo[..., ::-1] * 65535).astype(np.uint16))
    cv2.imwrite(str(root / "wide" / "cat16.png"), np.round(wide[..., ::-1] * 65535).astype(np.uint16))
    # narrow photo stored sideways with EXIF orientation 6 (as cameras do), wide one upright
    photo = load_image(EXAMPLES / "coffee.png")
    h, w = photo.shape[:2]
    wide = make_wide(photo, _homography(w, h, [[3, 3], [-3, 2], [2, -3], [-3, 3]]))
    _save_with_exif(root / "narrow" / "cup.jpg", np.rot90(photo, 1), orientation=6, f_number=16)
    _save_with_exif(root / "wide" / "cup.jpg", wide, f_number=1.8)
    # bad input: different scenes, a corrupt file, a photo without partner, no texture at all
    Image.fromarray(_u8(load_image(EXAMPLES / "chelsea.png"))).save(root / "narrow" / "mixed.png")
    Image.fromarray(_u8(cv2.resize(load_image(EXAMPLES / "coffee.png"), (451, 300)))).save(root / "wide" / "mixed.png")
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
    Image.fromarray(_u8(load_image(EXAMPLES / "chelsea.png"))).save(bad / "narrow" / "x.png")
    Image.fromarray(_u8(load_image(EXAMPLES / "astronaut.png"))).save(bad / "wide" / "x.png")
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
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (scripts/install_system_deps.sh installs it as root)")
    pytest.importorskip("playwright.sync_api")
    from playwright.sync_api import sync_playwright

    out, _, _ = built
    artifacts = Path(os.environ.get("BOKEH_TEST_ARTIFACTS", ROOT / "artifacts")) / "browser"
    artifacts.mkdir(parents=True, exist_ok=True)
    home = tmp_path / "home"
    home.mkdir()
    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=args, env={**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home)}
        )
        try:
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
        finally:
            browser.close()


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"min_score": 0.9999}, "alignment score 0."),
        ({"max_reprojection_error": 0.001}, "reprojection error 0."),
        ({"min_overlap": 0.99}, "overlap too little"),
        ({"min_inliers": 5000}, "too few keypoint matches"),
    ],
)
def test_each_threshold_rejects_with_its_numbers(override, expected):
    photo = load_image(EXAMPLES / "chelsea.png")
    height, width = photo.shape[:2]
    true = _homography(width, height, [[6, -4], [-5, 3], [4, 7], [-3, -5]])
    result = align_pair(photo, make_wide(photo, true), AlignSettings(height=height, **override))
    assert not result.ok
    assert expected in result.reason
    assert result.narrow is None and result.wide is None  # nothing of a rejected pair reaches the dataset


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


def test_turned_camera_or_other_image_format_is_rejected_before_matching():
    photo = load_image(EXAMPLES / "coffee.png")  # 600x400
    turned = align_pair(photo, np.ascontiguousarray(np.rot90(photo)))
    assert not turned.ok and "orientation differs: narrow 600x400, wide 400x600" in turned.reason
    cropped = align_pair(photo, photo[:, :500])
    assert not cropped.ok and "aspect ratios differ" in cropped.reason
    with pytest.raises(InputError, match="NaN"):
        align_pair(photo, np.full_like(photo, np.nan))
