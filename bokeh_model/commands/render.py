"""``python -m bokeh_model render IN OUT --method NAME [...]``: render one photo with any method.

Every parameter a registered method declares is also a flag (``--max-side 768``); a flag that the
chosen method does not take is an error naming the parameters it does take.

Depth, for methods that need it: ``--depth FILE`` (a disparity map, near = bright), else ``--depth-model NAME``
(``dpt-hybrid``, ``depth-anything-v2-small``, or a transformers depth model: hub id in the local cache or folder;
default ``$BOKEH_DEPTH_MODEL``, else ``dpt-hybrid`` = ``Intel/dpt-hybrid-midas``), else ``--approximate-depth``
(no weights; clearly approximate).
``--focus X,Y`` focuses on a pixel: its disparity (median over a small window) becomes ``focus_disparity``.

PyNET runs at the scale it was trained on: the photo resized so that its long side is 1536 px (network input
768 px), the result brought to the photo's size by the guided finish (:mod:`bokeh_model.pynet_scale`);
``--max-side N`` runs a labelled preview at N px instead, ``--own-size`` at the photo's own size. The scale that
ran is printed.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from ..depth import approximate_depth, focus_disparity_at, get_depth_estimator
from ..depth_models import depth_model_label
from ..device import PRECISIONS
from ..errors import InputError
from ..images import load_depth, load_image, save_image
from ..registry import check_depth_array, create_method, list_methods
from .depth import parse_point

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
    parser.add_argument(
        "--depth-model",
        default=None,
        help="depth model used when no --depth file is given: dpt-hybrid, depth-anything-v2-small, or a "
        "transformers hub id in the local cache or a local folder (default: $BOKEH_DEPTH_MODEL, else dpt-hybrid)",
    )
    parser.add_argument(
        "--approximate-depth",
        action="store_true",
        help="no depth model: APPROXIMATE depth from a GrabCut subject mask grown from --focus and a ground plane",
    )
    parser.add_argument("--focus", metavar="X,Y", help="focus on this pixel (column,row of the input photo)")
    parser.add_argument(
        "--weights",
        help="PyNET weights: a save_pretrained folder or a hub id (default: $BOKEH_PYNET_WEIGHTS, else the folder "
        "`python -m bokeh_model fetch pynet` fills, ~/.cache/bokeh_model/pynet-bokeh)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS, help="autocast precision on GPU")
    parser.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    parser.add_argument(
        "--own-size",
        action="store_true",
        help="PyNET: run at the photo's own size instead of its trained scale (long side 1536 px)",
    )
    group = parser.add_argument_group("method parameters (see `python -m bokeh_model list`)")
    for name, spec in sorted(_method_params().items()):
        group.add_argument(
            f"--{name.replace('_', '-')}",
            dest=f"param_{name}",
            default=None,
            metavar=spec.kind.upper(),
            help=spec.help.replace("%", "%%"),
        )


def method_kwargs(method_name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Constructor keyword arguments for the chosen method, from the shared flags."""
    kwargs: dict[str, Any] = {"device": args.device}
    if method_name == "pynet":
        kwargs.update(weights=args.weights, precision=args.precision, channels_last=args.channels_last)
    return kwargs


def resolve_depth(args: argparse.Namespace, image: Any, *, needed: bool = True) -> Any:
    """The depth map for this run: ``--depth`` file, else approximate depth, else the depth model.

    Returns ``None`` when the method does not need depth and none was asked for.
    """
    if args.depth:
        if getattr(args, "approximate_depth", False) or getattr(args, "depth_model", None):
            raise InputError("give only one of --depth, --depth-model and --approximate-depth")
        return load_depth(args.depth)
    if getattr(args, "approximate_depth", False):
        if getattr(args, "depth_model", None):
            raise InputError("give only one of --depth-model and --approximate-depth")
        print("note: using APPROXIMATE depth (GrabCut subject mask + ground-plane prior, no learned model)")
        return approximate_depth(image, parse_point(getattr(args, "focus", None)))
    if not needed and not getattr(args, "depth_model", None):
        return None
    estimator = get_depth_estimator(getattr(args, "depth_model", None), args.device)
    depth = estimator.estimate(image)
    print(f"depth: {depth_model_label(estimator.model_id)}")
    return depth


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
    if getattr(args, "own_size", False) and method.name != "pynet":
        raise InputError("--own-size applies to --method pynet only")
    focus = parse_point(getattr(args, "focus", None))
    if focus is not None and "focus_disparity" not in method.param_names():
        raise InputError(f"method {method.name!r} has no adjustable focus; drop --focus")
    if focus is not None and "focus_disparity" in params:
        raise InputError("give either --focus X,Y or --focus-disparity, not both")
    image = load_image(args.input)
    if focus is not None:
        height, width = image.shape[:2]
        if not (0 <= focus[0] < width and 0 <= focus[1] < height):
            raise InputError(
                f"--focus {focus[0]},{focus[1]} is outside the {width}x{height} photo "
                f"(x in [0, {width - 1}], y in [0, {height - 1}])"
            )
    depth = resolve_depth(args, image, needed=method.requires_depth())
    if depth is not None and depth.shape != image.shape[:2]:
        depth = check_depth_array(depth, image.shape[:2])
    if focus is not None:
        if depth is None:
            raise InputError("--focus needs a depth map (--depth, --depth-model or --approximate-depth)")
        params["focus_disparity"] = focus_disparity_at(depth, *focus)
    start = time.perf_counter()
    note = ""
    if method.name == "pynet" and not getattr(args, "own_size", False):
        from ..pynet_scale import render_pynet_at_scale

        scaled = render_pynet_at_scale(method, image, depth, method.validate_params(params))
        result, note = scaled.image, scaled.note()
    else:
        result = method(image, depth, **params)
    elapsed = time.perf_counter() - start
    if note:
        print(note)
    path = save_image(result, args.output)
    print(f"{method.name}: wrote {path} ({result.shape[1]}x{result.shape[0]}) in {elapsed:.2f} s")
    return 0
