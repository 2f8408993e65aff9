"""``python -m evaluation.pairs build --pairs DIR --out DIR [--push-to-hub ID]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .align import AlignSettings

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse and build; exit 0 ok, 1 failure, 2 bad input or no pair survived, 3 no depth model."""
    from bokeh_model.errors import program_name

    defaults = AlignSettings()
    parser = argparse.ArgumentParser(
        prog=program_name("python -m evaluation.pairs"),
        description="Turn your own narrow/wide aperture photo pairs into an EBB!-style datasets folder.",
        epilog="Exit codes: 0 ok (at least one pair), 1 failure, 2 bad input or no pair survived, 3 missing depth "
        "model (use --no-depth).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser(
        "build",
        help="pair, align, add depth and write a datasets folder (Hub layout) plus report.html",
        description="Pair, align (SIFT + RANSAC), crop, resize, add depth; write data/*.parquet, README.md, "
        "pairs.json and report.html. Rerunning reuses the pairs already processed.",
    )
    build.add_argument("--pairs", required=True, help="folder with narrow/ + wide/ subfolders, or photos with EXIF")
    build.add_argument("--out", required=True, help="output folder (Hub layout)")
    build.add_argument("--push-to-hub", metavar="ID", help="also upload to this Hub dataset repo (needs internet)")
    build.add_argument("--private", action="store_true", help="create the Hub repo as private")
    build.add_argument("--val-fraction", type=float, default=0.1, help="share of scenes in the val split (0.1)")
    build.add_argument("--no-depth", action="store_true", help="no depth column (no depth model needed)")
    build.add_argument(
        "--depth-model",
        help="depth model: dpt-hybrid, depth-anything-v2-small, or a transformers folder or cached hub id "
        "(default: $BOKEH_DEPTH_MODEL, else dpt-hybrid)",
    )
    build.add_argument("--device", default="cpu", help="device of the depth model (default cpu)")
    build.add_argument("--height", type=int, default=defaults.height, help="output height in px (1024, like EBB!)")
    build.add_argument("--format", choices=("png", "jpeg"), default="png", help="stored image format (png)")
    build.add_argument("--min-score", type=float, default=defaults.min_score, help="min alignment score (%(default)s)")
    build.add_argument(
        "--max-error",
        type=float,
        default=defaults.max_reprojection_error,
        help="max RMS reprojection error, px at the output size (%(default)s)",
    )
    build.add_argument("--min-inliers", type=int, default=defaults.min_inliers, help="min RANSAC inliers (%(default)s)")
    build.add_argument("--min-overlap", type=float, default=defaults.min_overlap, help="min common area (%(default)s)")
    build.add_argument("--max-gap", type=float, default=30.0, help="EXIF mode: max seconds between shots (30)")
    build.add_argument(
        "--min-aperture-ratio", type=float, default=2.0, help="EXIF mode: f-numbers at least this far apart (2)"
    )
    build.add_argument("--rows-per-shard", type=int, default=100, help="rows per parquet file (100)")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    from bokeh_model.errors import run_reporting_errors

    def run() -> int:
        from ..ebb import push_to_hub
        from .build import build_pairs_dataset

        if args.height < 16:
            from bokeh_model.errors import InputError

            raise InputError(f"--height must be at least 16 px, got {args.height}")
        settings = AlignSettings(
            height=args.height,
            min_score=args.min_score,
            max_reprojection_error=args.max_error,
            min_inliers=args.min_inliers,
            min_overlap=args.min_overlap,
        )
        summary = build_pairs_dataset(
            args.pairs,
            args.out,
            depth=not args.no_depth,
            depth_model=args.depth_model,
            device=args.device,
            val_fraction=args.val_fraction,
            settings=settings,
            image_format=args.format,
            max_gap_s=args.max_gap,
            min_aperture_ratio=args.min_aperture_ratio,
            rows_per_shard=args.rows_per_shard,
            progress=not args.no_progress,
        )
        if args.push_to_hub:
            print(f"pushed to {push_to_hub(summary['out'], args.push_to_hub, private=args.private)}")
        split = "val" if "val" in summary["splits"] else next(iter(summary["splits"]))
        print(f"wrote {args.out} (report: {summary['report']})")
        print(f"evaluate: python evaluation/run.py --dataset {args.out} --split {split}")
        if "train" in summary["splits"]:
            validation = "--val-split val" if "val" in summary["splits"] else "--val-split ''"
            print(f"train:    python -m bokeh_model train --dataset {args.out} {validation}")
        return 0

    return run_reporting_errors(run)


if __name__ == "__main__":
    sys.exit(main())
