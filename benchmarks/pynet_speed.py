"""PyNET-Bokeh CPU backends compared in one run: the same model, the same 512x768 input (1024x1536 output).

Backends: PyTorch eager, channels_last, torch.compile, ONNX Runtime, OpenVINO (fp32), and int8 ONNX Runtime
(dynamic and static QDQ quantisation). Each row gives the median time, the speed-up over eager and the PSNR of the
output against PyTorch fp32 eager (a backend counts as exact enough for `backend="auto"` at >= 50 dB).

The model is the full-size network with He-scaled random weights (the authors' init makes an untrained output
nearly constant, which would make the PSNR column meaningless); pass --weights for a trained one. Speed does not
depend on the weight values. The paper reports 0.14 s on an Nvidia Tesla V100 (Table 1); for GPUs see
``python -m benchmarks.gpu_speed``.

    python -m benchmarks.pynet_speed [--threads 2] [--repeats 3] [--size 512 768] [--backends eager,onnxruntime]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks._env import environment_lines
from bokeh_model.backends import BACKENDS, MIN_PSNR_VS_FP32, backend_status, get_runner
from tests._tiny_models import he_random_pynet

INT8_BACKENDS = ("onnxruntime-int8-dynamic", "onnxruntime-int8-static")
ALL = (*BACKENDS, *INT8_BACKENDS)


def _time(fn: Callable[[], object], repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return times


def _psnr(out: np.ndarray, ref: np.ndarray) -> float:
    # Outputs clipped to [0, 1] as the library returns them.
    mse = float(np.mean((np.clip(out, 0, 1).astype(np.float64) - np.clip(ref, 0, 1)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def _int8_session(onnx_path: Path, mode: str, calibration: list[np.ndarray], threads: int, workdir: Path):
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = workdir / "pre.onnx"
    if not pre.exists():
        quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
    out = workdir / f"{mode}.onnx"
    if mode == "dynamic":
        quantize_dynamic(str(pre), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"])
    else:

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.items = iter([{"input": item} for item in calibration])

            def get_next(self):
                return next(self.items, None)

        quantize_static(
            str(pre),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["Conv"],
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for every backend (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per backend (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per backend first (default 1)")
    parser.add_argument("--size", type=int, nargs=2, default=(512, 768), metavar=("H", "W"), help="input size")
    parser.add_argument(
        "--backends",
        default=",".join(b for b in ALL if b != "compile"),
        help=f"comma-separated subset of {','.join(ALL)} (default: all but compile, which compiles for minutes)",
    )
    parser.add_argument("--weights", help="trained PyNET weights folder (default: He-scaled random weights)")
    parser.add_argument("--level", type=int, default=1, help="output level (default 1, full resolution)")
    parser.add_argument("--calibration", type=int, default=4, help="random inputs for static int8 calibration")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.backends.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(ALL))
    if unknown:
        parser.error(f"unknown backends {unknown}; choose from {list(ALL)}")
    if "eager" not in chosen:
        chosen.insert(0, "eager")  # the reference of every ratio and PSNR
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    print("\n".join(environment_lines()))
    versions = []
    for module in ("onnxruntime", "openvino", "onnx"):
        try:
            versions.append(f"{module} {__import__(module).__version__}")
        except ImportError:
            versions.append(f"{module} not installed")
    print(", ".join(versions))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average {load:.2f} on {os.cpu_count()} CPUs (other processes make every figure slower and noisier)")
    height, width = args.size
    print(
        f"input 1x4x{height}x{width} -> level {args.level}; {args.threads} threads; "
        f"median of {args.repeats} runs after {args.warmup} warm-up"
    )

    if args.weights:
        from bokeh_model.pynet import load_pynet

        model = load_pynet(args.weights, device="cpu")
    else:
        model = he_random_pynet()
    x = torch.rand(1, model.in_channels, height, width, generator=torch.Generator().manual_seed(1))
    rows: list[tuple[str, float, float, str]] = []
    reference: np.ndarray | None = None
    eager_ms = float("nan")
    tmp = Path(tempfile.mkdtemp(prefix="pynet-bench-"))
    os.environ.setdefault("BOKEH_CACHE", str(tmp / "cache"))  # exports of random weights do not pollute the cache

    for name in chosen:
        note = ""
        try:
            if name in INT8_BACKENDS:
                ok, reason = backend_status("onnxruntime")
                if not ok:
                    print(f"{name:<26} skipped: {reason}")
                    continue
                from bokeh_model.backends import _cached_onnx

                start = time.perf_counter()
                calibration = [
                    torch.rand(1, model.in_channels, height, width, generator=torch.Generator().manual_seed(100 + i))
                    .numpy()
                    .astype(np.float32)
                    for i in range(args.calibration)
                ]
                session = _int8_session(
                    _cached_onnx(model, args.level, ()),
                    name.rsplit("-", 1)[1],
                    calibration,
                    args.threads,
                    tmp,
                )
                note = f"prepared in {time.perf_counter() - start:.0f} s"

                def fn(session=session) -> np.ndarray:
                    return session.run(None, {"input": x.numpy()})[0]
            else:
                ok, reason = backend_status(name)
                if not ok:
                    print(f"{name:<26} skipped: {reason}")
                    continue
                start = time.perf_counter()
                runner = get_runner(model, name, args.level)
                with torch.inference_mode():
                    runner(x)  # builds/compiles on first use
                note = f"first call {time.perf_counter() - start:.0f} s"

                def fn(runner=runner) -> np.ndarray:
                    with torch.inference_mode():
                        return runner(x).numpy()

            out = fn()
            times = _time(fn, args.repeats, max(0, args.warmup - 1))
        except Exception as exc:  # noqa: BLE001 - one failing backend must not hide the others' figures
            print(f"{name:<26} FAILED: {type(exc).__name__}: {exc}")
            continue
        ms = statistics.median(times)
        if name == "eager":
            reference, eager_ms = out, ms
        quality = _psnr(out, reference) if reference is not None else float("nan")
        rows.append((name, ms, quality, note))
        print(f"{name:<26} {ms:9.1f} ms  (min {min(times):.1f}, max {max(times):.1f}; {note})", flush=True)

    print(f"\n| backend | ms | x vs eager | PSNR vs fp32 (dB) | >= {MIN_PSNR_VS_FP32:.0f} dB |")
    print("|---|---:|---:|---:|:-:|")
    for name, ms, quality, _ in rows:
        shown = "inf" if math.isinf(quality) else f"{quality:.1f}"
        exact_enough = "yes" if quality >= MIN_PSNR_VS_FP32 else "no"
        print(f"| {name} | {ms:.0f} | {eager_ms / ms:.2f} | {shown} | {exact_enough} |")
    exact = [(ms, name) for name, ms, quality, _ in rows if quality >= MIN_PSNR_VS_FP32]
    if exact:
        print(f"\nfastest backend within {MIN_PSNR_VS_FP32:.0f} dB of fp32: {min(exact)[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
