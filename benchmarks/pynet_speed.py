"""PyNET-Bokeh forward time for a 512x768 input (1024x1536 output), the paper's test resolution.

CPU (threads fixed, fp32): eager vs channels_last, optionally torch.compile. CUDA when available:
fp32 vs bf16 autocast (and channels_last). Random weights: speed does not depend on their values.
The paper reports 0.14 s on an Nvidia Tesla V100 (Table 1).

    python benchmarks/pynet_speed.py [--threads 2] [--repeats 3] [--compile] [--size 512 768]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from _env import environment_lines

from bokeh_model.device import autocast, synchronize
from bokeh_model.modeling_pynet import PyNET

PAPER_V100_MS = 143.0


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, nargs=2, default=(512, 768), metavar=("H", "W"))
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile on CPU)")
    parser.add_argument("--skip-cpu", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("\n".join(environment_lines()))
    height, width = args.size
    print(f"input 4x{height}x{width} -> output 3x{2 * height}x{2 * width}, {args.repeats} timed runs after warm-up")

    results: dict[str, float] = {}
    model = PyNET().eval()
    x_cpu = torch.rand(1, 4, height, width)

    def report(name: str, times: list[float]) -> None:
        results[name] = statistics.median(times)
        print(f"{name:<28} median {results[name]:9.1f} ms   (min {min(times):.1f}, max {max(times):.1f})")

    if not args.skip_cpu:
        cpu = torch.device("cpu")
        with torch.inference_mode():
            report("cpu fp32 eager", _time(lambda: model(x_cpu), cpu, args.repeats, 1))
            cl_model = PyNET().eval().to(memory_format=torch.channels_last)
            cl_model.load_state_dict(model.state_dict())
            x_cl = x_cpu.contiguous(memory_format=torch.channels_last)
            report("cpu fp32 channels_last", _time(lambda: cl_model(x_cl), cpu, args.repeats, 1))
            if args.compile:
                compiled = torch.compile(model)
                start = time.perf_counter()
                compiled(x_cpu)
                print(f"torch.compile first call: {time.perf_counter() - start:.1f} s")
                report("cpu fp32 compiled", _time(lambda: compiled(x_cpu), cpu, args.repeats, 1))

    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        gmodel = PyNET().eval().to(gpu)
        gmodel.load_state_dict(model.state_dict())
        x = x_cpu.to(gpu)
        with torch.inference_mode():
            for precision in ("fp32", "bf16"):

                def run(precision: str = precision) -> None:
                    with autocast(gpu, precision):
                        gmodel(x)

                report(f"cuda {precision}", _time(run, gpu, max(args.repeats, 20), 5))
            gmodel = gmodel.to(memory_format=torch.channels_last)
            xcl = x.contiguous(memory_format=torch.channels_last)
            for precision in ("fp32", "bf16"):

                def run_cl(precision: str = precision) -> None:
                    with autocast(gpu, precision):
                        gmodel(xcl)

                report(f"cuda {precision} channels_last", _time(run_cl, gpu, max(args.repeats, 20), 5))

    base = results.get("cpu fp32 eager")
    print("\nratios:")
    for name, ms in results.items():
        versus_eager = f"{base / ms:5.2f}x vs cpu eager" if base else ""
        print(f"  {name:<28} {versus_eager}   {PAPER_V100_MS / ms:7.3f}x the paper's V100 speed (143 ms)")


if __name__ == "__main__":
    main()
