"""Which two methods a new battle shows: the least-voted pair among the methods available now, sides at random.

Methods join by name: whatever the registry lists as available (``bokeh_model.registry``) takes part, so a
method registered later (or whose weights arrive later) is drawn as soon as it is available, and its pairs,
having no votes, are drawn first until they catch up.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
from collections.abc import Iterable, Mapping

__all__ = ["available_methods", "draw_pair"]

_LOCK = threading.Lock()


def available_methods(names: Iterable[str] | None = None) -> list[str]:
    """Registered methods whose ``availability()`` is true (all of ``list_methods()`` when ``names`` is None)."""
    from bokeh_model.registry import create_method, list_methods

    out = []
    with _LOCK:  # the registry loads its built-in methods on first use; one thread at a time does that
        listed = list_methods() if names is None else list(names)
    for name in listed:
        try:
            ok, _ = create_method(name).availability()
        except Exception:  # noqa: BLE001 - a method that cannot even be built is not available; the log says why
            logging.getLogger(__name__).exception("arena: method %s cannot be built", name)
            ok = False
        if ok:
            out.append(name)
    return sorted(out)


def draw_pair(
    methods: Iterable[str], pair_counts: Mapping[tuple[str, str], float], rng: random.Random | None = None
) -> tuple[str, str, bool]:
    """``(method_a, method_b, swapped)``: a pair with the fewest votes so far, randomly on sides A and B.

    Args:
        methods: Available method names (at least two).
        pair_counts: Votes (and pending battles) per pair, keyed by the sorted name pair.
        rng: Random source (tests pass a seeded one).

    Raises:
        ValueError: With fewer than two methods (naming those that are available).
    """
    rng = rng or random.SystemRandom()
    names = sorted(set(methods))
    if len(names) < 2:
        raise ValueError(f"the arena needs two available methods; available here: {names or 'none'}")
    pairs = list(itertools.combinations(names, 2))
    fewest = min(pair_counts.get(p, 0) for p in pairs)
    first, second = rng.choice([p for p in pairs if pair_counts.get(p, 0) == fewest])
    swapped = rng.random() < 0.5
    return (second, first, True) if swapped else (first, second, False)
