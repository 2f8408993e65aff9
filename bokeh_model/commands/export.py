"""``python -m bokeh_model export WEIGHTS OUT --format {onnx,litert}``: PyNET for other runtimes and for phones."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HELP = (
    "Export PyNET weights to ONNX (dynamic height and width, checked with onnx.checker and compared with "
    "PyTorch in ONNX Runtime) or to LiteRT .tflite (fixed input size, through litert-torch in .venv-litert)."
)
_SUFFIX = {"onnx": ".onnx", "litert": ".tflite"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..pynet import ABLATIONS

    parser.add_argument("weights", metavar="WEIGHTS", help="PyNET weights: a save_pretrained folder or a cached hub id")
    parser.add_argument("out", metavar="OUT", help="file to write (.onnx or .tflite)")
    parser.add_argument(
        "--format",
        choices=tuple(_SUFFIX),
        help="onnx or litert (default: from OUT's extension, .onnx or .tflite)",
    )
    parser.add_argument("--level", type=int, default=1, choices=range(1, 8), help="output level (default 1, full size)")
    parser.add_argument(
        "--disable-levels",
        default="none",
        choices=tuple(ABLATIONS),
        help="switch off pyramid levels as in the paper's Fig. 8 (default: none)",
    )
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="network input size (half the photo): the fixed size of a LiteRT file (default 512 768); for ONNX "
        "only the size of the tracing and check input (default 64 96), the file accepts any size >= 33",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--no-verify", action="store_true", help="ONNX: skip the ONNX Runtime vs PyTorch comparison")


def _verify_onnx(model, path: Path, level: int, disabled: tuple[int, ...], size: tuple[int, int]) -> float:
    import numpy as np
    import onnxruntime as ort
    import torch

    x = torch.rand(1, model.in_channels, *size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = model(x, level=level, disabled_levels=disabled).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})[0]
    if got.shape != expected.shape:
        return float("inf")
    return float(np.abs(got - expected).max())


def run(args: argparse.Namespace) -> int:
    from ..errors import BokehError, InputError
    from ..export import export_litert, export_onnx
    from ..pynet import ABLATIONS, load_pynet

    out = Path(args.out)
    fmt = args.format or next((name for name, suffix in _SUFFIX.items() if out.suffix.lower() == suffix), None)
    if fmt is None:
        raise InputError(f"cannot tell the format from {out.name!r}: pass --format onnx or --format litert")
    if out.exists() and not args.overwrite:
        raise InputError(f"{out} already exists; pass --overwrite to replace it")
    if out.is_dir():
        raise InputError(f"{out} is a folder; give a file name ending in {_SUFFIX[fmt]}")
    disabled = ABLATIONS[args.disable_levels]
    if args.level in disabled:
        raise InputError(f"level {args.level} is disabled by --disable-levels {args.disable_levels}")
    model = load_pynet(args.weights, device="cpu")
    start = time.perf_counter()
    if fmt == "onnx":
        size = tuple(args.size or (64, 96))
        path = export_onnx(model, out, level=args.level, disabled_levels=disabled, example_size=size)
        elapsed = time.perf_counter() - start
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) in {elapsed:.0f} s; onnx.checker ok")
        if not args.no_verify:
            diff = _verify_onnx(model, path, args.level, disabled, size)
            print(f"ONNX Runtime vs PyTorch on a random {size[0]}x{size[1]} input: max |diff| {diff:.2e}")
            if not diff <= 1e-3:
                raise BokehError(f"the exported file disagrees with PyTorch (max |diff| {diff:.2e}); please report it")
        print("input 'input': (N, C, H, W) float32 in [0, 1], H and W >= 33; output 'output': (N, 3, H', W')")
    else:
        size = tuple(args.size or (512, 768))
        result = export_litert(model, out, level=args.level, disabled_levels=disabled, size=size)
        print(
            f"wrote {result['out']} ({result['bytes'] / 1e6:.1f} MB) in {time.perf_counter() - start:.0f} s; "
            f"LiteRT interpreter vs PyTorch on a random {size[0]}x{size[1]} input: max |diff| "
            f"{result['max_abs_diff']:.2e}"
        )
        print(f"input: (1, {model.in_channels}, {size[0]}, {size[1]}) float32 in [0, 1] (NCHW)")
    return 0
