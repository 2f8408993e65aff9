"""How far scikit-image's default SSIM (the ``dmshn`` profile) is from the Gaussian SSIM (``pynet`` profile).

On the bundled photos (``space/examples``): the target is the ``lens`` renderer's output (strength 24, focus
on the subject of the approximate, weight-free depth map), saved as 8-bit; the predictions are the sharp
photo itself and the ``gaussian`` and ``disk`` renderers' outputs at the same settings. Both SSIMs are taken
on the full image (no border crop) so only the SSIM definition differs: 7x7 uniform window with sample
covariance (scikit-image defaults, DMSHN's ``eval.py``) vs 11x11 Gaussian, sigma 1.5, population statistics
(TensorFlow, the authors' code). Prints every pair, the range of the difference per prediction, versions
and the CPU.

    python -m benchmarks.ssim_profiles [--long-side 768]
"""

from __future__ import annotations

import argparse
import io
import platform
import sys
from pathlib import Path

import numpy as np  # noqa: E402
import skimage  # noqa: E402
from PIL import Image  # noqa: E402

from bokeh_model import create_method  # noqa: E402
from bokeh_model.depth import approximate_depth  # noqa: E402
from evaluation.metrics import ssim, ssim_dmshn  # noqa: E402
from evaluation.runtime import hardware_label  # noqa: E402

__all__ = ["main"]

EXAMPLES = Path(__file__).resolve().parent.parent / "space" / "examples"


def _levels(image: np.ndarray) -> np.ndarray:
    """8-bit levels as float64 in [0, 1], as a saved PNG / JPEG holds them."""
    return np.round(np.clip(image, 0.0, 1.0) * 255.0) / 255.0


def _photo(path: Path, long_side: int) -> np.ndarray:
    with Image.open(path) as image:
        image = image.convert("RGB")
        scale = long_side / max(image.size)
        if scale < 1:
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)
        return np.asarray(image, dtype=np.float32) / 255.0


def _jpeg_roundtrip(image: np.ndarray, quality: int = 90) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(np.round(image * 255.0).astype(np.uint8)).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float64) / 255.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--long-side", type=int, default=768, help="resize photos to this long side (px)")
    args = parser.parse_args(argv)
    photos = sorted(p for p in EXAMPLES.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    renderers = {name: create_method(name) for name in ("lens", "gaussian", "disk")}
    differences: dict[str, list[float]] = {"sharp input": [], "gaussian": [], "disk": [], "target JPEG 90": []}
    print(f"{'photo':<24}{'prediction':<16}{'Gaussian SSIM':>15}{'skimage default':>17}{'default - Gaussian':>20}")
    for path in photos:
        photo = _photo(path, args.long_side)
        depth = approximate_depth(photo)
        settings = {"strength": 24.0, "focus_disparity": 0.8}
        target = _levels(renderers["lens"](photo, depth, **settings))
        predictions = {
            "sharp input": _levels(photo),
            "gaussian": _levels(renderers["gaussian"](photo, depth, **settings)),
            "disk": _levels(renderers["disk"](photo, depth, **settings)),
            "target JPEG 90": _jpeg_roundtrip(target),
        }
        for name, pred in predictions.items():
            gaussian, default = ssim(pred, target), ssim_dmshn(pred, target)
            differences[name].append(default - gaussian)
            label = f"{path.name} {photo.shape[1]}x{photo.shape[0]}"
            print(f"{label:<24}{name:<16}{gaussian:>15.4f}{default:>17.4f}{default - gaussian:>+20.4f}")
    print()
    for name, values in differences.items():
        print(f"{name:<16} default - Gaussian: {min(values):+.4f} .. {max(values):+.4f} over {len(values)} photos")
    print(
        f"\nnumpy {np.__version__}, scikit-image {skimage.__version__}, Python {platform.python_version()}, "
        f"{hardware_label('cpu')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
