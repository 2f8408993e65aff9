"""Evaluation-portal throughput: check + score one submission under both profiles, extrapolated to Val294.

Builds a Val294-like dataset of N photo-like 1536x1024 pairs with ``evaluation.ebb`` (procedural images, not
EBB!), a zip of PNG predictions, then times, for two sizes N1 < N2:

- ``submit``: the checks (zip headers, extraction with byte counting, full decode of every image, hashes);
- ``score``: ``Portal.process_next`` (``evaluation/run.py`` under ``pynet`` and ``dmshn`` in one pass, in this
  process; results stored), with the evaluation's own stages (decode, metrics per profile, LPIPS, writes,
  bookkeeping, start-up, tables) and what the portal adds around it;
- reference: ``evaluation/run.py --profile pynet,dmshn --predictions`` called directly on the same files.

Per-image cost is the slope between N1 and N2 (so start-up costs do not inflate it); the 294-image estimate is
``fixed + 294 * slope``. The ratio portal/reference shows what the portal adds. LPIPS is included only when the
AlexNet trunk is in the torch hub cache (say so with the printed line); ``--no-lpips`` scores without it even then.

    python -m benchmarks.portal_scoring [--counts 4 10] [--width 1536 --height 1024]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks._common import add_size_counts, parse_size_counts, print_stage_slopes  # noqa: E402
from benchmarks._env import environment_lines  # noqa: E402

__all__ = ["main"]


def _photo(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Photo-like content (smooth structure + fine texture) so PNG and JPEG sizes resemble real photos."""
    small = rng.random((height // 32, width // 32, 3))
    base = np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((width, height), Image.BICUBIC))
    return np.clip(base.astype(np.int16) + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def _encode(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def _setup(folder: Path, count: int, width: int, height: int) -> tuple[Path, Path, Path]:
    from evaluation import ebb

    rng = np.random.default_rng(count)
    source = folder / "Training.zip"
    predictions = folder / "preds"
    predictions.mkdir(parents=True)
    with zipfile.ZipFile(source, "w") as archive:
        for i in ["0", *(str(4400 + k) for k in range(count))]:
            photo = _photo(rng, width, height)
            bokeh = np.asarray(Image.fromarray(photo).resize((width // 8, height // 8)).resize((width, height)))
            archive.writestr(f"Training/original/{i}.jpg", _encode(photo, "JPEG"))
            archive.writestr(f"Training/bokeh/{i}.jpg", _encode(bokeh, "JPEG"))
            if i != "0":
                pred = np.clip(bokeh.astype(np.int16) + 6, 0, 255).astype(np.uint8)
                (predictions / f"{i}.png").write_bytes(_encode(pred, "PNG"))
    dataset = folder / f"ebb_hf_{uuid.uuid4().hex[:12]}"  # `datasets` caches local folders by name
    ebb.build_dataset(source, dataset, log=lambda line: None)
    submission = folder / "preds.zip"
    with zipfile.ZipFile(submission, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(predictions.iterdir()):
            archive.write(path, path.name)
    return dataset, predictions, submission


def _measure(count: int, width: int, height: int, lpips: bool = True) -> dict[str, Any]:
    from evaluation.portal import Portal, PortalSettings, SubmissionMeta, Submitter, service
    from evaluation.run import main as run_main
    from evaluation.scoring import StageTimes

    with tempfile.TemporaryDirectory(prefix="portal-bench-") as tmp:
        folder = Path(tmp)
        dataset, predictions, submission = _setup(folder, count, width, height)
        settings = PortalSettings(root=folder / "portal", dataset=str(dataset), device="cpu", lpips=lpips)
        portal = Portal(settings)
        portal.targets("val294")  # reading the split's target sizes once is a start-up cost of the server
        start = time.perf_counter()
        sub_id = portal.submit(submission, SubmissionMeta("Bench", "bench", "MIT"), Submitter("bench"))
        submit_s = time.perf_counter() - start
        times = StageTimes()
        original = service.score_with_evaluation
        evaluation_s = [0.0]

        def timed_scoring(*args: Any, **kwargs: Any) -> Any:
            begin = time.perf_counter()
            try:
                return original(*args, times=times, **kwargs)
            finally:
                evaluation_s[0] += time.perf_counter() - begin

        service.score_with_evaluation = timed_scoring
        try:
            start, cpu = time.perf_counter(), time.process_time()
            portal.process_next()
            score_s, score_cpu = time.perf_counter() - start, time.process_time() - cpu
        finally:
            service.score_with_evaluation = original
        assert portal.status(sub_id)["status"] == "scored", portal.status(sub_id)
        lpips_used = bool(portal.store.result(sub_id, "pynet")["run"]["lpips"]["available"])
        start = time.perf_counter()
        argv = ["--dataset", str(dataset), "--methods", "none", "--predictions", f"ref={predictions}"]
        argv += ["--profile", "pynet,dmshn", "--device", "cpu", "--out", str(folder / "reference")]
        assert run_main([*argv, *([] if lpips else ["--no-lpips"])]) == 0
        reference_s = time.perf_counter() - start
        stages = dict(times.seconds)
        stages["portal bookkeeping"] = score_s - evaluation_s[0]
        return {
            "submit": submit_s,
            "score": score_s,
            "score cpu": score_cpu,
            "reference": reference_s,
            "zip_mb": submission.stat().st_size / 1e6,
            "lpips": lpips_used,
            "stages": stages,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_size_counts(parser, (4, 10))
    parser.add_argument("--target", type=int, default=294, help="images to extrapolate to (Val294)")
    parser.add_argument("--no-lpips", action="store_true", help="score without LPIPS even when its trunk is here")
    args = parser.parse_args(argv)
    n1, n2 = parse_size_counts(parser, args)
    for line in environment_lines():
        print(line)
    lpips = not args.no_lpips
    _measure(1, 256, 192, lpips)  # warm-up: first imports and initialisations would otherwise fall on the first stage
    small, large = _measure(n1, args.width, args.height, lpips), _measure(n2, args.width, args.height, lpips)
    print(
        f"{args.width}x{args.height} PNG predictions; zip {small['zip_mb'] / n1:.2f} MB per image; "
        f"LPIPS {'included' if large['lpips'] else 'not included (no AlexNet trunk in the torch hub cache)'}"
    )
    print(f"{'stage':>22} | {n1:>3} images | {n2:>3} images | per image | estimate for {args.target}")
    for key, label in (
        ("submit", "checks (submit)"),
        ("score", "portal scoring (both)"),
        ("score cpu", "  its CPU time"),
        ("reference", "run.py alone (both)"),
    ):
        slope = (large[key] - small[key]) / (n2 - n1)
        fixed = max(0.0, small[key] - n1 * slope)
        print(
            f"{label:>22} | {small[key]:9.2f} s | {large[key]:9.2f} s | {slope:7.3f} s | "
            f"{(fixed + args.target * slope) / 60:6.1f} min"
        )
    ratio = large["score"] / large["reference"]
    print(f"portal scoring / run.py alone at {n2} images: {ratio:.2f}x (the portal's own bookkeeping)")
    print("stages of the portal's scoring (decode threads overlap the metrics, so stages can exceed the wall time):")
    print_stage_slopes(small["stages"], large["stages"], n1, n2, 18, "fixed per submission")
    return 0


if __name__ == "__main__":
    sys.exit(main())
