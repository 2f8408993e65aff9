"""``python -m bokeh_model train --dataset DIR --out DIR``: train PyNET-Bokeh level by level (7 -> 1).

Multi-GPU (data parallel) with the same arguments: ``accelerate launch --multi_gpu -m bokeh_model train ...``.
Rerunning the same command resumes from the last checkpoint of the level in progress.
"""

from __future__ import annotations

import argparse

NAME = "train"
HELP = (
    "Train PyNET-Bokeh level by level (7 -> 1) as the authors do, on a datasets dataset with columns "
    "id, original, bokeh, depth; resumes automatically."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..training import DEFAULT_BATCH_SIZES, DEFAULT_ITERATIONS

    def per_level(table: dict[int, int]) -> str:
        return ",".join(f"{k}={v}" for k, v in table.items())

    parser.add_argument(
        "--dataset", required=True, help="dataset: save_to_disk folder, hub-layout folder, parquet file or hub id"
    )
    parser.add_argument("--out", required=True, help="output folder (checkpoints, samples, metrics.csv)")
    parser.add_argument("--levels", default="7-1", help="levels to train, e.g. 7-1 (default) or 3,2,1")
    parser.add_argument(
        "--iterations", help=f"N for every level or LEVEL=N,... (default {per_level(DEFAULT_ITERATIONS)})"
    )
    parser.add_argument(
        "--batch-size", help=f"global batch, N or LEVEL=N,... (default {per_level(DEFAULT_BATCH_SIZES)})"
    )
    parser.add_argument("--crop-size", type=int, default=512, help="half-resolution input crop side (default 512)")
    parser.add_argument("--lr", type=float, default=5e-5, help="Adam learning rate (default 5e-5)")
    parser.add_argument("--train-split", default="train", help="training split (default train)")
    parser.add_argument("--val-split", default="val294", help="validation split, or '' for none (default val294)")
    parser.add_argument("--val-images", type=int, default=32, help="validation images per eval (default 32)")
    parser.add_argument("--num-samples", type=int, default=4, help="sample images saved per eval (default 4)")
    parser.add_argument("--eval-every", type=int, default=1000, help="validate + checkpoint every N steps")
    parser.add_argument("--log-every", type=int, default=50, help="write training loss to metrics.csv every N steps")
    parser.add_argument("--keep-checkpoints", type=int, default=2, help="checkpoints kept per level (default 2)")
    parser.add_argument("--init-weights", help="from_pretrained folder/hub id for the first level (e.g. converted)")
    parser.add_argument("--from-scratch", action="store_true", help="allow a level < 7 to start from random weights")
    parser.add_argument("--no-depth", action="store_true", help="train the RGB-only variant (3 input channels)")
    parser.add_argument("--workers", type=int, default=4, help="data-loading processes (default 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mixed-precision", default="no", choices=("no", "bf16", "fp16"))
    parser.add_argument("--cpu", action="store_true", help="train on the CPU even if a GPU is present")
    parser.add_argument("--vgg-weights", help="VGG-19 IMAGENET1K_V1 file (default: the torch hub cache)")
    parser.add_argument("--loss-vgg", type=float, default=0.1, help="level-1 VGG weight (default 0.1)")
    parser.add_argument("--stop-after", type=int, help="stop (with a checkpoint) after N steps in this run")
    parser.add_argument("--tensorboard", action="store_true", help="also log to OUT/tensorboard (needs tensorboard)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..training import (
        DEFAULT_BATCH_SIZES,
        DEFAULT_ITERATIONS,
        LossWeights,
        TrainConfig,
        level_sequence,
        parse_per_level,
        train,
    )

    config = TrainConfig(
        dataset=args.dataset,
        output_dir=args.out,
        levels=level_sequence(args.levels),
        iterations=parse_per_level(args.iterations, DEFAULT_ITERATIONS, "--iterations")
        if args.iterations
        else dict(DEFAULT_ITERATIONS),
        batch_sizes=parse_per_level(args.batch_size, DEFAULT_BATCH_SIZES, "--batch-size")
        if args.batch_size
        else dict(DEFAULT_BATCH_SIZES),
        crop_size=args.crop_size,
        learning_rate=args.lr,
        train_split=args.train_split,
        val_split=args.val_split or None,
        val_images=args.val_images,
        num_samples=args.num_samples,
        eval_every=args.eval_every,
        log_every=args.log_every,
        keep_checkpoints=args.keep_checkpoints,
        init_weights=args.init_weights,
        from_scratch=args.from_scratch,
        use_depth=not args.no_depth,
        workers=args.workers,
        seed=args.seed,
        mixed_precision=args.mixed_precision,
        cpu=args.cpu,
        vgg_weights=args.vgg_weights,
        loss_weights=LossWeights(vgg=args.loss_vgg),
        stop_after=args.stop_after,
        tensorboard=args.tensorboard,
        progress=not args.no_progress,
    )
    results = train(config)
    for result in results:
        print(f"level {result['level']}: {result['status']} at step {result['step']}")
    return 0
