"""``python -m bokeh_model render IN OUT --method NAME [...]``: render one photo with any method.

Every parameter a registered method declares is also a flag (``--max-side 768``); a flag that the
chosen method does not take is an error naming the parameters it does take.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from ..device import PRECISIONS
from ..errors import InputError
from ..images import load_depth, load_image, save_image
from ..registry import create_method, list_methods

HELP = "Render bokeh for one photo with a registered method and save the result."


def _method_params() -> dict[str, Any]:
    specs: dict[str, Any] = {}
    for name in list_methods():
        method = create_method(name)
        for spec in method.params:
            specs.setdefault(spec.name, spec)
    return specs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="photo to render (PNG, JPEG, WebP, TIFF, ...)")
    parser.add_argument("output", help="where to save the result; format from the extension (.png, .jpg)")
    parser.add_argument("--method", default="pynet", help=f"one of {list_methods()} (default: pynet)")
    parser.add_argument("--depth", help="disparity map file (PNG 8/16-bit or .npy, near = bright)")
    parser.add_argument("--weights", help="PyNET weights: a save_pretrained folder or a hub id")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS, help="autocast precision on GPU")
    parser.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    group = parser.add_argument_group("method parameters (see `python -m bokeh_model list`)")
    for name, spec in sorted(_method_params().items()):
        group.add_argument(f"--{name.replace('_', '-')}", dest=f"param_{name}", default=None,
                           metavar=spec.kind.upper(), help=spec.help)


def method_kwargs(method_name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Constructor keyword arguments for the chosen method, from the shared flags."""
    kwargs: dict[str, Any] = {"device": args.device}
    if method_name == "pynet":
        kwargs.update(weights=args.weights, precision=args.precision, channels_last=args.channels_last)
    return kwargs


def resolve_depth(args: argparse.Namespace, image: Any) -> Any:
    """The depth map for this run: a file when given, else ``None``."""
    return load_depth(args.depth) if args.depth else None


def run(args: argparse.Namespace) -> int:
    try:
        method = create_method(args.method, **method_kwargs(args.method, args))
    except KeyError as exc:
        raise InputError(str(exc.args[0])) from None
    except TypeError as exc:
        raise InputError(f"method {args.method!r} does not accept these options: {exc}") from None
    params = {
        key.removeprefix("param_"): value
        for key, value in vars(args).items()
        if key.startswith("param_") and value is not None
    }
    method.validate_params(params)  # names the bad flag before any slow work
    image = load_image(args.input)
    depth = resolve_depth(args, image)
    start = time.perf_counter()
    result = method(image, depth, **params)
    elapsed = time.perf_counter() - start
    path = save_image(result, args.output)
    print(f"{method.name}: wrote {path} ({result.shape[1]}x{result.shape[0]}) in {elapsed:.2f} s")
    return 0
