"""Pairwise preference analysis (paper §4.5: "which image looks more like a real camera photo?").

Stored choice per pair item: 0 = method A preferred, 1 = method B preferred, 2 = no preference (tie).

- Two methods: share of wins with a Wilson 95 % CI and an exact two-sided binomial test (ties excluded).
- More methods: Bradley-Terry strengths by Hunter's MM algorithm (ties count half a win each way), reported on
  an Elo-like scale (base 10, 400 points, mean 1000) with rater-bootstrap CIs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["bradley_terry", "pairwise_summary", "pairwise_table", "wilson_ci"]


def wilson_ci(wins: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for a proportion ``wins / n`` (``(nan, nan)`` when ``n == 0``)."""
    if n < 0 or wins < 0 or wins > n:
        raise ValueError(f"need 0 <= wins <= n, got wins={wins}, n={n}")
    if n == 0:
        return float("nan"), float("nan")
    p = wins / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return float(centre - half), float(centre + half)


def pairwise_table(ratings: pd.DataFrame) -> pd.DataFrame:
    """Per method pair: wins, ties, preference share of A (ties excluded), Wilson CI, binomial p.

    Args:
        ratings: Used pair ratings with ``method`` (A), ``method_b`` (B) and ``score`` (0/1/2).
    """
    cols = ["method_a", "method_b", "n", "wins_a", "wins_b", "ties", "share_a", "ci_low", "ci_high", "p_binom"]
    rows = []
    if ratings.empty:
        return pd.DataFrame(columns=cols)
    for (a, b), part in ratings.groupby(["method", "method_b"]):
        wa, wb, ties = int((part["score"] == 0).sum()), int((part["score"] == 1).sum()), int((part["score"] == 2).sum())
        n = wa + wb
        lo, hi = wilson_ci(wa, n)
        p = float(stats.binomtest(wa, n, 0.5).pvalue) if n else float("nan")
        rows.append(
            {
                "method_a": a,
                "method_b": b,
                "n": n,
                "wins_a": wa,
                "wins_b": wb,
                "ties": ties,
                "share_a": wa / n if n else float("nan"),
                "ci_low": lo,
                "ci_high": hi,
                "p_binom": p,
            }
        )
    return pd.DataFrame(rows, columns=cols)


def bradley_terry(wins: np.ndarray, *, iters: int = 1000, tol: float = 1e-10, prior: float = 0.1) -> np.ndarray:
    """Bradley-Terry log-strengths from a win matrix by Hunter's MM algorithm.

    Args:
        wins: ``wins[i, j]`` = times i beat j (ties as 0.5 each way).
        iters: Maximum iterations.
        tol: Stop when strengths change less than this.
        prior: Pseudo-wins added both ways between every pair (keeps undefeated methods finite).

    Returns:
        Natural-log strengths centred at 0.
    """
    w = np.asarray(wins, float)
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"wins must be a square matrix, got shape {w.shape}")
    k = w.shape[0]
    w = w + prior * (1 - np.eye(k))
    n = w + w.T
    p = np.ones(k)
    total = w.sum(1)
    for _ in range(iters):
        denom = (n / (p[:, None] + p[None, :])).sum(1)
        new = total / denom
        new /= np.exp(np.log(new).mean())
        if np.max(np.abs(new - p)) < tol:
            p = new
            break
        p = new
    return np.log(p) - np.log(p).mean()


def _win_matrix(ratings: pd.DataFrame, methods: list[str]) -> np.ndarray:
    index = {m: i for i, m in enumerate(methods)}
    w = np.zeros((len(methods), len(methods)))
    for a, b, s in ratings[["method", "method_b", "score"]].itertuples(index=False):
        i, j = index[a], index[b]
        if s == 0:
            w[i, j] += 1
        elif s == 1:
            w[j, i] += 1
        else:
            w[i, j] += 0.5
            w[j, i] += 0.5
    return w


def pairwise_summary(ratings: pd.DataFrame, *, rounds: int = 200, seed: int = 0) -> pd.DataFrame:
    """Bradley-Terry scores (Elo-like scale) with rater-bootstrap 95 % CIs, best first.

    Returns:
        ``method, bt_score, ci_low, ci_high, rank, n_comparisons``.
    """
    cols = ["method", "bt_score", "ci_low", "ci_high", "rank", "n_comparisons"]
    if ratings.empty:
        return pd.DataFrame(columns=cols)
    ratings = ratings.assign(method=ratings["method"].astype(str), method_b=ratings["method_b"].astype(str))
    methods = sorted(set(ratings["method"]) | set(ratings["method_b"]))
    scale = 400.0 / np.log(10.0)
    score = 1000 + scale * bradley_terry(_win_matrix(ratings, methods))
    rng = np.random.default_rng(seed)
    raters = ratings["rater_id"].unique()
    groups = {r: part for r, part in ratings.groupby("rater_id")}
    boot = np.empty((rounds, len(methods)))
    for b in range(rounds):
        pick = rng.choice(raters, len(raters), replace=True)
        sample = pd.concat([groups[r] for r in pick])
        boot[b] = 1000 + scale * bradley_terry(_win_matrix(sample, methods))
    counts = pd.concat([ratings["method"], ratings["method_b"]]).value_counts()
    out = pd.DataFrame(
        {
            "method": methods,
            "bt_score": score,
            "ci_low": np.percentile(boot, 2.5, axis=0),
            "ci_high": np.percentile(boot, 97.5, axis=0),
            "n_comparisons": [int(counts.get(m, 0)) for m in methods],
        }
    )
    out["rank"] = out["bt_score"].rank(method="min", ascending=False).astype(int)
    return out.sort_values("rank").reset_index(drop=True)[cols]
