"""Synthetic aperture pairs for the ``evaluation.pairs`` tests: the bundled real photos (``space/examples``) seen
through a known homography, blurred outside an in-focus ellipse, with their exposure changed."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "space" / "examples"
PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg"]


def homography(width: int, height: int, offsets: list[list[float]]) -> np.ndarray:
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


def corner_error(found: list[list[float]], true: np.ndarray, width: int, height: int) -> float:
    corners = np.float64([[0, 0], [width, 0], [width, height], [0, height]]).reshape(-1, 1, 2)
    a = cv2.perspectiveTransform(corners, np.asarray(found, np.float64))
    b = cv2.perspectiveTransform(corners, true.astype(np.float64))
    return float(np.linalg.norm(a - b, axis=-1).max())


def u8(image: np.ndarray) -> np.ndarray:
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)


def save_with_exif(
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
    Image.fromarray(u8(image)).save(path, exif=exif, quality=quality)
    return path
