"""LiteRT conversion worker, run by :func:`bokeh_model.export.export_litert` in the separate litert-torch environment.

``litert-torch`` brings its own TensorFlow Lite converter and JAX stack, so it lives in its own virtual environment
(``make litert-env`` creates ``.venv-litert``). That environment lacks this project's app dependencies (OpenCV,
Gradio, ...), so this file is run as a script and imports only the modules it needs (``modeling_pynet``,
``export``, ``errors``) without the package's ``__init__``.

    .venv-litert/bin/python bokeh_model/_litert_worker.py --weights DIR --out FILE.tflite [--level 1] [--size H W]

Prints one JSON line at the end: ``{"out": ..., "bytes": ..., "max_abs_diff": ...}`` (the difference between the
LiteRT interpreter and PyTorch on a random input of the exported size).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types
from pathlib import Path


def _import_without_package_init() -> None:
    package_dir = Path(__file__).resolve().parent
    if "bokeh_model" not in sys.modules:
        package = types.ModuleType("bokeh_model")
        package.__path__ = [str(package_dir)]
        sys.modules["bokeh_model"] = package


def _run_tflite(path: Path, array):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], array)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Convert PyNET weights to a LiteRT (.tflite) file.")
    parser.add_argument("--weights", required=True, help="PyNET.save_pretrained folder")
    parser.add_argument("--out", required=True, help=".tflite file to write")
    parser.add_argument("--level", type=int, default=1)
    parser.add_argument("--disable-levels", default="", help="comma-separated levels among 4..7")
    parser.add_argument("--size", type=int, nargs=2, default=(512, 768), metavar=("H", "W"))
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--dump", help="also save the random input and the LiteRT output to this .npz file")
    args = parser.parse_args(argv)

    _import_without_package_init()
    import litert_torch
    import numpy as np
    import torch

    from bokeh_model.export import PyNETExportModule
    from bokeh_model.modeling_pynet import PyNET

    if args.threads:
        torch.set_num_threads(args.threads)
    disabled = [int(v) for v in args.disable_levels.split(",") if v.strip()]
    model = PyNET.from_pretrained(args.weights, strict=True).eval()
    wrapper = PyNETExportModule(model, args.level, disabled).eval()
    example = torch.rand(1, model.in_channels, *args.size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        edge_model = litert_torch.convert(wrapper, (example,))
        expected = wrapper(example).numpy()
    out = Path(args.out)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        edge_model.export(str(tmp))
        got = _run_tflite(tmp, example.numpy())  # the written file, in the LiteRT interpreter
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    diff = float(np.abs(got - expected).max())
    if args.dump:
        np.savez(args.dump, input=example.numpy(), output=got)
    print(json.dumps({"out": str(out), "bytes": out.stat().st_size, "max_abs_diff": diff}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
