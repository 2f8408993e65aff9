"""The built-in synthetic benchmark: procedural RGB-D scenes with exact thin-lens targets. **Not EBB!**

Each scene is a textured far background (a receding ground plane and a wall), a few textured objects at
different disparities, one of them in focus, and small bright lights behind them that become bokeh discs.
The target is :func:`bokeh_model.methods.lens.render_lens_reference` of the scene (the exact, slow
thin-lens renderer), so a method that models a thin lens and is given the true disparity should score
highly here. It exists so that ``python evaluation/run.py`` runs in seconds without the EBB! download;
its numbers say nothing about real DSLR bokeh.

Targets are cached (``$BOKEH_EVAL_CACHE`` or ``~/.cache/bokeh-eval``) keyed by the generator version, the
scene options and the source of the reference renderer, because the reference is slow (about a second per
scene).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bokeh_model.errors import InputError, ModelUnavailableError
from bokeh_model.tables import cache_root

from .samples import EvalSource, Sample

__all__ = [
    "BANNER",
    "GENERATOR_VERSION",
    "SYNTHETIC_MAX_PIXELS",
    "SyntheticSource",
    "make_scene",
    "reference_renderer",
    "synthetic_source",
]

GENERATOR_VERSION = 1
# The thin-lens reference is a direct scatter (about a second per 256x192 scene, linear in pixels): 1024x768 is
# about 16 s a scene, the largest size the benchmark builds.
SYNTHETIC_MAX_PIXELS = 1024 * 768
BANNER = "SYNTHETIC SAMPLE, NOT EBB!  (procedural RGB-D scenes, thin-lens reference targets)"


def reference_renderer() -> Any:
    """``render_lens_reference`` from the ``lens`` method module.

    Raises:
        ModelUnavailableError: the module is missing (the synthetic targets cannot be made).
    """
    try:
        from bokeh_model.methods.lens import render_lens_reference
    except ImportError as exc:
        raise ModelUnavailableError(
            f"the synthetic benchmark needs bokeh_model.methods.lens.render_lens_reference ({exc}); "
            "evaluate a real dataset with --dataset instead"
        ) from None
    return render_lens_reference


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Value noise: random values on a coarse grid, bicubically upsampled, in [0, 1]."""
    coarse = rng.random((cells, max(2, round(cells * width / height))), dtype=np.float64).astype(np.float32)
    image = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0)


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A colourful (H, W, 3) texture: one of stripes, checks or blotches, with fine noise."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    kind = rng.integers(0, 3)
    if kind == 0:
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(5, 14)
        pattern = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    elif kind == 1:
        size = int(rng.integers(6, 16))
        pattern = ((xx // size + yy // size) % 2).astype(np.float32)
    else:
        pattern = _smooth_noise(rng, height, width, int(rng.integers(6, 14)))
    colour_a = rng.uniform(0.05, 0.95, 3).astype(np.float32)
    colour_b = rng.uniform(0.05, 0.95, 3).astype(np.float32)
    image = colour_a + (colour_b - colour_a) * pattern[..., None]
    image += 0.04 * (rng.random((height, width, 3), dtype=np.float32) - 0.5)
    return np.clip(image, 0.0, 1.0)


def make_scene(seed: int, height: int = 192, width: int = 256) -> tuple[np.ndarray, np.ndarray, float]:
    """One procedural RGB-D scene.

    Args:
        seed: scene seed (the same seed gives the same scene on every machine with the same numpy).
        height: image height in pixels.
        width: image width in pixels.

    Returns:
        ``(image, disparity, focus_disparity)``: float32 (H, W, 3) sRGB in [0, 1], float32 (H, W) disparity in
        [0, 1] (near = 1, quantised to 16 bits so that it survives a PNG round trip exactly) and the disparity
        of the object in focus.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    horizon = rng.uniform(0.35, 0.6) * height
    # Far wall above the horizon, ground plane below it coming towards the camera.
    image = _texture(rng, height, width)
    ground = _texture(rng, height, width)
    below = yy > horizon
    image[below] = ground[below]
    disparity = np.where(below, 0.12 + 0.45 * (yy - horizon) / max(1.0, height - horizon), 0.08).astype(np.float32)
    # Bright point lights in the background: they become bokeh discs.
    for _ in range(int(rng.integers(4, 9))):
        cy, cx = rng.uniform(0, horizon), rng.uniform(0, width)
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= rng.uniform(1.0, 2.5) ** 2
        image[mask] = np.clip(rng.uniform(0.85, 1.0, 3), 0, 1)
    # Objects, far to near; the focused one is chosen among them.
    depths = np.sort(rng.uniform(0.35, 0.95, int(rng.integers(2, 5))))
    for depth in depths:
        texture = _texture(rng, height, width)
        cy, cx = rng.uniform(0.3, 0.85) * height, rng.uniform(0.1, 0.9) * width
        ry, rx = rng.uniform(0.12, 0.3) * height, rng.uniform(0.08, 0.22) * width
        if rng.random() < 0.5:
            mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        else:
            mask = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
        image[mask] = texture[mask]
        disparity[mask] = depth
    focus = float(depths[int(rng.integers(0, len(depths)))])
    disparity = np.round(np.clip(disparity, 0.0, 1.0) * 65535.0) / 65535.0
    focus = round(focus * 65535.0) / 65535.0
    image = np.round(image * 255.0) / 255.0  # the input is stored as an 8-bit PNG
    return image.astype(np.float32), disparity.astype(np.float32), focus


def _png(array: np.ndarray, bits: int = 8) -> bytes:
    buffer = io.BytesIO()
    if bits == 16:
        Image.fromarray(np.round(np.clip(array, 0, 1) * 65535.0).astype(np.uint16)).save(buffer, format="PNG")
    else:
        Image.fromarray(np.round(np.clip(array, 0, 1) * 255.0).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


class SyntheticSource(EvalSource):
    """The synthetic benchmark as an :class:`EvalSource` (PNG-encoded inputs, targets and 16-bit depth)."""

    def __init__(self, num_scenes: int, height: int, width: int, strength: float, seed: int, cache: bool) -> None:
        if num_scenes < 1:
            raise InputError(f"the synthetic benchmark needs at least 1 scene, got {num_scenes}")
        if height < 80 or width < 80:
            raise InputError(
                f"synthetic scenes must be at least 80x80 (the pynet profile crops 32 px), got {width}x{height}"
            )
        if height * width > SYNTHETIC_MAX_PIXELS:
            raise InputError(
                f"synthetic scenes of {width}x{height} are above {SYNTHETIC_MAX_PIXELS} pixels (1024x768); the exact "
                "thin-lens targets take about a second per 50,000 pixels. Choose a smaller --synthetic-size."
            )
        options = {
            "version": GENERATOR_VERSION,
            "num_scenes": num_scenes,
            "height": height,
            "width": width,
            "strength": strength,
            "seed": seed,
        }
        super().__init__(
            name="synthetic",
            split=f"{num_scenes}x{width}x{height}",
            synthetic=True,
            description=f"{BANNER}: {num_scenes} scenes at {width}x{height}, lens strength {strength}",
            meta=options,
        )
        self.options = options
        self.cache = cache
        self._rows: list[dict[str, Any]] | None = None

    def _key(self) -> str:
        from bokeh_model.methods.lens import reference_fingerprint

        payload = json.dumps(self.options, sort_keys=True) + reference_fingerprint()
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def _build(self) -> list[dict[str, Any]]:
        render = reference_renderer()
        rows = []
        for index in range(self.options["num_scenes"]):
            image, disparity, focus = make_scene(
                self.options["seed"] + index, self.options["height"], self.options["width"]
            )
            target = render(
                image,
                disparity,
                strength=self.options["strength"],
                focus_disparity=focus,
                max_pixels=SYNTHETIC_MAX_PIXELS,  # the size was checked above; the user asked for it
            )
            rows.append(
                {
                    "id": str(index),
                    "original": _png(image),
                    "bokeh": _png(target),
                    "depth": _png(disparity, bits=16),
                    "focus_disparity": focus,
                }
            )
        return rows

    def rows(self) -> list[dict[str, Any]]:
        """All scenes (built, or read from the cache)."""
        if self._rows is not None:
            return self._rows
        if not self.cache:
            self._rows = self._build()
            return self._rows
        folder = cache_root() / "synthetic" / self._key()
        index_file = folder / "index.json"
        if index_file.is_file():
            index = json.loads(index_file.read_text())
            self._rows = [
                {
                    **entry,
                    **{
                        part: (folder / f"{entry['id']}_{part}.png").read_bytes()
                        for part in ("original", "bokeh", "depth")
                    },
                }
                for entry in index
            ]
            return self._rows
        rows = self._build()
        folder.parent.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=folder.parent))
        try:
            for row in rows:
                for part in ("original", "bokeh", "depth"):
                    (temp / f"{row['id']}_{part}.png").write_bytes(row[part])
            (temp / "index.json").write_text(
                json.dumps([{"id": r["id"], "focus_disparity": r["focus_disparity"]} for r in rows])
            )
            with contextlib.suppress(OSError):  # another process (a shard) finished first: use its copy
                os.replace(temp, folder)
        finally:
            shutil.rmtree(temp, ignore_errors=True)
        self._rows = rows
        return rows

    def ids(self) -> list[str]:
        return [str(i) for i in range(self.options["num_scenes"])]

    def iter_samples(self, shard: int = 0, num_shards: int = 1) -> Iterator[Sample]:
        for index, row in enumerate(self.rows()):
            if index % num_shards == shard:
                yield Sample(
                    id=row["id"],
                    original=row["original"],
                    bokeh=row["bokeh"],
                    depth=row["depth"],
                    where="synthetic benchmark",
                )

    def focus_disparity(self, sample_id: str) -> float:
        """The disparity of the in-focus object of a scene (methods may take it as their focus parameter)."""
        for row in self.rows():
            if row["id"] == sample_id:
                return float(row["focus_disparity"])
        raise InputError(f"no synthetic scene with id {sample_id!r}")


def synthetic_source(
    num_scenes: int = 8,
    height: int = 192,
    width: int = 256,
    strength: float = 8.0,
    seed: int = 0,
    cache: bool = True,
) -> SyntheticSource:
    """The built-in synthetic benchmark (default: 8 scenes at 256x192, lens strength 8 px).

    Returns:
        A :class:`SyntheticSource`; its rows are made (or read from the cache) on first use.
    """
    return SyntheticSource(num_scenes, height, width, strength, seed, cache)
