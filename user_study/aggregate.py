"""MOS, confidence intervals, ranks, reliability and metric-MOS correlation (pure functions over DataFrames).

Direction: on the study's 0-4 scale (0 = almost identical to the DSLR target, 4 = mostly different) **lower MOS
is better**, so rank 1 is the lowest MOS.

- Item MOS: mean, sample std, n, 95 % CI as in P.808 (1.96 s / sqrt(n)) and with the t quantile.
- Method MOS: mean of the used votes; 95 % CI from a cluster bootstrap that resamples raters and scenes.
- ``rank``: ordinal position by MOS (ties share the lowest rank); ``sig_rank``: 1 + the number of methods
  significantly better (their CI upper bound below this method's lower bound; FastChat's "Rank (UB)").
- Paired per-scene Wilcoxon tests between methods with Holm correction.
- Krippendorff's alpha (nominal, ordinal, interval, ratio) on the rater x item matrix with missing cells.
- Spearman and Kendall correlation between each evaluation metric and per-item MOS.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "METRIC_DIRECTION",
    "MOS_COLUMNS",
    "holm",
    "item_mos",
    "krippendorff_alpha",
    "method_mos",
    "metric_correlations",
    "mos_with_subscript",
    "paired_tests",
    "reliability",
]

MOS_COLUMNS = ["method", "mos", "ci_low", "ci_high", "rank", "sig_rank", "n_ratings"]
#: +1: higher metric = better image; -1: lower = better. Used to state the expected sign against MOS.
METRIC_DIRECTION: dict[str, int] = {"psnr": 1, "ssim": 1, "ms_ssim": 1, "lpips": -1, "dists": -1, "mse": -1}
_SUBSCRIPT = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def item_mos(used: pd.DataFrame) -> pd.DataFrame:
    """Per-item MOS.

    Args:
        used: Used test ratings with ``item_id``, ``method``, ``scene``, ``score``.

    Returns:
        ``item_id, method, scene, mos, std, n, ci95, ci95_t`` sorted by method and scene.
    """
    cols = ["item_id", "method", "scene", "mos", "std", "n", "ci95", "ci95_t"]
    if used.empty:
        return pd.DataFrame(columns=cols)
    g = used.groupby(["item_id", "method", "scene"])["score"]
    out = g.agg(mos="mean", std=lambda s: s.std(ddof=1) if len(s) > 1 else np.nan, n="size").reset_index()
    out["ci95"] = 1.96 * out["std"] / np.sqrt(out["n"])
    tq = stats.t.ppf(0.975, np.maximum(out["n"] - 1, 1))
    out["ci95_t"] = np.where(out["n"] > 1, tq * out["std"] / np.sqrt(out["n"]), np.nan)
    return out[cols].sort_values(["method", "scene"], key=lambda s: s.astype(str)).reset_index(drop=True)


def _bootstrap(used: pd.DataFrame, methods: list[str], rounds: int, seed: int) -> np.ndarray:
    """(rounds, n_methods) bootstrap MOS, resampling raters and scenes with replacement."""
    r_codes, r_uni = pd.factorize(used["rater_id"])
    s_codes, s_uni = pd.factorize(used["scene"].astype(str))
    m_codes = pd.Categorical(used["method"], categories=methods).codes
    score = used["score"].to_numpy(float)
    n_r, n_s, n_m = len(r_uni), len(s_uni), len(methods)
    onehot = np.zeros((len(score), n_m))
    onehot[np.arange(len(score)), m_codes] = 1.0
    rng = np.random.default_rng(seed)
    out = np.empty((rounds, n_m))
    chunk = max(1, min(rounds, 2_000_000 // max(1, len(score))))
    for start in range(0, rounds, chunk):
        b = min(chunk, rounds - start)
        cr = np.stack([np.bincount(rng.integers(0, n_r, n_r), minlength=n_r) for _ in range(b)])
        cs = np.stack([np.bincount(rng.integers(0, n_s, n_s), minlength=n_s) for _ in range(b)])
        w = cr[:, r_codes] * cs[:, s_codes]  # (b, n)
        num, den = (w * score) @ onehot, w @ onehot
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start : start + b] = num / den
    return out


def method_mos(used: pd.DataFrame, *, rounds: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per-method MOS with cluster-bootstrap 95 % CI and both ranks.

    Args:
        used: Used test ratings with ``method``, ``scene``, ``rater_id``, ``score``.
        rounds: Bootstrap rounds.
        seed: Bootstrap seed (same data and seed give the same table).

    Returns:
        :data:`MOS_COLUMNS` plus ``std``, ``n_raters``, ``n_scenes``, ``mos_scene_mean``, ``ci95_p808``,
        sorted by MOS (best first).
    """
    extra = ["std", "n_raters", "n_scenes", "mos_scene_mean", "ci95_p808"]
    if used.empty:
        return pd.DataFrame(columns=MOS_COLUMNS + extra)
    methods = sorted(used["method"].astype(str).unique())
    used = used.assign(method=used["method"].astype(str))
    g = used.groupby("method")
    out = pd.DataFrame(
        {
            "method": methods,
            "mos": g["score"].mean().reindex(methods).to_numpy(),
            "std": g["score"].std(ddof=1).reindex(methods).to_numpy(),
            "n_ratings": g.size().reindex(methods).to_numpy(),
            "n_raters": g["rater_id"].nunique().reindex(methods).to_numpy(),
            "n_scenes": g["scene"].nunique().reindex(methods).to_numpy(),
        }
    )
    per_scene = used.groupby(["method", "scene"])["score"].mean().groupby("method").mean()
    out["mos_scene_mean"] = per_scene.reindex(methods).to_numpy()
    out["ci95_p808"] = 1.96 * out["std"] / np.sqrt(out["n_ratings"])
    boot = _bootstrap(used, methods, rounds, seed)
    out["ci_low"] = np.nanpercentile(boot, 2.5, axis=0)
    out["ci_high"] = np.nanpercentile(boot, 97.5, axis=0)
    out["rank"] = out["mos"].rank(method="min", ascending=True).astype(int)
    out["sig_rank"] = [1 + int((out["ci_high"] < lo).sum()) for lo in out["ci_low"]]
    return out.sort_values(["mos", "method"]).reset_index(drop=True)[MOS_COLUMNS + extra]


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (monotone, capped at 1)."""
    p = np.asarray(pvalues, float)
    order = np.argsort(p)
    m = len(p)
    adj = np.empty(m)
    running = 0.0
    for i, idx in enumerate(order):
        running = max(running, (m - i) * p[idx])
        adj[idx] = min(1.0, running)
    return adj


def paired_tests(used: pd.DataFrame) -> pd.DataFrame:
    """Wilcoxon signed-rank test on per-scene MOS for every pair of methods, Holm-corrected.

    Returns:
        ``method_a, method_b, n_scenes, mean_diff (a - b), p, p_holm, better`` (``better`` names the method with
        the lower MOS when ``p_holm < 0.05``, else empty).
    """
    cols = ["method_a", "method_b", "n_scenes", "mean_diff", "p", "p_holm", "better"]
    if used.empty:
        return pd.DataFrame(columns=cols)
    table = used.assign(method=used["method"].astype(str)).pivot_table(
        index="scene", columns="method", values="score", aggfunc="mean"
    )
    rows = []
    for a, b in itertools.combinations(sorted(table.columns), 2):
        pair = table[[a, b]].dropna()
        d = (pair[a] - pair[b]).to_numpy()
        if len(d) < 2 or np.allclose(d, 0):
            p = 1.0
        else:
            p = float(stats.wilcoxon(d, zero_method="zsplit").pvalue)
        rows.append(
            {
                "method_a": a,
                "method_b": b,
                "n_scenes": len(d),
                "mean_diff": float(d.mean()) if len(d) else np.nan,
                "p": p,
            }
        )
    out = pd.DataFrame(rows, columns=cols[:-2])
    out["p_holm"] = holm(out["p"].to_numpy()) if len(out) else []
    out["better"] = [
        (r.method_a if r.mean_diff < 0 else r.method_b) if r.p_holm < 0.05 else "" for r in out.itertuples()
    ]
    return out[cols]


def _delta(values: np.ndarray, counts: np.ndarray, level: str) -> np.ndarray:
    c, k = values[:, None], values[None, :]
    if level == "nominal":
        return (c != k).astype(float)
    if level == "interval":
        return (c - k) ** 2
    if level == "ratio":
        with np.errstate(invalid="ignore", divide="ignore"):
            d = ((c - k) / (c + k)) ** 2
        return np.nan_to_num(d)
    if level == "ordinal":
        cum = np.concatenate([[0.0], np.cumsum(counts)])
        i, j = np.meshgrid(np.arange(len(values)), np.arange(len(values)), indexing="ij")
        lo, hi = np.minimum(i, j), np.maximum(i, j)
        between = cum[hi + 1] - cum[lo]
        return (between - (counts[i] + counts[j]) / 2.0) ** 2
    raise ValueError(f"level={level!r} is not allowed; use nominal, ordinal, interval or ratio")


def krippendorff_alpha(data: np.ndarray, level: str = "interval") -> float:
    """Krippendorff's alpha for a raters x units matrix with ``NaN`` for missing cells.

    Units with fewer than two values are not pairable and are ignored. Returns ``nan`` when nothing is
    pairable or all values are equal.

    Args:
        data: Array of shape (n_raters, n_units).
        level: ``nominal``, ``ordinal``, ``interval`` or ``ratio``.
    """
    data = np.asarray(data, float)
    if data.ndim != 2:
        raise ValueError(f"reliability data must be 2-D (raters x units), got shape {data.shape}")
    finite = data[~np.isnan(data)]
    values = np.unique(finite)
    if len(values) < 2:
        _delta(values, np.zeros(len(values)), level)  # still validates ``level``
        return float("nan")
    idx = np.searchsorted(values, data)
    counts_uv = np.zeros((data.shape[1], len(values)))
    for u in range(data.shape[1]):
        col = ~np.isnan(data[:, u])
        counts_uv[u] = np.bincount(idx[col, u], minlength=len(values))
    m_u = counts_uv.sum(1)
    keep = m_u >= 2
    if not keep.any():
        return float("nan")
    cu, mu = counts_uv[keep], m_u[keep]
    o = np.einsum("uc,uk->ck", cu / (mu - 1)[:, None], cu) - np.diag((cu / (mu - 1)[:, None]).sum(0))
    n_c = o.sum(1)
    n = n_c.sum()
    delta = _delta(values, n_c, level)
    d_o = (o * delta).sum() / n
    d_e = (np.outer(n_c, n_c) * delta).sum() / (n * (n - 1))
    return float("nan") if d_e == 0 else float(1.0 - d_o / d_e)


def reliability(used: pd.DataFrame) -> dict[str, float]:
    """Krippendorff's alpha (interval and ordinal) over raters x items, plus counts."""
    if used.empty:
        return {"alpha_interval": float("nan"), "alpha_ordinal": float("nan"), "n_raters": 0, "n_items": 0}
    mat = used.pivot_table(index="rater_id", columns="item_id", values="score", aggfunc="mean").to_numpy(float)
    return {
        "alpha_interval": krippendorff_alpha(mat, "interval"),
        "alpha_ordinal": krippendorff_alpha(mat, "ordinal"),
        "n_raters": int(mat.shape[0]),
        "n_items": int(mat.shape[1]),
    }


def metric_correlations(
    items: pd.DataFrame, per_image: pd.DataFrame, directions: Mapping[str, int] | None = None
) -> pd.DataFrame:
    """Spearman and Kendall correlation between each metric and MOS, per item and per method.

    Args:
        items: Output of :func:`item_mos` (``method``, ``scene``, ``mos``).
        per_image: The evaluation's ``per_image.csv`` (``method``, ``id`` and numeric metric columns).
        directions: +1 / -1 per metric (default :data:`METRIC_DIRECTION`); the expected sign against MOS
            (lower = better) is ``-direction``.

    Returns:
        ``metric, level, n, spearman, spearman_p, kendall, kendall_p, expected_sign, agrees``.
    """
    cols = ["metric", "level", "n", "spearman", "spearman_p", "kendall", "kendall_p", "expected_sign", "agrees"]
    directions = dict(METRIC_DIRECTION if directions is None else directions)
    if items.empty or per_image.empty or not {"method", "id"} <= set(per_image.columns):
        return pd.DataFrame(columns=cols)
    pi = per_image.assign(method=per_image["method"].astype(str), scene=per_image["id"].astype(str))
    metrics = [c for c in pi.columns if c not in ("method", "id", "scene") and pd.api.types.is_numeric_dtype(pi[c])]
    merged = items.assign(method=items["method"].astype(str), scene=items["scene"].astype(str)).merge(
        pi, on=["method", "scene"], how="inner"
    )
    rows = []
    for metric in metrics:
        for level in ("item", "method"):
            part = merged[["method", "mos", metric]].dropna()
            if level == "method":
                part = part.groupby("method")[["mos", metric]].mean().reset_index()
            n = len(part)
            if n < 3 or part[metric].nunique() < 2 or part["mos"].nunique() < 2:
                rho = rp = tau = tp = float("nan")
            else:
                rho, rp = stats.spearmanr(part[metric], part["mos"])
                tau, tp = stats.kendalltau(part[metric], part["mos"])
            exp = -directions[metric.lower()] if metric.lower() in directions else 0
            agrees = bool(np.sign(rho) == exp) if exp and not np.isnan(rho) else None
            rows.append(
                {
                    "metric": metric,
                    "level": level,
                    "n": n,
                    "spearman": float(rho),
                    "spearman_p": float(rp),
                    "kendall": float(tau),
                    "kendall_p": float(tp),
                    "expected_sign": exp,
                    "agrees": agrees,
                }
            )
    return pd.DataFrame(rows, columns=cols)


def mos_with_subscript(mos: float, rank: int, *, digits: int = 2, latex: bool = False) -> str:
    """Table 1 style cell: ``0.87₁`` (or ``$0.87_{1}$`` with ``latex``)."""
    if latex:
        return f"${mos:.{digits}f}_{{{int(rank)}}}$"
    return f"{mos:.{digits}f}{str(int(rank)).translate(_SUBSCRIPT)}"
