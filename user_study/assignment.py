"""Planning a rating session: which items, in which order, with which side for the target.

Pure functions (no database): the service passes in how often each item has been served (ratings plus open
leases) and which items the rater has already seen.

Rules: least-served items first with a random tie-break (served = ratings plus open leases), no item twice
for a rater, items whose *ratings* reached the vote target are no longer served (items only *leased* up to
the target are still served, least-served first, so that open or abandoned sessions never turn a rater
away), methods balanced within a session (round robin over methods, at most one method per scene with
``pairing="spread"``, or whole scenes with ``pairing="balanced_block"``), control items (hidden
reference, gold, trap) spread over the session, and the target's side randomised per slot.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Candidate", "PlannedSlot", "plan_session", "spread_positions"]


@dataclass(frozen=True)
class Candidate:
    """An item that could be served.

    Attributes:
        item_id: Item id.
        kind: ``test``, ``pair``, ``hidden_ref``, ``gold`` or ``trap``.
        scene: Scene key (any hashable label).
        method: Method key (``None`` for control items; for pairs, the pair's label).
        served: Ratings plus open leases of this item.
        rated: Ratings of this item (``None``: same as ``served``).
    """

    item_id: str
    kind: str
    scene: object
    method: object
    served: int
    rated: int | None = None


@dataclass(frozen=True)
class PlannedSlot:
    """One slot of a planned session: item and whether the target (or method B) is on the left."""

    item_id: str
    swap: bool


def spread_positions(n_total: int, n_spread: int, rng: random.Random) -> list[int]:
    """Pick ``n_spread`` distinct positions in ``range(n_total)``, one inside each of ``n_spread`` equal slices."""
    if n_spread > n_total:
        raise ValueError(f"cannot spread {n_spread} items over {n_total} positions")
    out: list[int] = []
    for j in range(n_spread):
        lo = (j * n_total) // n_spread
        hi = max(lo + 1, ((j + 1) * n_total) // n_spread)
        out.append(rng.randrange(lo, hi))
    return out


def _pick_tests(tests: Sequence[Candidate], n: int, pairing: str, rng: random.Random) -> list[Candidate]:
    # random tie-break key per candidate, fixed for this call
    key = {c.item_id: (c.served, rng.random()) for c in tests}
    if pairing == "balanced_block":
        by_scene: dict[object, list[Candidate]] = defaultdict(list)
        for c in tests:
            by_scene[c.scene].append(c)
        order = sorted(by_scene, key=lambda s: (sum(c.served for c in by_scene[s]) / len(by_scene[s]), rng.random()))
        picked: list[Candidate] = []
        for scene in order:
            if len(picked) >= n:
                break
            picked.extend(sorted(by_scene[scene], key=lambda c: key[c.item_id])[: n - len(picked)])
        return picked
    by_method: dict[object, list[Candidate]] = defaultdict(list)
    for c in tests:
        by_method[c.method].append(c)
    for m in by_method:
        by_method[m].sort(key=lambda c: key[c.item_id])
    picked = []
    used_scenes: set[object] = set()
    counts = dict.fromkeys(by_method, 0)
    method_tb = {m: rng.random() for m in by_method}
    for strict in (True, False):  # second pass relaxes "one method per scene" when scenes run out
        active = {m for m in by_method if by_method[m]}
        while len(picked) < n and active:
            m = min(active, key=lambda m: (counts[m], key[by_method[m][0].item_id][0], method_tb[m]))
            choice = next((c for c in by_method[m] if not (strict and c.scene in used_scenes)), None)
            if choice is None:
                active.discard(m)
                continue
            by_method[m].remove(choice)
            if not by_method[m]:
                active.discard(m)
            picked.append(choice)
            used_scenes.add(choice.scene)
            counts[m] += 1
    return picked


def plan_session(
    candidates: Sequence[Candidate],
    *,
    seen: set[str],
    n_test: int,
    n_controls: Mapping[str, int],
    target_votes: int,
    pairing: str = "spread",
    rng: random.Random,
) -> list[PlannedSlot]:
    """Plan one session.

    Args:
        candidates: Every item of the study with its served count.
        seen: Item ids the rater has rated or been assigned before (never served again).
        n_test: Test (or pair) items wanted.
        n_controls: Control items wanted per kind, e.g. ``{"hidden_ref": 1, "gold": 1, "trap": 1}``.
        target_votes: Test items rated this often are skipped (controls have no cap). Items whose ratings plus
            leases reach it are still served, after all others.
        pairing: ``"spread"`` or ``"balanced_block"``.
        rng: Random generator (seeded per session, so a plan can be reproduced).

    Returns:
        Ordered slots; empty when no test item is left for this rater.
    """
    if pairing not in ("spread", "balanced_block"):
        raise ValueError(f"pairing={pairing!r} is not allowed; use 'spread' or 'balanced_block'")
    fresh = [c for c in candidates if c.item_id not in seen]
    tests = [
        c for c in fresh if c.kind in ("test", "pair") and (c.served if c.rated is None else c.rated) < target_votes
    ]
    picked = _pick_tests(tests, n_test, pairing, rng)
    if not picked:
        return []
    rng.shuffle(picked)
    controls: list[Candidate] = []
    used_scenes = {c.scene for c in picked}
    for kind, count in n_controls.items():
        pool = sorted(
            (c for c in fresh if c.kind == kind), key=lambda c: (c.served, c.scene in used_scenes, rng.random())
        )
        controls.extend(pool[: max(0, int(count))])
    rng.shuffle(controls)
    total = len(picked) + len(controls)
    positions = set(spread_positions(total, len(controls), rng)) if controls else set()
    order: list[Candidate] = []
    tests_iter, ctrl_iter = iter(picked), iter(controls)
    for pos in range(total):
        order.append(next(ctrl_iter) if pos in positions else next(tests_iter))
    return [PlannedSlot(c.item_id, rng.random() < 0.5) for c in order]
