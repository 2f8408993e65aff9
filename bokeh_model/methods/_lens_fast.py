"""Fast CPU evaluation of the layered thin-lens model of :mod:`bokeh_model.methods.lens` (Numba).

Same layers as the reference (one per rounded signed radius, composited front to back). The speed-ups:

1. **Per-layer kernel**: every pixel of layer ``l`` uses the kernel of radius ``|l|`` (the reference uses the
   pixel's exact radius, at most 0.5 px away).
2. **Multi-resolution**: a layer with radius ``R >= coarse_from`` is splatted on a grid ``s`` times coarser
   (``s`` a power of two, chosen so that the coarse radius ``R / s`` stays in ``[coarse_from, 2 coarse_from)``),
   blurred there and bilinearly upsampled. Its disc edges soften by about ``s`` pixels; cost falls by ``s^3``.
3. **Run-length kernels**: the anti-aliased aperture kernel is stored as horizontal runs of equal weight, so a
   run costs O(1) whatever its length: either a *gather* (difference of two row prefix sums of the layer) or
   a *scatter* (+w and -w at the run's ends in a row-difference buffer, prefix-summed afterwards). Each layer
   uses whichever is cheaper: gather for compact layers, scatter for thin ones (a receding ground plane).
4. **Sparsity**: each layer is processed only in the 8 x 8 tiles that hold its pixels or that its blur can
   reach, inside its bounding box.
5. **Threads**: the image is cut into horizontal bands rendered independently (each reads a halo of source
   rows) in a thread pool; the compiled kernels release the GIL. sRGB decode/encode use interpolated tables.

Cost grows with the number of occupied layers times their reachable area; a smooth photo's depth map is the
cheap case, per-pixel noise as depth the worst (every layer everywhere).

With ``additive=True`` the layers are summed instead of composited: the naive "disk blur without
occlusion" of the ``disk`` method.

Why one file: one renderer's compiled kernels and the driver that schedules them share private data layouts
(layer indices, tile masks, run-length kernels); Numba's on-disk cache and ``inline`` work within a module.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..cache import use_user_numba_cache
from ._optics import aperture_kernel, highlight_gain, linear_to_srgb, srgb_to_linear

use_user_numba_cache()  # before numba compiles with cache=True: never into site-packages
from numba import njit  # noqa: E402

__all__ = ["COARSE_FROM", "default_threads", "kernel_runs", "render_image", "render_layers", "warm_up"]

COARSE_FROM = 6


def kernel_runs(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decompose a 2-D kernel into horizontal runs of equal weight: ``(dy, x_start, x_end, weight)`` arrays.

    Offsets are relative to the kernel centre; ``x_end`` is inclusive. Zero weights are dropped.
    """
    half_y, half_x = kernel.shape[0] // 2, kernel.shape[1] // 2
    dys, starts, ends, weights = [], [], [], []
    for row in range(kernel.shape[0]):
        values = kernel[row]
        col = 0
        while col < len(values):
            value = values[col]
            end = col
            while end + 1 < len(values) and values[end + 1] == value:
                end += 1
            if value != 0.0:
                dys.append(row - half_y)
                starts.append(col - half_x)
                ends.append(end - half_x)
                weights.append(value)
            col = end + 1
    return (
        np.asarray(dys, dtype=np.int64),
        np.asarray(starts, dtype=np.int64),
        np.asarray(ends, dtype=np.int64),
        np.asarray(weights, dtype=np.float32),
    )


@functools.lru_cache(maxsize=256)
def _cached_runs(radius: float, blades: int, rotation_deg: float) -> tuple[np.ndarray, ...]:
    return kernel_runs(aperture_kernel(radius, blades, rotation_deg))


@njit(cache=True)
def _layer_boxes(layer_of: np.ndarray, low: int, count: int) -> np.ndarray:  # pragma: no cover - numba
    boxes = np.empty((count, 4), dtype=np.int64)  # y0, y1 (exclusive), x0, x1 (exclusive)
    boxes[:, 0] = layer_of.shape[0]
    boxes[:, 1] = -1
    boxes[:, 2] = layer_of.shape[1]
    boxes[:, 3] = -1
    for y in range(layer_of.shape[0]):
        for x in range(layer_of.shape[1]):
            k = layer_of[y, x] - low
            if y < boxes[k, 0]:
                boxes[k, 0] = y
            if y + 1 > boxes[k, 1]:
                boxes[k, 1] = y + 1
            if x < boxes[k, 2]:
                boxes[k, 2] = x
            if x + 1 > boxes[k, 3]:
                boxes[k, 3] = x + 1
    return boxes


@njit(nogil=True, cache=True, fastmath=True)
def _sharp_layer(colour, layer_of, level, y0, y1, x0, x1, out, trans, additive):  # pragma: no cover - numba
    for y in range(y0, y1):
        for x in range(x0, x1):
            if layer_of[y, x] == level:
                t = 1.0 if additive else trans[y, x]
                for c in range(3):
                    out[y, x, c] += t * colour[y, x, c]
                if additive:
                    trans[y, x] += 1.0
                else:
                    trans[y, x] = 0.0


@njit(cache=True, inline="always", fastmath=True)
def _clamped_add(out_row, row, j, a, b, w, cw):  # pragma: no cover - numba
    lo = max(j - b, 0)
    hi = min(j - a, cw - 1)
    if lo <= hi:
        for c in range(4):
            out_row[j * 4 + c] += w * (row[(hi + 1) * 4 + c] - row[lo * 4 + c])


@njit(cache=True)
def _count(mask):  # pragma: no cover - numba
    total = 0
    for value in mask.ravel():
        total += value
    return total


@njit(nogil=True, cache=True, fastmath=True)
def _gather(source, src, act, tiles_reach, run_dy, run_a, run_b, run_w, flat_blur, ch, cw):  # pragma: no cover
    """blur(p) = sum over runs of w * (sum of the source over columns p.x - b .. p.x - a in row p.y - dy)."""
    wide = _dilate(act, tiles_reach)  # where the gather reads prefix sums
    prefix = np.empty((ch, cw + 1, 4), dtype=np.float32)
    for i in range(ch):
        ty = i // TILE
        for span in _spans(wide[ty], cw, TILE):
            run = np.zeros(4, dtype=np.float32)
            prefix[i, span[0]] = 0.0
            for j in range(span[0], span[1]):
                if src[ty, j // TILE]:
                    for c in range(4):
                        run[c] += source[i, j, c]
                for c in range(4):
                    prefix[i, j + 1, c] = run[c]
    flat_prefix = prefix.reshape(ch, (cw + 1) * 4)
    for i in range(ch):
        out_row = flat_blur[i]
        for span in _spans(act[i // TILE], cw, TILE):
            c0, c1 = span[0], span[1]
            for r in range(run_dy.shape[0]):
                si = i - run_dy[r]
                if si < 0 or si >= ch:
                    continue
                a, b, w = run_a[r], run_b[r], run_w[r]
                row = flat_prefix[si]
                j_lo = min(max(b, c0), c1)  # columns needing no clamping: 0 <= j - b, j - a <= cw - 1
                j_hi = max(min(cw + a, c1), j_lo)
                n = (j_hi - j_lo) * 4
                if n > 0:  # views from 0: provably non-negative indices, so LLVM vectorises the loop
                    target = out_row[j_lo * 4 : j_lo * 4 + n]
                    upper = row[(j_lo + 1 - a) * 4 : (j_lo + 1 - a) * 4 + n]
                    lower = row[(j_lo - b) * 4 : (j_lo - b) * 4 + n]
                    for k in range(n):
                        target[k] += w * (upper[k] - lower[k])
                for j in range(c0, j_lo):
                    _clamped_add(out_row, row, j, a, b, w, cw)
                for j in range(j_hi, c1):
                    _clamped_add(out_row, row, j, a, b, w, cw)


@njit(cache=True, inline="always", fastmath=True)
def _clamped_scatter(row, src_row, j, a, b, w, cw):  # pragma: no cover - numba
    lo = max(j + a, 0)
    hi = min(j + b, cw - 1)
    if lo <= hi:
        for c in range(4):
            value = w * src_row[j * 4 + c]
            row[lo * 4 + c] += value
            row[(hi + 1) * 4 + c] -= value


TILE = 8  # tile side, in (coarse) pixels, of the sparse bookkeeping


@njit(cache=True)
def _occupancy(layer_of, low, count, tile):  # pragma: no cover - numba
    """occ[level - low, ty, tx] = 1 when the full-resolution tile (ty, tx) holds a pixel of that layer."""
    height, width = layer_of.shape
    occ = np.zeros((count, (height + tile - 1) // tile, (width + tile - 1) // tile), dtype=np.uint8)
    for y in range(height):
        for x in range(width):
            occ[layer_of[y, x] - low, y // tile, x // tile] = 1
    return occ


@njit(cache=True)
def _dilate(mask, reach):  # pragma: no cover - numba
    rows, cols = mask.shape
    out = np.zeros_like(mask)
    for ty in range(rows):
        for tx in range(cols):
            if mask[ty, tx]:
                for uy in range(max(ty - reach, 0), min(ty + reach + 1, rows)):
                    for ux in range(max(tx - reach, 0), min(tx + reach + 1, cols)):
                        out[uy, ux] = 1
    return out


@njit(cache=True)
def _spans(mask_row, limit, tile):  # pragma: no cover - numba
    """Runs of set tiles in one row of a tile mask, as pixel column ranges [start, end) clipped to limit."""
    spans = np.empty((mask_row.shape[0] + 1, 2), dtype=np.int64)
    count = 0
    tx = 0
    while tx < mask_row.shape[0]:
        if mask_row[tx]:
            start = tx
            while tx < mask_row.shape[0] and mask_row[tx]:
                tx += 1
            spans[count, 0] = start * tile
            spans[count, 1] = min(tx * tile, limit)
            count += 1
        else:
            tx += 1
    return spans[:count]


@njit(nogil=True, cache=True, fastmath=True)
def _blurred_layer(
    colour, layer_of, occ, level, s, cy0, cy1, cx0, cx1, oy0, oy1, run_dy, run_a, run_b, run_w, out, trans, additive
):  # pragma: no cover - numba
    height, width = layer_of.shape
    ch, cw = cy1 - cy0, cx1 - cx0
    inv = np.float32(1.0 / (s * s))
    fine = TILE
    # 0. sparse bookkeeping on a grid of TILE x TILE coarse pixels: tiles holding the layer's pixels (src),
    #    tiles its blur can reach (act) and tiles whose row prefix sums the gather reads (pre).
    reach = 0
    for r in range(run_dy.shape[0]):
        reach = max(reach, abs(run_dy[r]), abs(run_a[r]), abs(run_b[r]))
    n_ty, n_tx = (ch + TILE - 1) // TILE, (cw + TILE - 1) // TILE
    src = np.zeros((n_ty, n_tx), dtype=np.uint8)
    for ty in range(n_ty):
        fr0 = (cy0 + ty * TILE) * s
        fr1 = min((cy0 + min((ty + 1) * TILE, ch)) * s, height)
        for tx in range(n_tx):
            fc0 = (cx0 + tx * TILE) * s
            fc1 = min((cx0 + min((tx + 1) * TILE, cw)) * s, width)
            if fr0 >= fr1 or fc0 >= fc1:
                continue
            found = False
            for fy in range(fr0 // fine, (fr1 - 1) // fine + 1):
                for fx in range(fc0 // fine, (fc1 - 1) // fine + 1):
                    if occ[fy, fx]:
                        found = True
            if found:
                src[ty, tx] = 1
    tiles_reach = (reach + 1 + TILE - 1) // TILE
    act = _dilate(src, tiles_reach)  # tiles the layer's blur can reach
    pre = _dilate(act, 1)  # ... and a ring of tiles read (as zeros) by the bilinear upsampling
    # 1. splat the layer's pixels onto the (coarse) grid: only tiles that hold some.
    source = np.empty((ch, cw, 4), dtype=np.float32)
    for i in range(ch):
        ty = i // TILE
        ya, yb = (cy0 + i) * s, min((cy0 + i + 1) * s, height)
        for span in _spans(src[ty], cw, TILE):
            source[i, span[0] : span[1]] = 0.0
            for j in range(span[0], span[1]):
                xa, xb = (cx0 + j) * s, min((cx0 + j + 1) * s, width)
                for yy in range(ya, yb):
                    for xx in range(xa, xb):
                        if layer_of[yy, xx] == level:
                            for c in range(3):
                                source[i, j, c] += colour[yy, xx, c] * inv
                            source[i, j, 3] += inv
    # 2. blur with the kernel's horizontal runs, whichever way is cheaper for this layer:
    #    gather (each output pixel sums row-prefix differences; cost ~ reachable area x runs) when the layer is
    #    compact, scatter (each source pixel adds +w / -w at its run's ends into a row-difference buffer that
    #    is then prefix-summed; cost ~ layer pixels x runs) when the layer is thin or sparse.
    blur = np.empty((ch, cw + 1, 4), dtype=np.float32)
    flat_blur = blur.reshape(ch, (cw + 1) * 4)
    flat_source = source.reshape(ch, cw * 4)
    for i in range(ch):
        row = flat_blur[i]
        for span in _spans(pre[i // TILE], cw + 1, TILE):
            for k in range(span[0] * 4, min(span[1] + 1, cw + 1) * 4):
                row[k] = 0.0
    n_runs = run_dy.shape[0]
    if _count(act) <= 1.5 * _count(src):
        _gather(source, src, act, tiles_reach, run_dy, run_a, run_b, run_w, flat_blur, ch, cw)
    else:
        for i in range(ch):
            spans = _spans(src[i // TILE], cw, TILE)
            if spans.shape[0] == 0:
                continue
            src_row = flat_source[i]
            for r in range(n_runs):
                t = i + run_dy[r]
                if t < 0 or t >= ch:
                    continue
                a, b, w = run_a[r], run_b[r], run_w[r]
                row = flat_blur[t]
                for span in spans:
                    # columns whose run [j + a, j + b] starts and ends inside the region: no clamping
                    j_lo = min(max(span[0], -a), span[1])
                    j_hi = max(min(span[1], cw - b), j_lo)
                    n = (j_hi - j_lo) * 4
                    if n > 0:
                        values = src_row[j_lo * 4 : j_lo * 4 + n]
                        starts = row[(j_lo + a) * 4 : (j_lo + a) * 4 + n]
                        ends = row[(j_lo + b + 1) * 4 : (j_lo + b + 1) * 4 + n]
                        for k in range(n):  # two separate loops: starts and ends overlap in memory
                            starts[k] += w * values[k]
                        for k in range(n):
                            ends[k] -= w * values[k]
                    for j in range(span[0], j_lo):
                        _clamped_scatter(row, src_row, j, a, b, w, cw)
                    for j in range(j_hi, span[1]):
                        _clamped_scatter(row, src_row, j, a, b, w, cw)
        for i in range(ch):
            row = flat_blur[i]
            for span in _spans(act[i // TILE], cw, TILE):
                for c in range(4):
                    total = np.float32(0.0)
                    for j in range(span[0], span[1]):
                        total += row[j * 4 + c]
                        row[j * 4 + c] = total
                if span[1] < cw + 1:
                    for c in range(4):
                        row[span[1] * 4 + c] = 0.0  # a run's closing -w just past the span
    # 3. upsample (bilinear, pixel centres aligned) and composite front to back (or add), active tiles only.
    fy0, fy1 = max(cy0 * s, oy0), min(cy1 * s, height, oy1)
    half = (s - 1) / 2.0
    values = np.empty(4, dtype=np.float32)
    for y in range(fy0, fy1):
        gy = (y - half) / s - cy0
        iy = int(np.floor(gy))
        ty = gy - iy
        iy0 = min(max(iy, 0), ch - 1)
        iy1 = min(max(iy + 1, 0), ch - 1)
        own_row = min(y // s - cy0, ch - 1)
        for span in _spans(act[own_row // TILE], cw, TILE):
            for x in range((cx0 + span[0]) * s, min((cx0 + span[1]) * s, width)):
                if s == 1:  # same grid: no interpolation
                    for c in range(4):
                        values[c] = blur[y - cy0, x - cx0, c]
                else:
                    gx = (x - half) / s - cx0
                    ix = int(np.floor(gx))
                    tx = gx - ix
                    ix0 = min(max(ix, 0), cw - 1)
                    ix1 = min(max(ix + 1, 0), cw - 1)
                    for c in range(4):
                        top = blur[iy0, ix0, c] * (1 - tx) + blur[iy0, ix1, c] * tx
                        bottom = blur[iy1, ix0, c] * (1 - tx) + blur[iy1, ix1, c] * tx
                        values[c] = top * (1 - ty) + bottom * ty
                alpha = values[3]
                if alpha <= 1e-12:
                    continue
                if additive:
                    for c in range(3):
                        out[y, x, c] += values[c]
                    trans[y, x] += alpha
                else:
                    scale = 1.0 / max(alpha, 1.0)
                    t = trans[y, x]
                    for c in range(3):
                        out[y, x, c] += t * scale * values[c]
                    trans[y, x] = t * (1.0 - alpha * scale)


def _render_band(
    colour: np.ndarray,
    layer_of: np.ndarray,
    boxes: np.ndarray,
    occ: np.ndarray,
    low: int,
    high: int,
    rows: tuple[int, int],
    out: np.ndarray,
    trans: np.ndarray,
    blades: int,
    rotation_deg: float,
    additive: bool,
    coarse_from: int,
) -> None:
    """All layers, front to back, for output rows ``rows``; reads source rows around them (halo)."""
    oy0, oy1 = rows
    height, width = layer_of.shape
    for level in range(high, low - 1, -1):
        y0, y1, x0, x1 = (int(v) for v in boxes[level - low])
        if y1 < 0:
            continue  # empty layer
        size = abs(level)
        if size == 0:
            if max(y0, oy0) < min(y1, oy1):
                _sharp_layer(colour, layer_of, level, max(y0, oy0), min(y1, oy1), x0, x1, out, trans, additive)
            continue
        s = 1
        while size >= 2 * s * coarse_from:
            s *= 2
        runs = _cached_runs(size / s, blades, rotation_deg)
        margin = int(max(np.abs(runs[0]).max(), np.abs(runs[1]).max(), np.abs(runs[2]).max())) + 2
        coarse_h, coarse_w = -(-height // s), -(-width // s)
        cy0 = max(y0 // s - margin, oy0 // s - margin, 0)
        cy1 = min(-(-y1 // s) + margin, -(-oy1 // s) + margin, coarse_h)
        cx0, cx1 = max(x0 // s - margin, 0), min(-(-x1 // s) + margin, coarse_w)
        if cy0 >= cy1 or max(cy0 * s, oy0) >= min(cy1 * s, oy1):
            continue
        _blurred_layer(
            colour, layer_of, occ[level - low], level, s, cy0, cy1, cx0, cx1, oy0, oy1, *runs, out, trans, additive
        )


def default_threads() -> int:
    """Worker threads for the CPU renderer: torch's intra-op thread count (``torch.set_num_threads``)."""
    try:
        import torch

        return max(1, int(torch.get_num_threads()))
    except ImportError:  # pragma: no cover - torch is a dependency
        return max(1, os.cpu_count() or 1)


@njit(nogil=True, cache=True, fastmath=True)
def _decode_rows(image, gain, lut, linear, colour, y0, y1):  # pragma: no cover - numba
    top = lut.shape[0] - 1
    for y in range(y0, y1):
        for x in range(image.shape[1]):
            factor = gain[y, x]
            for c in range(3):
                v = min(max(image[y, x, c], 0.0), 1.0)
                if linear:
                    pos = v * top
                    i = min(int(pos), top - 1)
                    v = lut[i] + (lut[i + 1] - lut[i]) * (pos - i)
                colour[y, x, c] = v * factor


@njit(nogil=True, cache=True, fastmath=True)
def _finish_rows(out, trans, additive, lut, linear, result, y0, y1):  # pragma: no cover - numba
    top = lut.shape[0] - 1
    for y in range(y0, y1):
        for x in range(out.shape[1]):
            coverage = trans[y, x] if additive else 1.0 - trans[y, x]
            inv = 1.0 / max(coverage, 1e-12)
            for c in range(3):
                v = min(max(out[y, x, c] * inv, 0.0), 1.0)
                if linear:
                    pos = v * top
                    i = min(int(pos), top - 1)
                    v = lut[i] + (lut[i + 1] - lut[i]) * (pos - i)
                result[y, x, c] = v


# sRGB transfer tables, linearly interpolated: max error 3e-8 (decode) and 2e-6 (encode), far below 1/255.
_DECODE_LUT = srgb_to_linear(np.linspace(0.0, 1.0, 4097, dtype=np.float64)).astype(np.float32)
_ENCODE_LUT = linear_to_srgb(np.linspace(0.0, 1.0, 16385, dtype=np.float64)).astype(np.float32)


def _bands(height: int, width: int, threads: int) -> list[tuple[int, int]]:
    n_bands = 1 if threads == 1 or height * width < 65536 else min(2 * threads, max(1, height // 32))
    edges = np.linspace(0, height, n_bands + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def _run(pool: ThreadPoolExecutor | None, bands: list[tuple[int, int]], function, *args) -> None:  # type: ignore[no-untyped-def]
    if pool is None:
        for band in bands:
            function(*args, band)
        return
    for future in [pool.submit(function, *args, band) for band in bands]:
        future.result()


def _composite(
    colour: np.ndarray,
    radius: np.ndarray,
    pool: ThreadPoolExecutor | None,
    bands: list[tuple[int, int]],
    blades: int,
    rotation_deg: float,
    additive: bool,
    coarse_from: int,
) -> tuple[np.ndarray, np.ndarray]:
    layer_of = np.rint(radius).astype(np.int64)
    height, width = layer_of.shape
    low, high = int(layer_of.min()), int(layer_of.max())
    boxes = _layer_boxes(layer_of, low, high - low + 1)
    occ = _occupancy(layer_of, low, high - low + 1, TILE)
    out = np.zeros((height, width, 3), dtype=np.float32)
    # front-to-back: transmittance; additive: accumulated coverage.
    trans = np.zeros((height, width), np.float32) if additive else np.ones((height, width), np.float32)

    def band_job(band: tuple[int, int]) -> None:
        _render_band(
            colour, layer_of, boxes, occ, low, high, band, out, trans, blades, rotation_deg, additive, coarse_from
        )

    _run(pool, bands, band_job)
    return out, trans


def render_layers(
    colour: np.ndarray,
    radius: np.ndarray,
    *,
    blades: int = 0,
    rotation_deg: float = 0.0,
    additive: bool = False,
    coarse_from: int = COARSE_FROM,
    threads: int | None = None,
) -> np.ndarray:
    """Composite the defocus layers of ``colour`` (float32 (H, W, 3), any colour space) for signed ``radius``.

    The image is cut into horizontal bands that are rendered independently (each reads a halo of source rows),
    in parallel threads; the compiled kernels release the GIL.

    Args:
        colour: float32 (H, W, 3) values to scatter (linear light for ``lens``).
        radius: float32 (H, W) signed defocus radius in pixels (positive = in front of the focal plane).
        blades: 0 for a disc, else the number of polygon sides.
        rotation_deg: polygon rotation.
        additive: sum the layers (no occlusion) instead of compositing them front to back.
        coarse_from: layers with radius at least this many pixels are computed on a coarser grid.
        threads: worker threads (default :func:`default_threads`).

    Returns:
        float32 (H, W, 3): the composite, normalised by its coverage (not clipped).
    """
    colour = np.ascontiguousarray(colour, dtype=np.float32)
    threads = default_threads() if threads is None else max(1, int(threads))
    bands = _bands(*colour.shape[:2], threads)
    if len(bands) == 1:
        out, trans = _composite(colour, radius, None, bands, blades, rotation_deg, additive, coarse_from)
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            out, trans = _composite(colour, radius, pool, bands, blades, rotation_deg, additive, coarse_from)
    coverage = trans if additive else 1.0 - trans
    return out / np.maximum(coverage, 1e-12)[..., None]


def render_image(
    image: np.ndarray,
    radius: np.ndarray,
    *,
    blades: int = 0,
    rotation_deg: float = 0.0,
    additive: bool = False,
    linear_light: bool = True,
    highlight_boost: float = 0.0,
    coarse_from: int = COARSE_FROM,
    threads: int | None = None,
) -> np.ndarray:
    """sRGB photo in, sRGB bokeh out: decode (+ highlight boost), :func:`render_layers`, encode, all compiled.

    Args:
        image: float32 (H, W, 3) sRGB in [0, 1].
        radius: float32 (H, W) signed defocus radius in pixels.
        blades: 0 for a disc, else the number of polygon sides.
        rotation_deg: polygon rotation.
        additive: sum the layers instead of compositing them (the naive ``disk`` blur).
        linear_light: scatter in linear light (sRGB decode/encode) rather than on the sRGB values.
        highlight_boost: brighten small defocused highlights by up to ``1 + boost`` (see
            :func:`bokeh_model.methods._optics.highlight_gain`; large bright areas are left alone).
        coarse_from: see :func:`render_layers`.
        threads: worker threads (default :func:`default_threads`).

    Returns:
        float32 (H, W, 3) sRGB in [0, 1].
    """
    image = np.ascontiguousarray(image, dtype=np.float32)
    radius = np.ascontiguousarray(radius, dtype=np.float32)
    height, width = radius.shape
    threads = default_threads() if threads is None else max(1, int(threads))
    bands = _bands(height, width, threads)
    pool = ThreadPoolExecutor(max_workers=threads) if len(bands) > 1 else None
    try:
        colour = np.empty_like(image)
        gain, linear = highlight_gain(image, radius, float(highlight_boost)), bool(linear_light)
        _run(pool, bands, lambda band: _decode_rows(image, gain, _DECODE_LUT, linear, colour, *band))
        out, trans = _composite(colour, radius, pool, bands, blades, rotation_deg, additive, coarse_from)
        result = np.empty_like(image)
        _run(pool, bands, lambda band: _finish_rows(out, trans, additive, _ENCODE_LUT, linear, result, *band))
    finally:
        if pool is not None:
            pool.shutdown()
    return result


def warm_up() -> None:
    """Compile (or load from Numba's on-disk cache) every kernel with a tiny render; call once at app start."""
    rng = np.random.default_rng(0)
    image = rng.random((24, 24, 3), dtype=np.float32)
    radius = np.linspace(-14, 3, 24 * 24, dtype=np.float32).reshape(24, 24)
    for additive in (False, True):
        render_image(image, radius, additive=additive, highlight_boost=1.0, threads=1)
