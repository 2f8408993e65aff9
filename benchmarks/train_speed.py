"""PyNET training throughput (images/s) per level, as ``bokeh_model.training`` runs a step.

One step = forward at the level, the authors' loss (level 1: L1 + VGG-19 relu5_4 + SSIM), backward and Adam
over the parameters that reach that level's output. Inputs are random tensors already on the device (the
data pipeline is timed separately, per sample, on the CPU). The weights are random (timing only); the
level-1 VGG-19 is the real torchvision file when it is in the torch hub cache, else the same architecture
with random weights (same cost).

Reference in the same run: on CUDA, bf16 autocast vs fp32 (ratio = bf16 / fp32); on the CPU, the training
step vs a forward pass without gradients (ratio = train / inference).

    .venv/bin/python -m benchmarks.train_speed                  # CPU: crop 64, batch 2, levels 7..1
    .venv/bin/python -m benchmarks.train_speed --device cuda    # crop 512, the authors' batch sizes
"""

from __future__ import annotations

import argparse
import io
import platform
import sys
import time

import numpy as np
import torch

from bokeh_model.modeling_pynet import LEVEL_SCALES, PyNET  # noqa: E402
from bokeh_model.training import (  # noqa: E402
    DEFAULT_BATCH_SIZES,
    VGGPerceptual,
    crop_pair,
    level_loss,
    load_vgg19_relu5_4,
    vgg19_weights_path,
)
from bokeh_model.training import trainable_for_level as _trainable_for_level  # noqa: E402

__all__ = ["main"]


def random_pynet(device: torch.device) -> PyNET:
    with torch.device("meta"):
        model = PyNET()
    model.to_empty(device=device)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.02)
    return model


def vgg_for_timing(device: torch.device) -> tuple[torch.nn.Module, str]:
    if vgg19_weights_path().is_file():
        return load_vgg19_relu5_4().to(device), "torchvision IMAGENET1K_V1"
    import torchvision

    with torch.device("meta"):
        features = torchvision.models.vgg19(weights=None).features[:36]
    features.to_empty(device=device)
    with torch.no_grad():
        for param in features.parameters():
            param.normal_(0.0, 0.01)
    return VGGPerceptual(features).to(device), "random weights, VGG-19 architecture (timing only)"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_train(
    model: PyNET,
    level: int,
    batch: int,
    crop: int,
    device: torch.device,
    precision: str,
    vgg: torch.nn.Module,
    steps: int,
) -> float:
    _trainable_for_level(model, level, 4, device)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=5e-5)
    side = round(crop * LEVEL_SCALES[level])
    x = torch.rand(batch, 4, crop, crop, device=device)
    y = torch.rand(batch, 3, side, side, device=device)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    elapsed = 0.0
    for step in range(steps + 1):  # the first step warms up
        sync(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = model(x, level=level)
        loss, _ = level_loss(level, out, y, vgg if level == 1 else None)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        if step:
            elapsed += time.perf_counter() - start
    del optimizer
    return batch * steps / elapsed


@torch.no_grad()
def time_infer(model: PyNET, level: int, batch: int, crop: int, device: torch.device, steps: int) -> float:
    x = torch.rand(batch, 4, crop, crop, device=device)
    model(x, level=level)
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        model(x, level=level)
    sync(device)
    return batch * steps / (time.perf_counter() - start)


def time_data(crop: int, levels: list[int], samples: int = 4) -> dict[int, float]:
    """Samples/s of the per-item pipeline (JPEG decode, x0.5 bicubic, crop, target resize, augmentation)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    size = (max(1536, 4 * crop), max(1024, 2 * crop))
    smooth = np.asarray(Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)).resize(size))
    encoded = []
    for _ in range(2):
        buffer = io.BytesIO()
        Image.fromarray(smooth).save(buffer, format="JPEG", quality=95)
        encoded.append(buffer.getvalue())
    depth = Image.fromarray(rng.integers(0, 256, (size[1] // 2, size[0] // 2), dtype=np.uint8))
    rates = {}
    for level in levels:
        target = max(1, round(crop * LEVEL_SCALES[level]))
        start = time.perf_counter()
        for i in range(samples):
            photo, bokeh = (Image.open(io.BytesIO(b)) for b in encoded)
            crop_pair(photo, bokeh, depth, crop, target, np.random.default_rng(i))
        rates[level] = samples / (time.perf_counter() - start)
    return rates


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--crop", type=int, help="input crop side (default: 64 on CPU, 512 on CUDA)")
    parser.add_argument("--batch", type=int, help="batch (default: 2 on CPU, the authors' per level on CUDA)")
    parser.add_argument("--levels", default="7,6,5,4,3,2,1")
    parser.add_argument("--steps", type=int, help="timed steps per level (default 2 on CPU, 10 on CUDA)")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    crop = args.crop or (512 if cuda else 64)
    steps = args.steps or (10 if cuda else 2)
    levels = [int(v) for v in args.levels.split(",")]
    print(
        f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}, "
        f"device {torch.cuda.get_device_name(device) if cuda else platform.processor() or 'cpu'} "
        f"({torch.get_num_threads()} CPU threads)"
    )
    model = random_pynet(device)
    vgg, vgg_note = vgg_for_timing(device)
    print(f"crop {crop}x{crop} (level-1 output {2 * crop}x{2 * crop}); VGG-19: {vgg_note}; {steps} timed steps")
    header = "level  batch  train fp32 img/s" + (
        "  train bf16 img/s  bf16/fp32" if cuda else "  infer fp32 img/s  train/infer"
    )
    print(header)
    for level in levels:
        batch = args.batch or (DEFAULT_BATCH_SIZES[level] if cuda else 2)
        fp32 = time_train(model, level, batch, crop, device, "fp32", vgg, steps)
        if cuda:
            other = time_train(model, level, batch, crop, device, "bf16", vgg, steps)
            print(f"{level:>5}  {batch:>5}  {fp32:>16.2f}  {other:>17.2f}  {other / fp32:>9.2f}")
        else:
            other = time_infer(model, level, batch, crop, device, steps)
            print(f"{level:>5}  {batch:>5}  {fp32:>16.2f}  {other:>17.2f}  {fp32 / other:>11.3f}")
        if cuda:
            print(f"       peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")
            torch.cuda.reset_peak_memory_stats(device)
    data_crop = 512
    rates = time_data(data_crop, [7, 1])
    print(
        f"data pipeline (1 CPU process, 1536x1024 JPEG pair, crop {data_crop}): "
        + ", ".join(f"level {lvl} {rate:.1f} samples/s" for lvl, rate in rates.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
