"""Small pieces several benchmark scripts share: a free loopback port, a camera-like test photo, the
``--counts/--width/--height`` options of the two-size scaling benchmarks and their per-stage slope table."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks._env import ROOT

__all__ = ["add_size_counts", "free_port", "parse_size_counts", "print_stage_slopes", "camera_photo"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def camera_photo(folder: Path, megapixels: float, aspect: tuple[int, int]) -> Path:
    """A ``megapixels`` JPEG of ``aspect`` (width, height): a CC0 example upscaled, with mild noise so that JPEG
    decoding and encoding see camera-like detail."""
    across, down = aspect
    width = int(round((megapixels * 1e6 * across / down) ** 0.5))
    height = int(round(width * down / across))
    source = Image.open(ROOT / "space" / "examples" / "astronaut.png").convert("RGB")
    big = np.asarray(source.resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
    noise = np.random.default_rng(0).integers(-6, 7, big.shape, dtype=np.int16)
    path = folder / f"photo_{width}x{height}.jpg"
    Image.fromarray(np.clip(big + noise, 0, 255).astype(np.uint8)).save(path, quality=92)
    return path


def add_size_counts(parser: argparse.ArgumentParser, counts: tuple[int, int]) -> None:
    """``--counts N1 N2`` (two dataset sizes: the per-image slope between them) and the images' ``--width/--height``."""
    parser.add_argument("--counts", type=int, nargs=2, default=counts, metavar=("N1", "N2"))
    parser.add_argument("--width", type=int, default=1536)
    parser.add_argument("--height", type=int, default=1024)


def parse_size_counts(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[int, int]:
    """The two counts, smaller first; a parser error unless they are positive and different."""
    n1, n2 = sorted(args.counts)
    if n1 < 1 or n2 == n1:
        parser.error("--counts needs two different positive counts")
    return n1, n2


def print_stage_slopes(small: dict, large: dict, n1: int, n2: int, width: int, fixed_label: str = "fixed") -> None:
    """One line per stage (seconds in ``small``/``large``, measured at ``n1``/``n2`` images): the per-image slope
    and the part that does not grow with the count; stages that took no time at either size are left out."""
    for stage in sorted(set(small) | set(large)):
        a, b = small.get(stage, 0.0), large.get(stage, 0.0)
        if not a and not b:
            continue
        slope = (b - a) / (n2 - n1)
        fixed = max(0.0, a - n1 * slope)
        print(f"  {stage:>{width}}: {slope * 1000:8.1f} ms per image, {fixed:6.2f} s {fixed_label}")
