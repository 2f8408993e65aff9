"""``python -m bokeh_model convert-tf CKPT_PREFIX OUT_DIR``: the authors' TF checkpoint -> PyTorch weights."""

from __future__ import annotations

import argparse
import json
import time

NAME = "convert-tf"
HELP = (
    "Convert a TensorFlow PyNET-Bokeh checkpoint (TF1 V2: PREFIX.index + PREFIX.data-*) into a "
    "PyNET.from_pretrained folder (config.json + model.safetensors). TensorFlow is not needed."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint",
        metavar="CKPT_PREFIX",
        help="checkpoint prefix, e.g. models/original/pynet_bokeh_level_0 (or its .index file)",
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to write (must be new or empty)")
    parser.add_argument("--push-to-hub", metavar="ID", help="also upload to this Hugging Face Hub repo id")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it is not empty")
    parser.add_argument("--scope", default="generator", help="TF variable scope of the weights (default: generator)")
    parser.add_argument(
        "--in-channels",
        type=int,
        choices=(3, 4),
        help="force 3 (RGB) or 4 (RGB + depth) input channels (default: from the first kernel)",
    )
    parser.add_argument(
        "--no-instance-norm",
        action="store_true",
        help="the graph was built with instance_norm=False (default: inferred)",
    )
    parser.add_argument(
        "--instance-norm-level-3",
        action="store_true",
        help="the graph was built with instance_norm_level_1=True (default: inferred)",
    )


def run(args: argparse.Namespace) -> int:
    from ..convert_tf_checkpoint import convert_tf_checkpoint

    config = None
    if args.in_channels or args.no_instance_norm or args.instance_norm_level_3:
        config = {
            "in_channels": args.in_channels or 4,
            "instance_norm": not args.no_instance_norm,
            "instance_norm_level_3": args.instance_norm_level_3,
        }
    start = time.perf_counter()
    out = convert_tf_checkpoint(
        args.checkpoint,
        args.out_dir,
        config=config,
        scope=args.scope,
        overwrite=args.overwrite,
        push_to_hub=args.push_to_hub,
    )
    skipped = json.loads((out / "conversion.json").read_text()).get("skipped", {})
    if skipped.get("count"):
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(skipped["by_reason"].items()))
        print(f"skipped {skipped['count']} tensors that are not generator weights ({reasons})")
    print(
        f"wrote {out} in {time.perf_counter() - start:.1f} s"
        + (f"; pushed to {args.push_to_hub}" if args.push_to_hub else "")
    )
    print(f"use it with: python -m bokeh_model render PHOTO OUT.png --method pynet --weights {out}")
    return 0
