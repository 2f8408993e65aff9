"""BokehMe's classical renderer: a scattering-based disc blur with a soft edge, on the CPU (Numba) and in PyTorch.

The model (Peng et al., CVPR 2022; the formula of the authors' ``classical_renderer/scatter.py``, whose
CUDA/cupy kernel has no CPU path): every source pixel ``s`` with signed defocus ``d_s`` (radius ``r = |d_s|`` in
pixels) spreads its colour to every pixel ``p`` of the square ``|p - s|_inf <= int(r) + 1`` with the weight

    w(r, dist) = (0.5 + 0.5 * tanh(4 * (r - dist))) / (r**2 + 0.2),     dist = |p - s|_2,

and the output is ``sum(w * colour) / sum(w)``. Alongside, a *dilated* defocus map keeps, per pixel, the largest
``int(d_s)`` (truncated toward zero) over the sources whose disc covers it (``r >= dist``, compared in float32 as
their kernel does), starting from the pixel's own ``int(d)``.

The CPU renderer computes the same sums in float64, gathering per output row (rows run in parallel threads, so no
atomics): a source's row segment splits into an *interior* run where ``r - dist >= 2`` (there the soft edge is 1
to within 1.1e-7, about float32's rounding, so the weight is the constant ``1 / (r**2 + 0.2)`` and the run is added
in O(1) to a row difference buffer) and the pixels within 2 px of the disc's edge, whose weight is computed once per
``|dx|`` for both sides (``tanh`` from an interpolated table, error below 1.2e-8); pixels with ``dist - r > 2`` weigh
under 1.1e-7 of an interior pixel and are skipped. The covered pixels of a row form one run ``|dx| <= half``: an
O(1) range-max update (two overlapping power-of-two blocks), pushed down once per row. Cost ~ N * (2 R + 3) row
segments plus N * 12 R edge weights for radius R; measured 3e-8 from the float64 reference.

The PyTorch renderer (used on CUDA) loops over the offsets of the disc of radius ``max(r) + 2`` and adds each
shifted, weighted copy of the image: the same formula and cut-off, cost ~ N * pi * (R + 2)**2 elementwise operations
(one batch of kernels per offset: simple, not tuned; not yet timed on a GPU).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

__all__ = ["BAND", "scatter_cpu", "scatter_torch"]

BAND = 2.0  # |r - dist| beyond which the soft edge 0.5 + 0.5 tanh(4 (r - dist)) is 0 or 1 to within 1.1e-7
_NO_VALUE = -(2**31)
# tanh(4 u) on u in [-BAND, BAND], linearly interpolated at steps of 1/8192: error below 1.2e-8.
_LUT_SCALE = 8192.0
_LUT_SIZE = int(2 * BAND * _LUT_SCALE) + 2
_TANH_LUT = np.tanh(4.0 * (np.arange(_LUT_SIZE, dtype=np.float64) / _LUT_SCALE - BAND))


@njit(nogil=True, cache=True)
def _rows(image, defocus, y0, y1, bokeh, dilate, lut):  # pragma: no cover - numba
    height, width = defocus.shape
    radius = np.abs(defocus)
    rmax = 0
    for y in range(height):
        for x in range(width):
            rmax = max(rmax, int(radius[y, x]))
    levels = 1
    while (1 << levels) <= width:
        levels += 1
    diff = np.zeros((width + 1, 4), np.float64)
    acc = np.zeros((width, 4), np.float64)
    table = np.empty((levels, width), np.int32)
    # float32 distances |(t, dy)| (their sqrtf, correctly rounded) for every offset a source can reach
    span = rmax + 2
    distances = np.empty((span + 1, span + 1), np.float64)
    for a in range(span + 1):
        for b in range(span + 1):
            distances[a, b] = np.float64(np.float32(math.sqrt(a * a + b * b)))
    for y in range(y0, y1):
        diff[:] = 0.0
        acc[:] = 0.0
        table[:] = _NO_VALUE
        for sy in range(max(0, y - rmax - 1), min(height, y + rmax + 2)):
            dy = abs(y - sy)
            dy2 = dy * dy
            for sx in range(width):
                r32 = radius[sy, sx]
                big = int(r32)
                if big + 1 < dy:
                    continue
                r = np.float64(r32)
                value = int(defocus[sy, sx])  # truncation toward zero, as C's int(float)
                inv = 1.0 / (r * r + 0.2)
                c0, c1, c2 = image[sy, sx, 0], image[sy, sx, 1], image[sy, sx, 2]
                # interior run: dist <= r - BAND
                inner = -1
                if r - BAND > dy:
                    inner = int(math.floor(math.sqrt((r - BAND) * (r - BAND) - dy2)))
                    while inner >= 0 and math.sqrt(inner * inner + dy2) > r - BAND:
                        inner -= 1
                if inner >= 0:
                    lo, hi = max(sx - inner, 0), min(sx + inner, width - 1)
                    if lo <= hi:
                        diff[lo, 0] += inv * c0
                        diff[lo, 1] += inv * c1
                        diff[lo, 2] += inv * c2
                        diff[lo, 3] += inv
                        diff[hi + 1, 0] -= inv * c0
                        diff[hi + 1, 1] -= inv * c1
                        diff[hi + 1, 2] -= inv * c2
                        diff[hi + 1, 3] -= inv
                # covered pixels (dist <= r, decided in float32 as their kernel): |dx| <= half, a range-max update
                if dy <= r32:
                    half = int(math.sqrt(max(r * r - dy2, 0.0)))
                    while np.float32(math.sqrt((half + 1) * (half + 1) + dy2)) <= r32:
                        half += 1
                    while half >= 0 and np.float32(math.sqrt(half * half + dy2)) > r32:
                        half -= 1
                    lo, hi = max(sx - half, 0), min(sx + half, width - 1)
                    if half >= 0 and lo <= hi:
                        k = 0
                        while (2 << k) <= hi - lo + 1:
                            k += 1
                        if table[k, lo] < value:
                            table[k, lo] = value
                        start = hi - (1 << k) + 1
                        if table[k, start] < value:
                            table[k, start] = value
                # edge pixels: inner < |dx| <= big + 1, up to dist <= r + BAND; the weight depends on |dx| only
                outer = (r + BAND) * (r + BAND) - dy2
                if outer < 0.0:
                    continue
                reach = min(big + 1, int(math.sqrt(outer)) + 1)
                for t in range(inner + 1, reach + 1):
                    u = (r - distances[dy, t] + BAND) * _LUT_SCALE
                    if u <= 0.0:
                        break  # farther pixels of this row weigh less still
                    i = min(int(u), _LUT_SIZE - 2)
                    weight = (0.5 + 0.5 * (lut[i] + (lut[i + 1] - lut[i]) * (u - i))) * inv
                    w0, w1, w2 = weight * c0, weight * c1, weight * c2
                    if sx - t >= 0:
                        x = sx - t
                        acc[x, 0] += w0
                        acc[x, 1] += w1
                        acc[x, 2] += w2
                        acc[x, 3] += weight
                    if t > 0 and sx + t < width:
                        x = sx + t
                        acc[x, 0] += w0
                        acc[x, 1] += w1
                        acc[x, 2] += w2
                        acc[x, 3] += weight
        running = np.zeros(4, np.float64)
        for x in range(width):
            for c in range(4):
                running[c] += diff[x, c]
            total = running[3] + acc[x, 3]
            for c in range(3):
                bokeh[y, x, c] = (running[c] + acc[x, c]) / total
        for k in range(levels - 1, 0, -1):
            half = 1 << (k - 1)
            for i in range(width - (1 << k) + 1):
                v = table[k, i]
                if v != _NO_VALUE:
                    if table[k - 1, i] < v:
                        table[k - 1, i] = v
                    if table[k - 1, i + half] < v:
                        table[k - 1, i + half] = v
        for x in range(width):
            dilate[y, x] = table[0, x]


def scatter_cpu(image: np.ndarray, defocus: np.ndarray, *, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """BokehMe's classical scatter on the CPU.

    Args:
        image: float32 (H, W, 3), the values to scatter (the authors pass ``photo ** gamma``).
        defocus: float32 (H, W) signed defocus radius in pixels (the authors' ``defocus * defocus_scale``).
        threads: worker threads (bands of rows; the compiled kernel releases the GIL).

    Returns:
        ``(bokeh, dilated)``: float32 (H, W, 3) normalised scatter, and int32 (H, W) dilated ``int(defocus)``.
    """
    image = np.ascontiguousarray(image, dtype=np.float32)
    defocus = np.ascontiguousarray(defocus, dtype=np.float32)
    height, width = defocus.shape
    bokeh = np.empty((height, width, 3), np.float32)
    dilate = np.empty((height, width), np.int32)
    n_bands = max(1, min(4 * threads, height)) if threads > 1 else 1
    edges = np.linspace(0, height, n_bands + 1).round().astype(int)
    bands = [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]
    if len(bands) == 1:
        _rows(image, defocus, 0, height, bokeh, dilate, _TANH_LUT)
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for future in [pool.submit(_rows, image, defocus, a, b, bokeh, dilate, _TANH_LUT) for a, b in bands]:
                future.result()
    return bokeh, dilate


def scatter_torch(image, defocus):  # type: ignore[no-untyped-def]
    """The same scatter in PyTorch on the tensors' device (CUDA in practice), by shifted adds over the square.

    Args:
        image: float tensor (N, 3, H, W).
        defocus: float tensor (N, 1, H, W) of signed radii in pixels.

    Returns:
        ``(bokeh, dilated)``: (N, 3, H, W) in the image's dtype and (N, 1, H, W) int32.
    """
    import torch

    radius = defocus.abs()
    big = radius.to(torch.int32)  # truncation toward zero, as int(float)
    value = defocus.to(torch.int32)
    reach = int(big.max().item()) + 1 if radius.numel() else 0
    farthest = float(radius.max().item()) + BAND if radius.numel() else 0.0
    inv = 1.0 / (radius * radius + 0.2)
    height, width = defocus.shape[2], defocus.shape[3]
    bokeh = torch.zeros_like(image)
    weight_sum = torch.zeros_like(defocus)
    dilate = value.clone()
    floor = torch.iinfo(torch.int32).min
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            if abs(dy) >= height or abs(dx) >= width:
                continue
            dist = math.sqrt(dy * dy + dx * dx)
            if dist > farthest:
                continue  # beyond every disc's edge by more than BAND: weights below 1.1e-7, as on the CPU
            dist32 = float(np.float32(dist))
            inside = big + 1 >= max(abs(dy), abs(dx))
            weight = torch.where(inside, (0.5 + 0.5 * torch.tanh(4.0 * (radius - dist32))) * inv, 0.0)
            covered = torch.where(inside & (radius >= dist32), value, floor)
            # source rows/cols [sy0, sy1) land on [sy0 + dy, sy1 + dy)
            sy0, sy1 = max(0, -dy), min(height, height - dy)
            sx0, sx1 = max(0, -dx), min(width, width - dx)
            src = (slice(None), slice(None), slice(sy0, sy1), slice(sx0, sx1))
            dst = (slice(None), slice(None), slice(sy0 + dy, sy1 + dy), slice(sx0 + dx, sx1 + dx))
            w = weight[src]
            bokeh[dst] += w * image[src]
            weight_sum[dst] += w
            dilate[dst] = torch.maximum(dilate[dst], covered[src])
    return bokeh / weight_sum, dilate
