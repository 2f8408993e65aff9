"""``python -m bokeh_model depth IN OUT.png``: estimate a disparity map (near = bright) and save it."""

from __future__ import annotations

import argparse
import time

from ..errors import InputError

HELP = "Estimate depth (disparity, near = bright) for a photo with a transformers depth model and save it."


def parse_point(text: str | None) -> tuple[int, int] | None:
    """``"X,Y"`` -> ``(x, y)`` pixel coordinates; ``None`` stays ``None``."""
    if text is None:
        return None
    parts = text.replace(" ", "").split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        return int(parts[0]), int(parts[1])
    except ValueError:
        raise InputError(f"--focus must be two integer pixel coordinates X,Y (e.g. 512,300), got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..depth import DEPTH_MODEL_ENV
    from ..depth_models import DEPTH_MODELS

    parser.add_argument("input", help="photo (PNG, JPEG, WebP, TIFF, ...)")
    parser.add_argument("output", help="where to save the depth map (.png; 16-bit unless --bits 8)")
    parser.add_argument(
        "--depth-model",
        default=None,
        help=f"depth model: a short name ({', '.join(DEPTH_MODELS)}), a transformers hub id in the local cache or "
        f"a local folder (default: ${DEPTH_MODEL_ENV}, else dpt-hybrid)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument(
        "--approximate",
        action="store_true",
        help="no learned model: APPROXIMATE depth from a GrabCut subject mask and a ground-plane prior",
    )
    parser.add_argument("--focus", help="X,Y pixel of the subject for --approximate (default: image centre)")
    parser.add_argument("--bits", type=int, default=16, choices=(8, 16), help="PNG bit depth (default: 16)")
    parser.add_argument(
        "--pynet",
        action="store_true",
        help="save in PyNET-Bokeh's convention instead: 8-bit, half resolution, min-max stretched",
    )


def run(args: argparse.Namespace) -> int:
    from ..depth import approximate_depth, get_depth_estimator
    from ..depth_models import depth_model_label
    from ..images import load_image, save_depth
    from ..pynet import to_pynet_depth

    focus = parse_point(args.focus)
    if focus is not None and not args.approximate:
        raise InputError("--focus only applies to --approximate depth")
    image = load_image(args.input)
    start = time.perf_counter()
    if args.approximate:
        depth = approximate_depth(image, focus)
        source = "APPROXIMATE depth (GrabCut subject mask + ground-plane prior, no learned model)"
    else:
        estimator = get_depth_estimator(args.depth_model, args.device)
        depth = estimator.estimate(image)
        source = f"depth model {depth_model_label(estimator.model_id)}"
    elapsed = time.perf_counter() - start
    bits = args.bits
    if args.pynet:
        height, width = depth.shape
        depth = to_pynet_depth(depth, (max(1, round(height / 2)), max(1, round(width / 2))))
        bits = 8
    path = save_depth(depth, args.output, bits=bits)
    print(f"{source}: wrote {path} ({depth.shape[1]}x{depth.shape[0]}, {bits}-bit) in {elapsed:.2f} s")
    return 0
