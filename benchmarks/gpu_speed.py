"""GPU speed of PyNET-Bokeh and the lens renderer, one table, a few minutes on any CUDA machine.

PyNET (full size, random weights: speed does not depend on their values) at a 512x768 input = 1024x1536 output, the
paper's test resolution, in fp32 / bf16 / fp16 autocast, each as NCHW eager, channels_last and
torch.compile(channels_last); then the `lens` renderer on CUDA at 1024x1536 with K = 32 (numpy in, numpy out).
Every figure: warm-up runs first, then CUDA-synchronised wall times, median of --repeats. The paper's reference is
0.14 s per image on an Nvidia Tesla V100 (Table 1); the table gives the ratio to it.

    python -m benchmarks.gpu_speed [--repeats 20] [--warmup 5] [--no-compile] [--precisions fp32,bf16,fp16]

Without a CUDA GPU it prints why and exits with code 3. `--device cpu` runs the same code on the CPU (meant for a
quick check of the script with a small --size, not for figures).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch

from benchmarks._env import environment_lines
from bokeh_model import create_method
from bokeh_model.device import PRECISIONS, autocast, synchronize
from bokeh_model.modeling_pynet import PyNET

PAPER_V100_MS = 140.0
EXIT_NO_GPU = 3


def _time(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N, or cpu for a check of the script")
    parser.add_argument("--size", type=int, nargs=2, default=(512, 768), metavar=("H", "W"), help="PyNET input")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per row (default 20)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs per row first (default 5)")
    parser.add_argument("--precisions", default="fp32,bf16,fp16", help="comma-separated subset of fp32,bf16,fp16")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    parser.add_argument("--skip-lens", action="store_true", help="skip the lens renderer row")
    parser.add_argument("--lens-size", type=int, nargs=2, default=(1024, 1536), metavar=("H", "W"))
    parser.add_argument("--strength", type=float, default=32.0, help="lens K, the largest blur radius in px")
    args = parser.parse_args(argv)
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    bad = sorted(set(precisions) - set(PRECISIONS))
    if bad or not precisions:
        parser.error(f"unknown precisions {bad}; choose from {list(PRECISIONS)}")
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    args.precisions = precisions
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        device = torch.device(args.device)
    except RuntimeError:
        print(f"error: unknown device {args.device!r}; use cuda, cuda:N or cpu", file=sys.stderr)
        return 2
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            "error: no CUDA GPU is visible to PyTorch here (torch.cuda.is_available() is False); run this on a "
            "CUDA machine, or pass --device cpu --size 64 96 to check the script itself",
            file=sys.stderr,
        )
        return EXIT_NO_GPU
    print("\n".join(environment_lines()))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick its fastest kernels
    height, width = args.size
    print(
        f"device {device}; PyNET input 1x4x{height}x{width} -> output 1x3x{2 * height}x{2 * width}; "
        f"median of {args.repeats} CUDA-synchronised runs after {args.warmup} warm-up"
    )
    rows: list[tuple[str, float, str]] = []

    def report(name: str, times: list[float], note: str = "") -> None:
        ms = statistics.median(times)
        rows.append((name, ms, note))
        print(f"{name:<36} {ms:9.2f} ms  (min {min(times):.2f}, max {max(times):.2f}) {note}", flush=True)

    torch.manual_seed(0)
    model = PyNET().eval().to(device)
    twin = PyNET().eval().to(device)  # a channels-last copy; the NCHW model stays as it is
    twin.load_state_dict(model.state_dict())
    twin = twin.to(memory_format=torch.channels_last)
    x = torch.rand(1, 4, height, width, device=device)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    compiled = None if args.no_compile else torch.compile(twin)
    for precision in args.precisions:
        if precision == "fp16" and device.type != "cuda":
            print(f"{'pynet fp16':<36} skipped: fp16 autocast needs CUDA")
            continue
        variants: list[tuple[str, Callable[[], object]]] = [
            ("eager", lambda: model(x)),
            ("channels_last", lambda: twin(x_cl)),
        ]
        if compiled is not None:
            variants.append(("compile+channels_last", lambda: compiled(x_cl)))
        for variant, forward in variants:

            def run(forward: Callable[[], object] = forward, precision: str = precision) -> None:
                with torch.inference_mode(), autocast(device, precision):
                    forward()

            note = ""
            if variant.startswith("compile"):
                start = time.perf_counter()
                run()  # compiles for this precision
                synchronize(device)
                note = f"(compiled in {time.perf_counter() - start:.0f} s)"
            try:
                report(f"pynet {precision} {variant}", _time(run, device, args.repeats, args.warmup), note)
            except Exception as exc:  # noqa: BLE001 - report the row and keep measuring the others
                print(f"pynet {precision} {variant}: FAILED {type(exc).__name__}: {exc}")

    if not args.skip_lens:
        from benchmarks.render_speed import make_scene  # the synthetic RGB-D scene of the CPU renderer benchmark

        lens_h, lens_w = args.lens_size
        image, depth, focus = make_scene(lens_h, lens_w)
        lens = create_method("lens", device=str(device))
        params = {"strength": args.strength, "focus_disparity": focus}
        lens(image[:64, :64], depth[:64, :64], **params)  # first-use set-up
        report(
            f"lens {lens_w}x{lens_h} K={args.strength:g}",
            _time(lambda: lens(image, depth, **params), device, args.repeats, args.warmup),
            "(numpy in, numpy out)",
        )

    print("\n| run | ms | x the paper's V100 (140 ms) |")
    print("|---|---:|---:|")
    for name, ms, _ in rows:
        print(f"| {name} | {ms:.2f} | {PAPER_V100_MS / ms:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
