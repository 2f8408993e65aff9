"""Quality control of crowd ratings (pure functions over a ratings DataFrame).

Rules (numbers from ``user_study.md`` §1.4, configurable through ``StudyConfig.qc``):

- ``hidden_ref``: a hidden reference (target against itself) must score <= ``hidden_ref_max`` (1);
- ``gold``: a gold item must be within ``gold_tolerance`` (1) of its expected score;
- ``trap``: a trap item must be answered exactly as instructed;
- ``straight_lining``: the variance of a session's test scores must be >= ``min_session_variance`` (0.1, P.808);
- ``view_time``: a session's median viewing time must be >= ``min_median_view_ms`` (0 = off);
- ``rater_corr``: a rater's Pearson r with the leave-one-rater-out item MOS must be >= ``min_rater_corr`` (0.7,
  P.808 ``rater_min_irr``), on items with >= ``min_other_votes_for_corr`` other votes, when the rater has
  >= ``min_items_for_corr`` such items; raters are dropped one at a time (worst first) and r recomputed;
- ``bt500``: optional ITU-R BT.500 beta2 observer screening (0.05 / 0.3), off by default;
- ``manual``: ratings an organizer excluded by hand (with their reason).

A failed session check excludes the whole session; a failed rater check excludes all of the rater's ratings.
Every check made is one row of the decisions table, failed or not, so organizers see what was excluded and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["DECISION_COLUMNS", "TEST_KINDS", "apply_qc", "bt500_screening", "qc_decisions", "rater_correlations"]

DECISION_COLUMNS = ["level", "target_id", "rule", "value", "threshold", "excluded", "detail"]
TEST_KINDS = ("test", "pair")


def _row(
    level: str, target: Any, rule: str, value: float | None, threshold: float | None, excluded: bool, detail: str = ""
) -> dict[str, Any]:
    return {
        "level": level,
        "target_id": str(target),
        "rule": rule,
        "value": value,
        "threshold": threshold,
        "excluded": bool(excluded),
        "detail": detail,
    }


def rater_correlations(ratings: pd.DataFrame, min_other_votes: int = 2) -> pd.DataFrame:
    """Pearson r of each rater's scores with the leave-one-rater-out MOS of the same items.

    Args:
        ratings: Columns ``rater_id``, ``item_id``, ``score`` (test items only).
        min_other_votes: Items need at least this many votes from other raters.

    Returns:
        DataFrame with ``rater_id``, ``r``, ``n_items``.
    """
    if ratings.empty:
        return pd.DataFrame(columns=["rater_id", "r", "n_items"])
    g = ratings.groupby("item_id")["score"]
    total, count = g.transform("sum"), g.transform("count")
    others = count - 1
    loo = (total - ratings["score"]) / others.where(others > 0)
    df = ratings.assign(loo=loo, others=others)
    df = df[df["others"] >= min_other_votes]
    out = []
    for rater, part in df.groupby("rater_id"):
        x, y = part["score"].to_numpy(float), part["loo"].to_numpy(float)
        r = float(np.corrcoef(x, y)[0, 1]) if len(x) >= 2 and x.std() > 0 and y.std() > 0 else float("nan")
        out.append({"rater_id": rater, "r": r, "n_items": len(x)})
    return pd.DataFrame(out, columns=["rater_id", "r", "n_items"])


def bt500_screening(ratings: pd.DataFrame) -> pd.DataFrame:
    """ITU-R BT.500 beta2 observer screening (as in Netflix sureal, ``subject_rejection_type='kurtosis'``).

    Per item: mean, std and kurtosis beta2; a vote counts as high (P) / low (Q) beyond +-2 std when
    2 <= beta2 <= 4, else beyond +-sqrt(20) std. A rater is rejected when (P+Q)/votes > 0.05 and
    |P-Q|/(P+Q) < 0.3. If every rater would be rejected, none is.

    Returns:
        DataFrame with ``rater_id``, ``p``, ``q``, ``n``, ``rejected``.
    """
    cols = ["rater_id", "p", "q", "n", "rejected"]
    if ratings.empty:
        return pd.DataFrame(columns=cols)
    g = ratings.groupby("item_id")["score"]
    mean, std = g.transform("mean"), g.transform(lambda s: s.std(ddof=1) if len(s) > 1 else 0.0)
    m2 = g.transform(lambda s: ((s - s.mean()) ** 2).mean())
    m4 = g.transform(lambda s: ((s - s.mean()) ** 4).mean())
    beta2 = (m4 / (m2**2)).where(m2 > 0)
    k = np.where((beta2 >= 2) & (beta2 <= 4), 2.0, np.sqrt(20.0))
    hi = (ratings["score"] >= mean + k * std) & (std > 0)
    lo = (ratings["score"] <= mean - k * std) & (std > 0)
    df = ratings.assign(P=hi.astype(int), Q=lo.astype(int))
    agg = df.groupby("rater_id").agg(p=("P", "sum"), q=("Q", "sum"), n=("score", "size")).reset_index()
    pq = agg["p"] + agg["q"]
    agg["rejected"] = (pq / agg["n"] > 0.05) & ((agg["p"] - agg["q"]).abs() / pq.where(pq > 0) < 0.3)
    if agg["rejected"].all():
        agg["rejected"] = False
    return agg[cols]


def _rater_corr_rows(tests: pd.DataFrame, min_r: float, min_items: int, min_other: int) -> list[dict[str, Any]]:
    """Drop the worst rater below ``min_r`` and recompute until none is below, so that one bad rater does not
    drag good raters' correlations down through the leave-one-out MOS."""
    rows: list[dict[str, Any]] = []
    remaining = tests
    while True:
        corr = rater_correlations(remaining, min_other)
        corr = corr[(corr["n_items"] >= min_items) & corr["r"].notna()]
        bad = corr[corr["r"] < min_r]
        if bad.empty or len(corr) <= 2:
            break
        worst = bad.loc[bad["r"].idxmin()]
        rows.append(
            _row("rater", worst.rater_id, "rater_corr", float(worst.r), min_r, True, f"n_items={worst.n_items}")
        )
        remaining = remaining[remaining["rater_id"] != worst.rater_id]
    for c in corr.itertuples():
        rows.append(_row("rater", c.rater_id, "rater_corr", c.r, min_r, c.r < min_r, f"n_items={c.n_items}"))
    return rows


def qc_decisions(ratings: pd.DataFrame, qc: Mapping[str, Any]) -> pd.DataFrame:
    """Run every configured check; one row per decision (see module docstring).

    Args:
        ratings: Output of :meth:`StudyService.ratings_frame` (columns ``rating_id``, ``rater_id``,
            ``session_id``, ``kind``, ``score``, ``expected_score``, ``tolerance``, ``view_ms``, ``excluded``,
            ``exclusion_reason``, ``item_id``).
        qc: Thresholds (``StudyConfig.qc``).

    Returns:
        DataFrame with :data:`DECISION_COLUMNS`.
    """
    rows: list[dict[str, Any]] = []
    if ratings.empty:
        return pd.DataFrame(rows, columns=DECISION_COLUMNS)
    hid_max = float(qc.get("hidden_ref_max", 1))
    gold_tol = float(qc.get("gold_tolerance", 1))
    for r in ratings[ratings["excluded"].astype(bool)].itertuples():
        rows.append(_row("rating", r.rating_id, "manual", None, None, True, str(r.exclusion_reason)))
    bad_sessions: set[str] = set()
    in_session = ratings[ratings["session_id"].notna()]
    for sid, part in in_session.groupby("session_id"):
        for r in part.itertuples():
            if r.kind == "hidden_ref":
                rows.append(_row("session", sid, "hidden_ref", r.score, hid_max, r.score > hid_max, r.item_id))
            elif r.kind == "gold":
                dev = abs(r.score - r.expected_score)
                tol = gold_tol if pd.isna(r.tolerance) else float(r.tolerance)
                rows.append(_row("session", sid, "gold", dev, tol, dev > tol, r.item_id))
            elif r.kind == "trap" and qc.get("trap_exact", True):
                rows.append(
                    _row("session", sid, "trap", r.score, r.expected_score, r.score != r.expected_score, r.item_id)
                )
        tests = part[part["kind"] == "test"]["score"].astype(float)
        min_var = float(qc.get("min_session_variance", 0.1))
        if min_var > 0 and len(tests) >= 3:
            var = float(tests.var(ddof=0))
            rows.append(_row("session", sid, "straight_lining", var, min_var, var < min_var))
        min_view = float(qc.get("min_median_view_ms", 0) or 0)
        if min_view > 0 and part["view_ms"].notna().any():
            med = float(part["view_ms"].median())
            rows.append(_row("session", sid, "view_time", med, min_view, med < min_view))
    bad_sessions = {r["target_id"] for r in rows if r["level"] == "session" and r["excluded"]}
    manual = {r["target_id"] for r in rows if r["rule"] == "manual"}
    keep = ratings[
        ratings["kind"].isin(TEST_KINDS)
        & ~ratings["session_id"].astype(str).isin(bad_sessions)
        & ~ratings["rating_id"].isin(manual)
    ]
    if (keep["kind"] == "test").any():
        tests = keep[keep["kind"] == "test"]
        min_r = float(qc.get("min_rater_corr", 0.7))
        min_items = int(qc.get("min_items_for_corr", 3))
        if min_r > -1:
            rows.extend(_rater_corr_rows(tests, min_r, min_items, int(qc.get("min_other_votes_for_corr", 2))))
        if qc.get("bt500", False):
            for b in bt500_screening(tests).itertuples():
                rows.append(
                    _row(
                        "rater",
                        b.rater_id,
                        "bt500",
                        (b.p + b.q) / b.n,
                        0.05,
                        bool(b.rejected),
                        f"P={b.p} Q={b.q} n={b.n}",
                    )
                )
    return pd.DataFrame(rows, columns=DECISION_COLUMNS)


def apply_qc(ratings: pd.DataFrame, decisions: pd.DataFrame) -> pd.DataFrame:
    """Add ``qc_excluded`` (bool) and ``qc_reason`` (``;``-joined rules) to every rating; nothing is dropped."""
    out = ratings.copy()
    reasons: dict[str, list[str]] = {rid: [] for rid in out["rating_id"]}
    failed = decisions[decisions["excluded"].astype(bool)] if len(decisions) else decisions
    by_level = {lvl: failed[failed["level"] == lvl] for lvl in ("rating", "session", "rater")}
    for d in by_level["rating"].itertuples():
        reasons.setdefault(d.target_id, []).append(f"manual:{d.detail}")
    for level, col in (("session", "session_id"), ("rater", "rater_id")):
        part = by_level[level]
        if part.empty:
            continue
        rules = part.groupby("target_id")["rule"].apply(lambda s: sorted(set(s))).to_dict()
        for rid, key in zip(out["rating_id"], out[col].astype(str), strict=True):
            if key in rules:
                reasons[rid].extend(f"{level}:{r}" for r in rules[key])
    out["qc_reason"] = [";".join(reasons.get(r, [])) for r in out["rating_id"]]
    out["qc_excluded"] = out["qc_reason"] != ""
    return out
