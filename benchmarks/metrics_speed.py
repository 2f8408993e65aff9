"""PSNR + SSIM speed and agreement: evaluation.metrics vs scikit-image (Wang settings), one 1024x1536 pair.

Prints per-pair times of both implementations (best of a few repeats, same process, same inputs), the speed
ratio and the largest absolute difference of the two values, plus versions and the CPU.
Target: ours at least 5x faster with |difference| <= 1e-6.

    python -m benchmarks.metrics_speed [--repeats 3] [--height 1024 --width 1536]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import skimage  # noqa: E402
import torch  # noqa: E402
from skimage.metrics import peak_signal_noise_ratio, structural_similarity  # noqa: E402

from evaluation.metrics import psnr, ssim  # noqa: E402
from evaluation.runtime import hardware_label  # noqa: E402

__all__ = ["main"]


def _pair(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """A photo-like 8-bit target (smooth structure + texture) and a blurred, noisy prediction, as float64."""
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.random((height, width, 3)), (0, 0), 4)
    base = (base - base.min()) / (base.max() - base.min())
    target = np.clip(base + 0.08 * rng.standard_normal(base.shape), 0, 1)
    pred = np.clip(cv2.GaussianBlur(target, (0, 0), 1.5) + 0.01 * rng.standard_normal(base.shape), 0, 1)
    return np.round(pred * 255) / 255, np.round(target * 255) / 255


def _timed(fn) -> tuple[float, float, tuple[float, float]]:
    """(wall s, process CPU s over all threads, value) of one call."""
    start, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return time.perf_counter() - start, time.process_time() - cpu, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=1536)
    args = parser.parse_args(argv)
    pred, target = _pair(args.height, args.width)

    def ours() -> tuple[float, float]:
        return psnr(pred, target), ssim(pred, target)

    def reference() -> tuple[float, float]:
        return (
            peak_signal_noise_ratio(target, pred, data_range=1.0),
            structural_similarity(
                target,
                pred,
                channel_axis=-1,
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=1.0,
            ),
        )

    ours()  # warm-up (imports, allocations)
    reference()
    # Interleaved repeats, so that load from other processes hits both implementations alike; best of each.
    runs_ours, runs_ref = [], []
    for _ in range(args.repeats):
        runs_ours.append(_timed(ours))
        runs_ref.append(_timed(reference))
    t_ours, c_ours = min(r[0] for r in runs_ours), min(r[1] for r in runs_ours)
    t_ref, c_ref = min(r[0] for r in runs_ref), min(r[1] for r in runs_ref)
    p_ours, s_ours = runs_ours[-1][2]
    p_ref, s_ref = runs_ref[-1][2]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__}, "
        f"scikit-image {skimage.__version__}, opencv {cv2.__version__} ({cv2.getNumThreads()} threads)"
    )
    print(f"device: {hardware_label('cpu')}; load average {load:.2f} on {os.cpu_count()} CPUs")
    print(f"pair: {args.width}x{args.height}x3 float64, best of {args.repeats} interleaved repeats")
    print(
        f"ours    PSNR+SSIM: {t_ours * 1000:8.1f} ms wall {c_ours * 1000:8.1f} ms CPU  "
        f"PSNR {p_ours:.10f}  SSIM {s_ours:.10f}"
    )
    print(
        f"skimage PSNR+SSIM: {t_ref * 1000:8.1f} ms wall {c_ref * 1000:8.1f} ms CPU  "
        f"PSNR {p_ref:.10f}  SSIM {s_ref:.10f}"
    )
    print(
        f"speed-up: {t_ref / t_ours:.2f}x wall, {c_ref / c_ours:.2f}x CPU time   "
        f"max |diff|: PSNR {abs(p_ours - p_ref):.2e}, SSIM {abs(s_ours - s_ref):.2e}"
    )
    ok = t_ref / t_ours >= 5 and abs(s_ours - s_ref) <= 1e-6 and abs(p_ours - p_ref) <= 1e-9
    print("target (>= 5x wall, SSIM diff <= 1e-6, PSNR diff <= 1e-9):", "met" if ok else "NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
