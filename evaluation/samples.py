"""What an evaluation source yields: :class:`Sample` (one encoded pair) and the :class:`EvalSource` base.

Shared by the dataset reader (:mod:`evaluation.dataset`) and the synthetic benchmark (:mod:`evaluation.synthetic`),
so that neither imports the other's module for them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bokeh_model.errors import InputError
from bokeh_model.images import load_depth, load_image

__all__ = ["EvalSource", "Sample"]


@dataclass
class Sample:
    """One evaluation pair, still encoded.

    Attributes:
        id: the image id as a string (EBB! ids are integers such as ``"4400"``).
        original: encoded input photo (bytes).
        bokeh: encoded target photo (bytes).
        depth: encoded depth map (bytes), a float array, or ``None``.
        where: human description of where the row came from, for error messages.
    """

    id: str
    original: bytes
    bokeh: bytes
    depth: bytes | np.ndarray | None = None
    where: str = ""

    def decode_original(self) -> np.ndarray:
        """The input photo as float32 (H, W, 3) in [0, 1]; a corrupt file names the sample."""
        return _decode(self.original, f"{self.where} id {self.id} (original)")

    def decode_bokeh(self) -> np.ndarray:
        """The target as float32 (H, W, 3) in [0, 1]; a corrupt file names the sample."""
        return _decode(self.bokeh, f"{self.where} id {self.id} (bokeh)")

    def decode_depth(self) -> np.ndarray | None:
        """The disparity map as float32 (H, W) in [0, 1], or ``None`` when the row has none."""
        if self.depth is None:
            return None
        try:
            return load_depth(self.depth)
        except InputError as exc:
            raise InputError(f"{self.where} id {self.id} (depth): {exc}") from None

    @property
    def bokeh_sha256(self) -> str:
        return hashlib.sha256(self.bokeh).hexdigest()

    @property
    def original_sha256(self) -> str:
        return hashlib.sha256(self.original).hexdigest()

    @property
    def depth_sha256(self) -> str | None:
        """SHA-256 of the row's depth map (encoded bytes or array), ``None`` when it has none."""
        if self.depth is None:
            return None
        data = self.depth if isinstance(self.depth, bytes) else np.ascontiguousarray(self.depth).tobytes()
        return hashlib.sha256(data).hexdigest()


def _decode(data: bytes, where: str) -> np.ndarray:
    try:
        return load_image(data)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None


@dataclass
class EvalSource:
    """Base of the data a run scores: a name, a split and an iterator over :class:`Sample` rows."""

    name: str
    split: str
    synthetic: bool = False
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def ids(self) -> list[str] | None:
        """All ids up front when cheap (``None`` for streaming sources)."""
        return None

    def depth_coverage(self) -> tuple[int | None, int | None]:
        """``(rows with a depth map, rows)``; ``None`` where unknown without reading every row (streaming)."""
        ids = self.ids()
        return (len(ids), len(ids)) if ids is not None else (None, None)

    def iter_samples(self, shard: int = 0, num_shards: int = 1) -> Iterator[Sample]:
        raise NotImplementedError
