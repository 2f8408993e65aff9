"""Your own aperture pairs -> an EBB!-style dataset: ``python -m evaluation.pairs build --pairs DIR --out DIR``.

The collection pipeline of the EBB! paper (Ignatov, Patel, Timofte, CVPRW 2020) as a command: pair the
narrow- and wide-aperture shots of each scene, align them with SIFT keypoints and RANSAC, crop and resize,
add depth, and write a ``datasets`` folder in the Hub layout of :mod:`evaluation.ebb` (columns ``id``,
``original``, ``bokeh``, ``depth``) that ``evaluation/run.py`` and ``python -m bokeh_model train`` read.

>>> # from evaluation.pairs import build_pairs_dataset
>>> # build_pairs_dataset("my_pairs", "data/my_pairs", depth=False, val_fraction=0.2)
"""

from __future__ import annotations

from .align import Alignment, AlignSettings, align_pair, gradient_orientation_score
from .build import assign_scene_splits, build_pairs_dataset
from .discover import PairCandidate, PhotoInfo, find_pairs, raw_support, read_photo, read_photo_info

__all__ = [
    "AlignSettings",
    "Alignment",
    "PairCandidate",
    "PhotoInfo",
    "align_pair",
    "assign_scene_splits",
    "build_pairs_dataset",
    "find_pairs",
    "gradient_orientation_score",
    "raw_support",
    "read_photo",
    "read_photo_info",
]
