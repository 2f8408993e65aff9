"""Evaluation speed: ``evaluation/run.py --methods none --predictions ... --no-lpips`` under both profiles against a
plain reference loop, per image, by stage.

Builds a Val294-like dataset of photo-like 1536x1024 pairs with ``evaluation.ebb`` (procedural images, not EBB!)
and PNG predictions, then, in this one process, for two sizes N1 < N2 (default 4 and 16):

- ``run.py``: ``evaluation/run.py --profile pynet,dmshn --methods none --predictions ... --no-lpips`` (one pass);
- reference: for each profile, a plain loop that decodes target and prediction with Pillow and calls
  scikit-image's PSNR and SSIM (Gaussian 11x11, sigma 1.5, population statistics on [0, 1] after the 32-px crop
  for ``pynet``; its defaults on 8-bit levels for ``dmshn``).

The per-image cost is the slope between N1 and N2 (start-up costs do not inflate it). The run's stage times
(decode, metrics per profile, writes, bookkeeping; summed over the decoding threads, so they can add up to more
than the wall time) show where the time goes. The numbers of the run are checked against the reference loop
and against the float functions of ``evaluation.metrics`` (the path every image took before).

    python -m benchmarks.eval_speed [--counts 4 16] [--width 1536 --height 1024] [--lpips]

On a shared machine the absolute times move with the load; the ratio run / reference is measured in the same
process, minutes apart at most.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks._common import add_size_counts, parse_size_counts, print_stage_slopes
from benchmarks._env import environment_lines
from benchmarks.portal_scoring import _setup

__all__ = ["main"]


def _reference_loop(dataset_preds: tuple[Path, Path], ids: list[str], profile: str) -> dict[str, tuple[float, float]]:
    """Decode target and prediction, scikit-image PSNR and SSIM of one profile; per id (psnr, ssim)."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    targets, preds = dataset_preds
    scores = {}
    for sample_id in ids:
        target = np.asarray(Image.open(targets / f"{sample_id}.jpg").convert("RGB"))
        pred = np.asarray(Image.open(preds / f"{sample_id}.png").convert("RGB"))
        if profile == "pynet":
            t = target[32:-32, 32:-32].astype(np.float64) / 255.0
            p = pred[32:-32, 32:-32].astype(np.float64) / 255.0
            psnr = peak_signal_noise_ratio(t, p, data_range=1.0)
            ssim = structural_similarity(
                t, p, data_range=1.0, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
            )
        else:
            t, p = target.astype(np.float64), pred.astype(np.float64)
            psnr = peak_signal_noise_ratio(t, p, data_range=255.0)
            ssim = structural_similarity(t, p, data_range=255.0, channel_axis=-1)
        scores[sample_id] = (float(psnr), float(ssim))
    return scores


def _targets_folder(dataset: Path, folder: Path) -> Path:
    """The targets as plain files (the reference loop reads files, as a user's script would)."""
    from evaluation.dataset import open_source

    folder.mkdir(parents=True, exist_ok=True)
    for sample in open_source(str(dataset), "val294").iter_samples():
        (folder / f"{sample.id}.jpg").write_bytes(sample.bokeh)
    return folder


def _stand_in_trunk() -> None:
    """A random AlexNet trunk in a temporary torch hub folder, for timing LPIPS where the real one is absent."""
    import torch
    import torchvision

    from bokeh_model.lpips_trunk import ALEXNET_FILE

    hub = Path(tempfile.mkdtemp(prefix="stand-in-hub-"))
    (hub / "checkpoints").mkdir()
    torch.manual_seed(0)
    torch.save(torchvision.models.alexnet().state_dict(), hub / "checkpoints" / ALEXNET_FILE)
    torch.hub.set_dir(str(hub))


def _measure(count: int, width: int, height: int, lpips: bool) -> dict:
    import pandas as pd

    from evaluation.config import EvalConfig
    from evaluation.runner import run_evaluation_profiles
    from evaluation.scoring import StageTimes

    with tempfile.TemporaryDirectory(prefix="eval-speed-") as tmp:
        folder = Path(tmp)
        dataset, predictions, _ = _setup(folder, count, width, height)
        targets = _targets_folder(dataset, folder / "targets")
        ids = sorted(p.stem for p in predictions.glob("*.png"))
        times = StageTimes()
        config = EvalConfig(
            dataset=str(dataset),
            methods=["none"],
            predictions=[f"ref={predictions}"],
            profile="pynet,dmshn",
            lpips=lpips,
            allow_unofficial_lpips=lpips,  # only the stand-in trunk of --stand-in-lpips is unofficial
            device="cpu",
            out=str(folder / "run"),
        )
        start, cpu = time.perf_counter(), time.process_time()
        run_evaluation_profiles(config, times=times)
        run_s, run_cpu = time.perf_counter() - start, time.process_time() - cpu
        start, cpu = time.perf_counter(), time.process_time()
        reference = {profile: _reference_loop((targets, predictions), ids, profile) for profile in ("pynet", "dmshn")}
        reference_s, reference_cpu = time.perf_counter() - start, time.process_time() - cpu
        # The same numbers: against the reference loop and against the float path of evaluation.metrics.
        from bokeh_model.images import load_image
        from evaluation.metrics import score_pair

        diffs: dict[str, float] = {}
        for profile in ("pynet", "dmshn"):
            frame = pd.read_csv(folder / "run" / profile / "per_image.csv", dtype={"id": str}).set_index("id")
            for sample_id in ids:
                for k, metric in enumerate(("psnr", "ssim")):
                    value = float(frame.loc[sample_id, metric])
                    key = f"{profile} {metric} vs reference"
                    diffs[key] = max(diffs.get(key, 0.0), abs(value - reference[profile][sample_id][k]))
            if profile == "pynet":  # dmshn's float path is the reference loop itself (scikit-image)
                for sample_id in ids[:4]:
                    target = load_image(targets / f"{sample_id}.jpg").astype(np.float64)
                    pred = load_image(predictions / f"{sample_id}.png").astype(np.float64)
                    old = score_pair(np.round(pred * 255) / 255, np.round(target * 255) / 255, profile)
                    for metric in ("psnr", "ssim"):
                        key = f"{profile} {metric} vs float path"
                        value = float(frame.loc[sample_id, metric])
                        diffs[key] = max(diffs.get(key, 0.0), abs(value - old[metric]))
        return {
            "run": run_s,
            "reference": reference_s,
            "run cpu": run_cpu,
            "reference cpu": reference_cpu,
            "stages": dict(times.seconds),
            "diffs": diffs,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_size_counts(parser, (4, 16))
    parser.add_argument("--lpips", action="store_true", help="include LPIPS (needs the AlexNet trunk)")
    parser.add_argument(
        "--stand-in-lpips",
        action="store_true",
        help="include LPIPS with a random-weights AlexNet trunk (timing only: its values mean nothing)",
    )
    args = parser.parse_args(argv)
    n1, n2 = parse_size_counts(parser, args)
    for line in environment_lines():
        print(line)
    if args.stand_in_lpips:
        _stand_in_trunk()
        args.lpips = True
        print("LPIPS: random-weights stand-in AlexNet trunk (the cost is weight-independent; the values are not)")
    _measure(1, 256, 192, args.lpips)  # warm-up: imports, numba caches, first-call initialisations
    small = _measure(n1, args.width, args.height, args.lpips)
    large = _measure(n2, args.width, args.height, args.lpips)
    print(f"{args.width}x{args.height} JPEG targets, PNG predictions; profiles pynet + dmshn; LPIPS {args.lpips}")
    print(f"{'':>34} | {n1:>3} images | {n2:>3} images | per image (slope)")
    slopes = {}
    for key, label in (
        ("run", "run.py, both profiles, one pass"),
        ("reference", "reference loop, once per profile"),
        ("run cpu", "  CPU time of run.py"),
        ("reference cpu", "  CPU time of the reference loop"),
    ):
        slopes[key] = (large[key] - small[key]) / (n2 - n1)
        print(f"{label:>34} | {small[key]:9.2f} s | {large[key]:9.2f} s | {slopes[key]:7.3f} s")
    print(
        f"run.py / reference per image: {slopes['run'] / slopes['reference']:.3f}x wall time (issue target <= 0.35x), "
        f"{slopes['run cpu'] / slopes['reference cpu']:.3f}x CPU time"
    )
    print(f"stages of run.py (seconds per image, slope {n1}->{n2}; decoding threads overlap the metrics):")
    print_stage_slopes(small["stages"], large["stages"], n1, n2, 16)
    print("largest differences of the run's numbers (all images of both sizes):")
    for key in sorted(large["diffs"]):
        print(f"  {key:>28}: {max(small['diffs'].get(key, 0.0), large['diffs'][key]):.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
