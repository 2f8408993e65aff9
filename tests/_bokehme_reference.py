"""A float64 reference of BokehMe's classical scatter and pipeline, written from the formulas of the authors' code.

The authors' renderer (github.com/JuewenPeng/BokehMe, ``classical_renderer/scatter.py``) is a CUDA kernel launched
through cupy; it cannot run without a GPU, and its float32 ``atomicAdd`` makes its last bits depend on thread order.
This module evaluates the same formula literally, one source pixel at a time over its whole square of neighbours,
in float64 (the coverage test ``r >= dist`` of the dilation in float32, as their kernel makes it, so the integer
map is decided the same way). Slow (O(N R^2) in Python/NumPy): for small test images and for the fixture script.

"""

from __future__ import annotations

import numpy as np


def scatter_reference(image: np.ndarray, defocus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(bokeh float64 (H, W, 3), dilated int32 (H, W))`` for ``image`` (H, W, 3) and signed radii ``defocus``."""
    image = np.asarray(image, np.float64)
    defocus32 = np.asarray(defocus, np.float32)
    height, width = defocus32.shape
    bokeh = np.zeros((height, width, 3))
    weights = np.zeros((height, width))
    dilate = np.trunc(defocus32).astype(np.int32)
    for y in range(height):
        for x in range(width):
            d32 = defocus32[y, x]
            r32 = np.float32(abs(d32))
            r = float(r32)
            reach = int(r32) + 1
            y0, y1 = max(0, y - reach), min(height, y + reach + 1)
            x0, x1 = max(0, x - reach), min(width, x + reach + 1)
            dy, dx = np.mgrid[y0 - y : y1 - y, x0 - x : x1 - x]
            dist32 = np.sqrt((dy * dy + dx * dx).astype(np.float32))  # sqrtf, as their kernel
            weight = (0.5 + 0.5 * np.tanh(4.0 * (r - dist32.astype(np.float64)))) / (r * r + 0.2)
            weights[y0:y1, x0:x1] += weight
            bokeh[y0:y1, x0:x1] += weight[..., None] * image[y, x]
            covered = r32 >= dist32
            region = dilate[y0:y1, x0:x1]
            region[covered] = np.maximum(region[covered], int(d32))
    return bokeh / weights[..., None], dilate
