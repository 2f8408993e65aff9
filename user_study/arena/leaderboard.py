"""The arena leaderboard from stored votes: Bradley-Terry strengths with bootstrap 95 % intervals, votes, win
rates, the pairwise win-rate matrix (and its plotly heatmap), and the same-side flags of clients.

The strengths are the study's Bradley-Terry fit (:func:`user_study.pairwise.bradley_terry`: Hunter's MM with
0.1 pseudo-wins between every pair so an unbeaten method stays finite), on the study's Elo-like scale
(1000 + 400 log10 strength, mean 1000). A tie and a "both bad" count half a win to each side. The intervals
resample votes with replacement (a multinomial draw over the distinct outcomes, the same as resampling rows).
A method with fewer than ``min_votes`` votes gets its strength but no rank (shown as preliminary).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from user_study.pairwise import bradley_terry

__all__ = [
    "LEADERBOARD_COLUMNS",
    "ELO_SCALE",
    "arena_leaderboard",
    "client_flags",
    "heatmap_figure",
    "pair_table",
    "win_matrix",
    "winrate_matrix",
]

ELO_SCALE = 400.0 / np.log(10.0)
LEADERBOARD_COLUMNS = [
    "rank",
    "method",
    "strength",
    "ci_low",
    "ci_high",
    "votes",
    "wins",
    "losses",
    "ties",
    "win_rate",
]
_WIN = {"a": (1.0, 0.0), "b": (0.0, 1.0), "tie": (0.5, 0.5), "bad": (0.5, 0.5)}


def _methods(votes: pd.DataFrame, methods: list[str] | None) -> list[str]:
    seen = set(votes["method_a"]) | set(votes["method_b"]) if len(votes) else set()
    return sorted(seen | set(methods or []))


def win_matrix(votes: pd.DataFrame, methods: list[str]) -> np.ndarray:
    """``W[i, j]``: times ``methods[i]`` beat ``methods[j]`` (ties and "both bad" half each way)."""
    index = {m: i for i, m in enumerate(methods)}
    w = np.zeros((len(methods), len(methods)))
    for a, b, choice in votes[["method_a", "method_b", "choice"]].itertuples(index=False):
        wa, wb = _WIN[choice]
        w[index[a], index[b]] += wa
        w[index[b], index[a]] += wb
    return w


def _cells(votes: pd.DataFrame, methods: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Distinct outcomes ``(i, j, win_i, win_j)`` and their counts (for the multinomial bootstrap)."""
    index = {m: i for i, m in enumerate(methods)}
    grouped = votes.groupby(["method_a", "method_b", "choice"]).size()
    cells = np.array([(index[a], index[b], *_WIN[c]) for a, b, c in grouped.index], float).reshape(-1, 4)
    return cells, grouped.to_numpy()


def arena_leaderboard(
    votes: pd.DataFrame,
    *,
    methods: list[str] | None = None,
    rounds: int = 200,
    min_votes: int = 20,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per method, strongest first: ``rank`` (None below ``min_votes``), ``strength`` with its bootstrap
    95 % interval, ``votes``, ``wins``, ``losses``, ``ties`` and ``win_rate`` ((wins + ties / 2) / votes).

    Args:
        votes: Counted votes with ``method_a``, ``method_b`` and ``choice`` (``a``, ``b``, ``tie``, ``bad``).
        methods: Methods to list even without votes (the available ones).
        rounds: Bootstrap rounds.
        min_votes: Votes a method needs before it gets a rank.
        seed: Seed of the bootstrap (the same votes give the same intervals).
    """
    names = _methods(votes, methods)
    if not names:
        return pd.DataFrame(columns=LEADERBOARD_COLUMNS)
    k = len(names)
    w = win_matrix(votes, names)
    strength = 1000.0 + ELO_SCALE * bradley_terry(w)
    lo = np.full(k, np.nan)
    hi = np.full(k, np.nan)
    if len(votes):
        cells, counts = _cells(votes, names)
        rng = np.random.default_rng(seed)
        boot = np.empty((rounds, k))
        n = int(counts.sum())
        for r in range(rounds):
            draw = rng.multinomial(n, counts / n)
            wb = np.zeros((k, k))
            i, j = cells[:, 0].astype(int), cells[:, 1].astype(int)
            np.add.at(wb, (i, j), draw * cells[:, 2])
            np.add.at(wb, (j, i), draw * cells[:, 3])
            boot[r] = 1000.0 + ELO_SCALE * bradley_terry(wb, tol=1e-8)
        lo, hi = np.percentile(boot, 2.5, axis=0), np.percentile(boot, 97.5, axis=0)
    n_votes = np.zeros(k, int)
    wins = np.zeros(k, int)
    losses = np.zeros(k, int)
    ties = np.zeros(k, int)
    index = {m: i for i, m in enumerate(names)}
    for a, b, choice in votes[["method_a", "method_b", "choice"]].itertuples(index=False) if len(votes) else []:
        ia, ib = index[a], index[b]
        n_votes[ia] += 1
        n_votes[ib] += 1
        if choice == "a":
            wins[ia] += 1
            losses[ib] += 1
        elif choice == "b":
            wins[ib] += 1
            losses[ia] += 1
        else:
            ties[ia] += 1
            ties[ib] += 1
    out = pd.DataFrame(
        {
            "method": names,
            "strength": strength,
            "ci_low": lo,
            "ci_high": hi,
            "votes": n_votes,
            "wins": wins,
            "losses": losses,
            "ties": ties,
            "win_rate": np.where(n_votes > 0, (wins + 0.5 * ties) / np.maximum(n_votes, 1), np.nan),
        }
    )
    out = out.sort_values(["strength", "method"], ascending=[False, True]).reset_index(drop=True)
    ranked = out["votes"] >= min_votes
    out["rank"] = None
    out.loc[ranked, "rank"] = out.loc[ranked, "strength"].rank(method="min", ascending=False).astype(int)
    return out[LEADERBOARD_COLUMNS]


def winrate_matrix(votes: pd.DataFrame, methods: list[str] | None = None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(names, rate, n)``: ``rate[i, j]`` = share of the i-vs-j votes i won (ties half), NaN without votes."""
    names = _methods(votes, methods)
    w = win_matrix(votes, names) if names else np.zeros((0, 0))
    n = w + w.T
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n > 0, w / np.where(n > 0, n, 1), np.nan)
    return names, rate, n


def heatmap_figure(votes: pd.DataFrame, methods: list[str] | None = None) -> Any:
    """Plotly heatmap of the pairwise win rates (row beat column), with the vote counts in the hover text."""
    import plotly.graph_objects as go

    names, rate, n = winrate_matrix(votes, methods)
    text = [
        [("" if np.isnan(rate[i, j]) else f"{rate[i, j]:.0%}") for j in range(len(names))] for i in range(len(names))
    ]
    fig = go.Figure(
        go.Heatmap(
            z=rate,
            x=names,
            y=names,
            zmin=0,
            zmax=1,
            colorscale="RdBu",
            text=text,
            texttemplate="%{text}",
            customdata=n,
            hovertemplate="%{y} beat %{x}: %{z:.0%} of %{customdata:.0f} votes<extra></extra>",
            colorbar={"title": "win rate"},
        )
    )
    fig.update_layout(
        title="Arena: how often the row's method beat the column's (ties half)",
        xaxis_title="opponent",
        yaxis_title="method",
        yaxis={"autorange": "reversed"},
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        height=420,
    )
    return fig


def pair_table(votes: pd.DataFrame) -> pd.DataFrame:
    """Votes per method pair (names sorted): ``first``, ``second``, ``votes``, wins of each, ties, both bad."""
    cols = ["first", "second", "votes", "first_wins", "second_wins", "ties", "both_bad"]
    rows: dict[tuple[str, str], list[int]] = {}
    for a, b, choice in votes[["method_a", "method_b", "choice"]].itertuples(index=False) if len(votes) else []:
        key = tuple(sorted((a, b)))
        row = rows.setdefault(key, [0, 0, 0, 0, 0])
        row[0] += 1
        winner = a if choice == "a" else b if choice == "b" else None
        if winner is not None:
            row[1 if winner == key[0] else 2] += 1
        elif choice == "tie":
            row[3] += 1
        else:
            row[4] += 1
    return pd.DataFrame([[*k, *v] for k, v in sorted(rows.items())], columns=cols)


def client_flags(votes: pd.DataFrame, *, min_votes: int = 10, share: float = 0.9) -> pd.DataFrame:
    """Votes per client and the same-side flag: at least ``min_votes`` A/B votes, ``share`` or more on one side.

    Returns:
        ``client_hash, votes, a, b, tie, bad, same_side_share, flagged``, most votes first.
    """
    cols = ["client_hash", "votes", "a", "b", "tie", "bad", "same_side_share", "flagged"]
    if votes.empty:
        return pd.DataFrame(columns=cols)
    counts = votes.groupby(["client_hash", "choice"]).size().unstack(fill_value=0)
    for c in ("a", "b", "tie", "bad"):
        if c not in counts:
            counts[c] = 0
    out = counts[["a", "b", "tie", "bad"]].reset_index()
    out["votes"] = out[["a", "b", "tie", "bad"]].sum(axis=1)
    sided = out["a"] + out["b"]
    out["same_side_share"] = np.where(sided > 0, np.maximum(out["a"], out["b"]) / np.maximum(sided, 1), np.nan)
    out["flagged"] = (sided >= min_votes) & (out["same_side_share"] >= share)
    return out.sort_values("votes", ascending=False).reset_index(drop=True)[cols]
