"""Depth time per photo for each known depth model (``bokeh_model.depth_models``), as the app and the CLI run it.

    python -m benchmarks.depth_speed [--models dpt-hybrid,depth-anything-v2-small] [--sizes 1024x1536,3000x4000]
                                     [--repeats 3] [--threads 2] [--device cpu] [--random-weights]

What is timed is ``DepthEstimator.estimate`` on a photo it has not seen (so its cache never answers): the image
processor (resize to the network's input), the forward pass, the resize back to the photo's size and the
normalisation. The network input size is printed too: DPT-Hybrid's processor (saved by transformers' DPT-Hybrid
conversion script as ``DPTImageProcessor(size=384)``, no aspect option) squeezes every photo to 384x384, Depth
Anything's keeps the aspect ratio at a 518-px short side in multiples of 14.

The models take turns on the same photos, so a change of load on a shared machine hits each alike.
A model that is installed (``python -m bokeh_model fetch depth --depth-model all``) is timed with its weights.
``--random-weights`` times a model that is not installed with its published architecture and processor settings
(written below from the model cards' configs) and random weights instead: the arithmetic, hence the time, is the
same, but its depth maps are meaningless, so this figure is about speed only. The parameter count printed for it
checks that the architecture is the published one (DPT-Hybrid about 123 M, Depth Anything V2 Small 24.8 M).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._env import environment_lines


def _published_architecture(name: str, folder: Path) -> Path:
    """The published architecture and processor of a known model, with random weights (timing only)."""
    import torch
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTConfig,
        DPTForDepthEstimation,
        DPTImageProcessor,
    )

    torch.manual_seed(0)
    if name == "dpt-hybrid":  # Intel/dpt-hybrid-midas: ViT-B/16 on a BiT-ResNet stem, MiDaS v3.0 head
        config = DPTConfig(
            is_hybrid=True,
            hidden_size=768,
            reassemble_factors=[1, 1, 1, 0.5],
            neck_hidden_sizes=[256, 512, 768, 768],
            readout_type="project",
            use_batch_norm_in_fusion_residual=False,
            use_auxiliary_head=False,
        )
        model = DPTForDepthEstimation(config)
        processor = DPTImageProcessor(
            size={"height": 384, "width": 384}, keep_aspect_ratio=False, image_mean=[0.5] * 3, image_std=[0.5] * 3
        )
    elif name == "depth-anything-v2-small":  # dinov2-small backbone, stages 3/6/9/12
        backbone = Dinov2Config(
            hidden_size=384,
            num_attention_heads=6,
            image_size=518,
            patch_size=14,
            out_indices=[3, 6, 9, 12],
            reshape_hidden_states=False,
        )
        model = DepthAnythingForDepthEstimation(
            DepthAnythingConfig(backbone_config=backbone.to_dict(), reassemble_hidden_size=384)
        )
        processor = DPTImageProcessor(
            size={"height": 518, "width": 518},
            keep_aspect_ratio=True,
            ensure_multiple_of=14,
            resample=3,
            image_mean=[0.485, 0.456, 0.406],
            image_std=[0.229, 0.224, 0.225],
        )
    else:
        raise SystemExit(f"no published architecture written here for {name!r}; install it instead")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="dpt-hybrid,depth-anything-v2-small")
    parser.add_argument("--sizes", default="1024x1536", help="photo sizes HxW, comma separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2, a free Space's CPU)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--random-weights", action="store_true", help="time missing models with random weights")
    args = parser.parse_args()

    import torch

    from bokeh_model.depth import DepthEstimator, depth_model_status
    from bokeh_model.depth_models import depth_model_info, resolve_depth_model

    torch.set_num_threads(args.threads)
    print("\n".join(environment_lines()))
    sizes = [tuple(int(v) for v in size.lower().split("x")) for size in args.sizes.split(",")]
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        runs = []  # (title, estimator, parameters, weights, network input sizes seen)
        for name in [m.strip() for m in args.models.split(",") if m.strip()]:
            model_id = resolve_depth_model(name)
            info = depth_model_info(model_id)
            weights = "installed weights"
            if not depth_model_status(model_id)[0]:
                if not args.random_weights or info is None:
                    print(f"{name}: not installed (fetch it, or pass --random-weights for a timing-only figure)")
                    continue
                model_id = str(_published_architecture(info.name, Path(tmp) / info.name))
                weights = "RANDOM weights, timing only"
            estimator = DepthEstimator(model_id, device=args.device, cache_size=0)
            estimator._load()  # load time is not part of the per-photo figure
            inputs: list[tuple[int, ...]] = []
            estimator._model.register_forward_pre_hook(
                lambda module, a, kw, seen=inputs: seen.append(tuple(kw["pixel_values"].shape[-2:])), with_kwargs=True
            )
            count = sum(p.numel() for p in estimator._model.parameters())
            runs.append((info.title if info else name, estimator, count, weights, inputs))
        for height, width in sizes:
            times: list[list[float]] = [[] for _ in runs]
            for repeat in range(args.repeats + 1):  # the models take turns, so a change of load hits both alike
                photo = rng.random((height, width, 3), dtype=np.float32)  # unseen: the depth cache never answers
                for index, (_, estimator, _, _, _) in enumerate(runs):
                    if args.device.startswith("cuda"):
                        torch.cuda.synchronize()
                    start = time.perf_counter()
                    estimator.estimate(photo)
                    if args.device.startswith("cuda"):
                        torch.cuda.synchronize()
                    if repeat:  # the first call is a warm-up
                        times[index].append(time.perf_counter() - start)
            for (title, _, count, weights, inputs), seconds in zip(runs, times, strict=True):
                net_h, net_w = inputs[-1]
                print(
                    f"{title}: photo {width}x{height}, network input {net_w}x{net_h}, {count / 1e6:.1f} M parameters "
                    f"({weights}), device {args.device}, median {statistics.median(seconds):.2f} s over "
                    f"{len(seconds)} (min {min(seconds):.2f} s)"
                )


if __name__ == "__main__":
    main()
