"""Aligning the wide-aperture photo onto the narrow one, as EBB! was made: SIFT, ratio test, RANSAC.

Keypoints come from the whole sharp photo and from the *in-focus* part of the bokeh photo only (blurred
areas give unstable keypoints). A homography and an affine warp are both fitted with RANSAC and refined on
their inliers; the affine one is kept unless the homography explains the matches clearly better. ECC then
refines the warp on the in-focus area. The wide photo is warped onto the narrow one, both are cropped to the
largest rectangle they both cover and resized.

Every pair gets numbers, and a pair over a threshold is rejected with them (never silently kept):

* ``inliers`` / ``inlier_ratio``: RANSAC inliers among the ratio-test matches;
* ``reprojection_error``: RMS distance (px at the output size) of the inliers under the fitted warp;
* ``score``: gradient-orientation correlation inside the in-focus area after warping, in [-1, 1]. Only
  the *direction* of the gradients is compared (weighted by the weaker magnitude), so exposure and the amount
  of blur barely change it while a shift of a pixel or two does (1 = same edges in the same place, 0 =
  unrelated);
* ``overlap``: the fraction of the narrow photo kept by the crop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from bokeh_model.errors import InputError

__all__ = ["AlignSettings", "Alignment", "align_pair", "gradient_orientation_score", "in_focus_mask"]


@dataclass
class AlignSettings:
    """Thresholds and sizes of the alignment (defaults calibrated on synthetic pairs, see the README).

    Attributes:
        height: output height in pixels (EBB! images are 1024 px high); smaller crops are not upscaled.
        work_scale: the warp runs at ``work_scale * height`` px high (or the photo's height), keypoints and
            scores at ``height``.
        ratio: Lowe's ratio test.
        ransac_threshold: RANSAC inlier distance, px at the output size (where keypoints are detected).
        min_inliers: fewer RANSAC inliers reject the pair.
        min_inlier_ratio: fewer inliers per ratio-test match reject the pair (unrelated photos match by chance).
        max_reprojection_error: RMS inlier error above this (px at the output size) rejects the pair.
        min_score: gradient-orientation correlation in the in-focus area below this rejects the pair.
        min_overlap: a crop keeping less than this fraction of the narrow photo rejects the pair.
        max_corner_shift: a warp moving a corner by more than this fraction of the diagonal rejects the pair
            (a tripod pair differs by focus breathing and small shifts, not by a new framing).
        max_features: SIFT keypoints per photo.
        refine: refine the keypoint warp by ECC on the in-focus area (kept only when it raises the score).
    """

    height: int = 1024
    work_scale: float = 2.0
    ratio: float = 0.75
    ransac_threshold: float = 3.0
    min_inliers: int = 25
    min_inlier_ratio: float = 0.2
    max_reprojection_error: float = 1.0
    min_score: float = 0.8
    min_overlap: float = 0.6
    max_corner_shift: float = 0.15
    max_features: int = 12000
    refine: bool = True

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Alignment:
    """Result of :func:`align_pair`. ``narrow`` / ``wide`` are float32 (H, W, 3) crops when ``ok``.

    ``matrix`` maps pixel coordinates of the upright wide-aperture photo to the upright narrow one, at the
    photos' full resolution (3x3, row-major); ``crop`` is ``(x, y, width, height)`` in the narrow photo.
    """

    ok: bool
    reason: str = ""
    model: str = ""
    matrix: list[list[float]] | None = None
    matches: int = 0
    inliers: int = 0
    inlier_ratio: float = 0.0
    reprojection_error: float | None = None
    score: float | None = None
    in_focus: float | None = None
    overlap: float | None = None
    crop: tuple[int, int, int, int] | None = None
    size: tuple[int, int] | None = None  # output (width, height)
    notes: list[str] = field(default_factory=list)
    narrow: np.ndarray | None = None
    wide: np.ndarray | None = None

    def metrics(self) -> dict[str, Any]:
        """Everything but the images (JSON-ready)."""
        out = {k: v for k, v in self.__dict__.items() if k not in ("narrow", "wide")}
        for key in ("reprojection_error", "score", "in_focus", "overlap", "inlier_ratio"):
            if out[key] is not None:
                out[key] = round(float(out[key]), 4)
        return out


def _gray(image: np.ndarray) -> np.ndarray:
    """Luma in [0, 1] stretched between its 0.5th and 99.5th percentiles, so exposure changes cancel."""
    gray = cv2.cvtColor(np.ascontiguousarray(image, dtype=np.float32), cv2.COLOR_RGB2GRAY)
    low, high = np.percentile(gray, (0.5, 99.5))
    return np.clip((gray - low) / max(float(high - low), 1e-6), 0.0, 1.0).astype(np.float32)


def _detail(gray: np.ndarray, sigma: float) -> np.ndarray:
    """Local high-frequency energy: |image - blur(image)| averaged over ``sigma``."""
    high = np.abs(gray - cv2.GaussianBlur(gray, (0, 0), 1.5))
    factor = int(sigma // 4)
    if factor < 2:
        return cv2.GaussianBlur(high, (0, 0), sigma)
    # a wide blur is the same on a smaller copy, and much faster
    height, width = high.shape
    small = cv2.resize(high, (max(1, width // factor), max(1, height // factor)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / factor)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def in_focus_mask(sharp: np.ndarray, bokeh: np.ndarray, *, sigma: float, ratio: float = 0.5) -> np.ndarray:
    """Where the bokeh photo keeps at least ``ratio`` of the sharp photo's fine detail (bool (H, W)).

    Both are normalized grayscale of the same size; ``sigma`` (px) sets how local the comparison is and must
    exceed any remaining misalignment. Flat areas (no detail in either) are not counted as in focus.
    """
    detail_sharp, detail_bokeh = _detail(sharp, sigma), _detail(bokeh, sigma)
    floor = 0.1 * float(np.percentile(detail_sharp, 90)) + 1e-6
    return (detail_bokeh >= ratio * detail_sharp) & (detail_sharp > floor)


def gradient_orientation_score(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Weighted mean cosine of the angle between the gradients of two grayscale images (in [-1, 1]).

    Weights are the weaker of the two gradient magnitudes, so edges present in only one image (blurred away,
    noise) count little and the result does not depend on exposure or on how sharp an edge is.
    """
    a = cv2.GaussianBlur(a, (0, 0), 1.0)
    b = cv2.GaussianBlur(b, (0, 0), 1.0)
    ax, ay = cv2.Sobel(a, cv2.CV_32F, 1, 0), cv2.Sobel(a, cv2.CV_32F, 0, 1)
    bx, by = cv2.Sobel(b, cv2.CV_32F, 1, 0), cv2.Sobel(b, cv2.CV_32F, 0, 1)
    mag_a, mag_b = np.hypot(ax, ay), np.hypot(bx, by)
    weight = np.minimum(mag_a, mag_b)
    if mask is not None:
        weight = weight * mask
    total = float(weight.sum())
    if total <= 1e-9:
        return 0.0
    cosine = (ax * bx + ay * by) / np.maximum(mag_a * mag_b, 1e-12)
    return float((weight * cosine).sum() / total)


def _resize(image: np.ndarray, height: int) -> np.ndarray:
    if image.shape[0] == height:
        return image
    width = max(1, round(image.shape[1] * height / image.shape[0]))
    interpolation = cv2.INTER_AREA if height < image.shape[0] else cv2.INTER_CUBIC
    return cv2.resize(image, (width, height), interpolation=interpolation)


def _scale_matrix(factor_x: float, factor_y: float) -> np.ndarray:
    return np.diag([factor_x, factor_y, 1.0])


def _fit(src: np.ndarray, dst: np.ndarray, model: str, threshold: float) -> tuple[np.ndarray | None, np.ndarray]:
    """RANSAC fit (MAGSAC++ for the homography), then least squares on the inliers twice; returns
    (3x3 matrix, inlier mask)."""
    if model == "homography":
        matrix, mask = cv2.findHomography(src, dst, cv2.USAC_MAGSAC, threshold, confidence=0.9999, maxIters=20000)
    else:
        matrix, mask = cv2.estimateAffine2D(
            src,
            dst,
            method=cv2.RANSAC,
            ransacReprojThreshold=threshold,
            maxIters=20000,
            confidence=0.9999,
            refineIters=20,
        )
        matrix = None if matrix is None else np.vstack([matrix, [0.0, 0.0, 1.0]])
    if matrix is None:
        return None, np.zeros(len(src), bool)
    inliers = mask.ravel().astype(bool)
    for _ in range(2):  # re-select inliers under the refined model and refit on all of them
        if inliers.sum() < 4:
            break
        if model == "homography":
            refined, _ = cv2.findHomography(src[inliers], dst[inliers], 0)
        else:  # linear least squares: [x y 1] @ A.T = [x' y']
            design = np.hstack([src[inliers], np.ones((int(inliers.sum()), 1))])
            solution, *_ = np.linalg.lstsq(design, dst[inliers], rcond=None)
            refined = np.vstack([solution.T, [0.0, 0.0, 1.0]])
        if refined is None:
            break
        matrix = refined
        inliers = _residuals(matrix, src, dst) <= threshold
    return matrix, inliers


def _choose_model(
    fits: dict[str, tuple[np.ndarray | None, np.ndarray]], src: np.ndarray, dst: np.ndarray
) -> tuple[str, np.ndarray | None, np.ndarray]:
    """The affine warp unless the homography fits the common inliers significantly better.

    "Significantly" is an F-test on the residual sums of squares (p < 0.01): the homography's two extra
    parameters must explain more than noise would. Tripod pairs usually differ by focus breathing and a small
    shift, which the affine warp describes with fewer parameters.
    """
    from scipy.stats import f as f_distribution

    (affine, in_a), (homography, in_h) = fits["affine"], fits["homography"]
    if affine is None or in_a.sum() < 4:
        return "homography", homography, in_h
    if homography is None or in_h.sum() < 5:
        return "affine", affine, in_a
    common = in_a & in_h
    n = int(common.sum())
    if in_h.sum() > in_a.sum() + max(5, 0.05 * in_a.sum()):
        return "homography", homography, in_h  # the affine model leaves many matches unexplained
    if n < 8:
        return "affine", affine, in_a
    rss_a = float(np.sum(_residuals(affine, src[common], dst[common]) ** 2))
    rss_h = float(np.sum(_residuals(homography, src[common], dst[common]) ** 2))
    dof = 2 * n - 8
    statistic = ((rss_a - rss_h) / 2.0) / max(rss_h / dof, 1e-12)
    if statistic > f_distribution.ppf(0.99, 2, dof):
        return "homography", homography, in_h
    return "affine", affine, in_a


def _refine_ecc(
    gray_n: np.ndarray, gray_w: np.ndarray, matrix: np.ndarray, model: str, mask: np.ndarray
) -> np.ndarray | None:
    """Sub-pixel refinement of ``matrix`` (wide -> narrow) by ECC (Evangelidis & Psarakis, 2008) on ``mask``.

    ECC maximises the zero-mean normalized correlation, so gain and offset differences do not matter; the
    mask keeps it to the area in focus in both photos. Returns ``None`` when it does not converge.
    """
    inverse = np.linalg.inv(matrix)  # ECC warps the template (narrow) coordinates into the input (wide)
    inverse /= inverse[2, 2]
    motion = cv2.MOTION_HOMOGRAPHY if model == "homography" else cv2.MOTION_AFFINE
    warp = inverse.astype(np.float32) if model == "homography" else inverse[:2].astype(np.float32)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-7)
    try:
        _, warp = cv2.findTransformECC(gray_n, gray_w, warp, motion, criteria, mask.astype(np.uint8), 3)
    except cv2.error:
        return None
    full = warp.astype(np.float64) if model == "homography" else np.vstack([warp.astype(np.float64), [0, 0, 1]])
    refined = np.linalg.inv(full)
    return refined / refined[2, 2]


def _residuals(matrix: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    projected = cv2.perspectiveTransform(src.reshape(-1, 1, 2).astype(np.float64), matrix).reshape(-1, 2)
    return np.linalg.norm(projected - dst, axis=1)


def _largest_rectangle(valid: np.ndarray) -> tuple[int, int, int, int]:
    """Axis-aligned rectangle inside ``valid`` (bool), by trimming the worst border line until none is invalid.

    The covered area of a warped rectangle is convex, for which this greedy trim finds a near-maximal box.
    """
    rows, cols = np.nonzero(valid)
    if rows.size == 0:
        return 0, 0, 0, 0
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    while top < bottom and left < right:
        box = valid[top:bottom, left:right]
        bad = {
            "top": box.shape[1] - int(box[0].sum()),
            "bottom": box.shape[1] - int(box[-1].sum()),
            "left": box.shape[0] - int(box[:, 0].sum()),
            "right": box.shape[0] - int(box[:, -1].sum()),
        }
        if not any(bad.values()):
            break
        # remove the edge with the most invalid pixels per pixel of its length
        side = max(bad, key=lambda s: bad[s] / (box.shape[1] if s in ("top", "bottom") else box.shape[0]))
        if side == "top":
            top += 1
        elif side == "bottom":
            bottom -= 1
        elif side == "left":
            left += 1
        else:
            right -= 1
    return int(left), int(top), int(right - left), int(bottom - top)


def _describe_warp(matrix: np.ndarray, width: int, height: int) -> tuple[float, float]:
    """(largest corner displacement as a fraction of the diagonal, area ratio) of a warp."""
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)
    moved = cv2.perspectiveTransform(corners.reshape(-1, 1, 2), matrix).reshape(-1, 2)
    shift = float(np.linalg.norm(moved - corners, axis=1).max()) / float(np.hypot(width, height))
    area = abs(cv2.contourArea(moved.astype(np.float32))) / float(width * height)
    return shift, area


def align_pair(narrow: np.ndarray, wide: np.ndarray, settings: AlignSettings | None = None) -> Alignment:
    """Align the wide-aperture photo onto the narrow-aperture one (float32 (H, W, 3) RGB in [0, 1], upright).

    Returns an :class:`Alignment`; ``ok`` is False with ``reason`` (and every number measured so far) when the
    pair fails a threshold of ``settings``. Deterministic: OpenCV's random generator is reseeded first.
    """
    settings = settings or AlignSettings()
    # RANSAC draws from OpenCV's global generator: seed it so that a pair always gives the same result,
    # whatever ran before (a rebuilt dataset must not change)
    cv2.setRNGSeed(0)
    if narrow.ndim != 3 or wide.ndim != 3:
        raise InputError("align_pair expects two (H, W, 3) images")
    if (narrow.shape[0] > narrow.shape[1]) != (wide.shape[0] > wide.shape[1]) and narrow.shape[0] != narrow.shape[1]:
        return Alignment(
            False,
            f"orientation differs: narrow {narrow.shape[1]}x{narrow.shape[0]}, wide {wide.shape[1]}x{wide.shape[0]}",
        )
    if not (np.all(np.isfinite(narrow)) and np.all(np.isfinite(wide))):
        raise InputError("align_pair: the images contain NaN or infinite values")
    narrow_aspect, wide_aspect = narrow.shape[1] / narrow.shape[0], wide.shape[1] / wide.shape[0]
    if abs(narrow_aspect - wide_aspect) > 0.01 * narrow_aspect:
        return Alignment(
            False,
            f"aspect ratios differ: narrow {narrow.shape[1]}x{narrow.shape[0]}, wide {wide.shape[1]}x{wide.shape[0]} "
            "(a different image format or crop setting between the shots?)",
        )
    # Two sizes: keypoints, refinement and scores at about the output size (fast, and what the numbers are
    # about); the warp itself at work_scale times that, so interpolation does not soften the target.
    work_height = min(narrow.shape[0], max(16, round(settings.work_scale * settings.height)))
    detect_height = min(work_height, max(16, settings.height))
    # same framing, maybe another resolution setting: both photos go to the same sizes
    small_n, small_w = _resize(narrow, work_height), _resize(wide, work_height)
    gray_n = _gray(_resize(small_n, detect_height))
    gray_w = _gray(_resize(small_w, detect_height))
    scale_n, scale_w = detect_height / narrow.shape[0], detect_height / wide.shape[0]
    to_work = _scale_matrix(work_height / detect_height, work_height / detect_height)

    # in-focus area of the bokeh photo, compared with the sharp one at a coarse scale (tolerates misalignment)
    focus_coarse = in_focus_mask(gray_n, gray_w, sigma=0.03 * detect_height, ratio=0.4).astype(np.uint8)
    if focus_coarse.mean() < 0.01:
        focus_coarse[:] = 1  # nothing judged in focus yet: search the whole photo, the score decides later
    sift = cv2.SIFT_create(nfeatures=settings.max_features)
    u8 = lambda g: np.round(g * 255).astype(np.uint8)  # noqa: E731
    kp_n, desc_n = sift.detectAndCompute(u8(gray_n), None)
    kp_w, desc_w = sift.detectAndCompute(u8(gray_w), focus_coarse * 255)
    if desc_n is None or desc_w is None or len(kp_n) < 2 or len(kp_w) < 2:
        return Alignment(False, f"too few keypoints: {len(kp_n)} in the narrow photo, {len(kp_w)} in the wide one")
    matcher = cv2.FlannBasedMatcher({"algorithm": 1, "trees": 5}, {"checks": 64})
    knn = matcher.knnMatch(desc_w, desc_n, k=2)
    good = [m[0] for m in knn if len(m) == 2 and m[0].distance < settings.ratio * m[1].distance]
    result = Alignment(False, matches=len(good))
    if len(good) < max(settings.min_inliers, 4):
        result.reason = (
            f"too few keypoint matches: {len(good)} after the ratio test (need {settings.min_inliers}); "
            f"{len(kp_n)} / {len(kp_w)} keypoints (different scenes, or no texture in focus?)"
        )
        return result
    src = np.float64([kp_w[m.queryIdx].pt for m in good])
    dst = np.float64([kp_n[m.trainIdx].pt for m in good])
    fits = {model: _fit(src, dst, model, settings.ransac_threshold) for model in ("affine", "homography")}
    model, matrix, inliers = _choose_model(fits, src, dst)
    if matrix is None:
        result.reason = f"RANSAC found no consistent warp among {len(good)} matches"
        return result

    def full_resolution(candidate: np.ndarray) -> list[list[float]]:
        # narrow_full = S_n^-1 . M . S_w . wide_full
        full = np.linalg.inv(_scale_matrix(scale_n, scale_n)) @ candidate @ _scale_matrix(scale_w, scale_w)
        return (full / full[2, 2]).tolist()

    result.model = model
    result.inliers = int(inliers.sum())
    result.inlier_ratio = result.inliers / len(good)
    result.matrix = full_resolution(matrix)
    size = (gray_n.shape[1], gray_n.shape[0])
    shift, area = _describe_warp(matrix, *size)
    if result.inliers < settings.min_inliers or result.inlier_ratio < settings.min_inlier_ratio:
        result.reason = (
            f"too few RANSAC inliers: {result.inliers} of {len(good)} matches ({result.inlier_ratio:.0%}; need "
            f"{settings.min_inliers} and {settings.min_inlier_ratio:.0%}): different scenes or too little in focus?"
        )
        return result
    if shift > settings.max_corner_shift or not 0.6 <= area <= 1.6:
        result.reason = (
            f"implausible warp for a tripod pair: a corner moves {shift:.0%} of the diagonal, area x{area:.2f} "
            f"(limit {settings.max_corner_shift:.0%}): different scenes or framing?"
        )
        return result

    def focus_and_score(candidate: np.ndarray) -> tuple[np.ndarray, float]:
        warped = cv2.warpPerspective(gray_w, candidate, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        cover = cv2.warpPerspective(np.ones_like(gray_w), candidate, size, flags=cv2.INTER_LINEAR)
        valid = cv2.erode((cover > 0.999).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        focus = in_focus_mask(gray_n, warped, sigma=0.01 * detect_height) & valid
        return focus, gradient_orientation_score(gray_n, warped, focus)

    focus, score = focus_and_score(matrix)
    if settings.refine and focus.mean() >= 0.005:
        refined = _refine_ecc(gray_n, gray_w, matrix, model, focus)
        if refined is not None and _describe_warp(refined, *size)[0] <= settings.max_corner_shift:
            candidate = focus_and_score(refined)
            if candidate[1] >= score:
                matrix, (focus, score) = refined, candidate
                result.notes.append("refined by ECC on the in-focus area")
    result.matrix = full_resolution(matrix)
    # warp the wide photo onto the narrow one at the working size and crop to the area both cover
    work_matrix = to_work @ matrix @ np.linalg.inv(to_work)
    work_size = (small_n.shape[1], small_n.shape[0])
    warped = cv2.warpPerspective(small_w, work_matrix, work_size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    cover = cv2.warpPerspective(np.ones(small_w.shape[:2], np.float32), work_matrix, work_size, flags=cv2.INTER_LINEAR)
    valid = cv2.erode((cover > 0.999).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    x, y, w, h = _largest_rectangle(valid)
    result.overlap = (w * h) / float(work_size[0] * work_size[1])
    out_h = min(settings.height, h)
    # keypoint residuals at the detection size, expressed in pixels of the output
    rms_detect = float(np.sqrt(np.mean(_residuals(matrix, src, dst)[inliers] ** 2)))
    result.reprojection_error = rms_detect * out_h / max(h * detect_height / work_height, 1.0)
    if result.overlap < settings.min_overlap:
        result.reason = f"the photos overlap too little: the common area is {result.overlap:.0%} of the frame"
        return result
    result.in_focus = float(focus.mean())
    if result.in_focus < 0.005:
        result.reason = (
            f"no in-focus area found in the wide photo after warping ({result.in_focus:.1%} of the frame): "
            "different scenes, or the focus missed everything?"
        )
        return result
    result.score = score
    if result.reprojection_error > settings.max_reprojection_error:
        result.reason = (
            f"reprojection error {result.reprojection_error:.2f} px above {settings.max_reprojection_error:g} px "
            f"({result.inliers} inliers, model {model})"
        )
        return result
    if result.score < settings.min_score:
        result.reason = (
            f"alignment score {result.score:.3f} below {settings.min_score:g} in the in-focus area "
            f"({result.in_focus:.0%} of the frame): the pair does not line up (moved subject, different scene?)"
        )
        return result
    work_scale_n = work_height / narrow.shape[0]
    # the crop at the working size, mapped back to the narrow photo's pixels (an even width, like EBB!)
    result.crop = tuple(round(v / work_scale_n) for v in (x, y, w, h))  # type: ignore[assignment]
    out_w = max(2, 2 * round(w * out_h / h / 2))
    if h < settings.height:
        result.notes.append(f"common area is {h} px high at the working size, below {settings.height}: not upscaled")
    result.size = (out_w, out_h)

    def resize(image: np.ndarray) -> np.ndarray:
        interpolation = cv2.INTER_AREA if out_h < h else cv2.INTER_CUBIC
        return cv2.resize(image[y : y + h, x : x + w], (out_w, out_h), interpolation=interpolation)

    result.narrow = np.clip(resize(small_n), 0.0, 1.0).astype(np.float32)
    result.wide = np.clip(resize(warped), 0.0, 1.0).astype(np.float32)
    result.ok = True
    return result
