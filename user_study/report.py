"""I/O edge of the analysis: read ratings from the database, run QC and aggregation, write files.

``write_aggregate(service, study_id, out_dir)`` writes (atomically, temp file + ``os.replace``):

- ``mos.csv`` (columns exactly ``method, mos, ci_low, ci_high, rank, sig_rank, n_ratings``; MOS mode) and
  ``mos_details.csv`` (plus std, n_raters, n_scenes, per-scene MOS, P.808 CI, the Table 1 cell ``mos_cell``);
- ``item_mos.csv``, ``paired_tests.csv``, ``reliability.json`` (Krippendorff's alpha), ``metric_mos_correlation.csv``
  (when ``per_image.csv`` is found next to the output or in the study's source run), ``qc_decisions.csv``,
  ``mos_chart.html`` (plotly), ``study_summary.json``;
- pairwise mode: ``pairwise.csv`` (wins, Wilson CI, binomial p) and ``bradley_terry.csv``.

Then, if ``evaluation.leaderboard.rebuild_tables`` is importable, it is called with the output folder so the
evaluation's Table 1 leaderboard gets its MOS column.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pandas as pd

from bokeh_model.files import atomic_write, safe_cell, spreadsheet_csv
from evaluation.run_layout import PER_IMAGE, RUN_RECORD
from user_study.aggregate import (
    item_mos,
    method_mos,
    metric_correlations,
    mos_with_subscript,
    paired_tests,
    reliability,
)
from user_study.pairwise import pairwise_summary, pairwise_table
from user_study.qc import TEST_KINDS, apply_qc, qc_decisions
from user_study.service import StudyService
from user_study.storage import QcDecision, new_id

__all__ = [
    "compute_results",
    "export_ratings",
    "mos_figure",
    "qc_tables",
    "safe_cell",  # re-exported from bokeh_model.files
    "write_aggregate",
]

log = logging.getLogger(__name__)


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    # read back by programs (mos.csv -> the leaderboard), so values stay as they are; CRLF line ends make the
    # csv writer quote any value holding a CR or LF, which a spreadsheet would otherwise split into rows
    atomic_write(path, df.to_csv(index=False, lineterminator="\r\n"))


def qc_tables(
    service: StudyService, study_id: str, ratings: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """QC decisions and the ratings with ``qc_excluded`` / ``qc_reason`` columns."""
    cfg = service.study_config(study_id)
    ratings = service.ratings_frame(study_id) if ratings is None else ratings
    decisions = qc_decisions(ratings, cfg.qc)
    return decisions, apply_qc(ratings, decisions)


def compute_results(service: StudyService, study_id: str, *, rounds: int | None = None) -> dict[str, Any]:
    """Run QC and every analysis of a study; returns a dict of DataFrames and numbers (no files written)."""
    cfg = service.study_config(study_id)
    decisions, flagged = qc_tables(service, study_id)
    used = flagged[flagged["kind"].isin(TEST_KINDS) & ~flagged["qc_excluded"]]
    out: dict[str, Any] = {"mode": cfg.mode, "config": cfg, "decisions": decisions, "ratings": flagged, "used": used}
    if cfg.mode == "pairwise":
        out["pairwise"] = pairwise_table(used)
        out["bt"] = pairwise_summary(used, rounds=min(rounds or 200, 200), seed=cfg.seed)
        return out
    items = item_mos(used)
    mos = method_mos(used, rounds=rounds or cfg.bootstrap_rounds, seed=cfg.seed)
    mos["mos_cell"] = [mos_with_subscript(m, r) for m, r in zip(mos["mos"], mos["rank"], strict=True)]
    out.update(items=items, mos=mos, paired=paired_tests(used), reliability=reliability(used))
    return out


def mos_figure(table: pd.DataFrame, mode: str = "mos") -> Any:
    """Plotly bar chart of MOS (or Bradley-Terry scores) with 95 % CI error bars."""
    import plotly.graph_objects as go

    ycol, title = ("mos", "MOS vs DSLR target (0 = almost identical, 4 = mostly different; lower is better)")
    if mode == "pairwise":
        ycol, title = "bt_score", "Bradley-Terry score (higher = preferred)"
    fig = go.Figure()
    if len(table):
        fig.add_bar(
            x=table["method"].astype(str),
            y=table[ycol],
            error_y={
                "type": "data",
                "symmetric": False,
                "array": table["ci_high"] - table[ycol],
                "arrayminus": table[ycol] - table["ci_low"],
            },
            text=[f"{v:.2f}" for v in table[ycol]],
            textposition="outside",
        )
    fig.update_layout(title=title, xaxis_title="method", yaxis_title=ycol, template="plotly_white")
    return fig


def _find_per_image(out_dir: Path, source_run: str) -> Path | None:
    for cand in (out_dir / PER_IMAGE, Path(source_run) / PER_IMAGE if source_run else None):
        if cand is not None and cand.is_file():
            return cand
    return None


def _json_ready(obj: Any) -> Any:
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def write_aggregate(
    service: StudyService, study_id: str, out_dir: str | Path, *, rounds: int | None = None, rebuild: bool = True
) -> dict[str, Any]:
    """Compute everything and write it to ``out_dir`` (see the module docstring).

    Args:
        service: Study service.
        study_id: Study id.
        out_dir: Output folder (may be the evaluation run folder).
        rounds: Bootstrap rounds (default from the study config).
        rebuild: Call ``evaluation.leaderboard.rebuild_tables(out_dir)`` when importable.

    Returns:
        The results dict of :func:`compute_results` plus ``files`` (written paths) and ``rebuild`` (status).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res = compute_results(service, study_id, rounds=rounds)
    files: list[Path] = []

    def put(df: pd.DataFrame, name: str) -> None:
        _write_csv(df, out / name)
        files.append(out / name)

    decisions = res["decisions"]
    put(decisions, "qc_decisions.csv")
    run_id = new_id()
    with service.Session() as s, s.begin():
        s.add_all(
            QcDecision(
                study_id=study_id,
                run_id=run_id,
                level=d.level,
                target_id=d.target_id,
                rule=d.rule,
                value=None if pd.isna(d.value) else float(d.value),
                threshold=None if pd.isna(d.threshold) else float(d.threshold),
                excluded=bool(d.excluded),
            )
            for d in decisions.itertuples()
        )
    flagged = res["ratings"]
    summary: dict[str, Any] = {
        "study_id": study_id,
        "mode": res["mode"],
        "config_sha256": res["config"].sha256(),
        "qc_run_id": run_id,
        "n_ratings": int(len(flagged)),
        "n_used": int(len(res["used"])),
        "n_excluded": int(flagged["qc_excluded"].sum()) if len(flagged) else 0,
        "n_raters": int(flagged["rater_id"].nunique()) if len(flagged) else 0,
        "excluded_by_rule": decisions[decisions["excluded"]].groupby("rule").size().to_dict() if len(decisions) else {},
    }
    if res["mode"] == "pairwise":
        put(res["pairwise"], "pairwise.csv")
        put(res["bt"], "bradley_terry.csv")
        chart_table = res["bt"]
    else:
        mos = res["mos"]
        put(mos[["method", "mos", "ci_low", "ci_high", "rank", "sig_rank", "n_ratings"]], "mos.csv")
        put(mos, "mos_details.csv")
        put(res["items"], "item_mos.csv")
        put(res["paired"], "paired_tests.csv")
        rel = {k: _json_ready(v) for k, v in res["reliability"].items()}
        atomic_write(out / "reliability.json", json.dumps(rel, indent=2))
        files.append(out / "reliability.json")
        summary["reliability"] = rel
        with service.Session() as s:
            from user_study.storage import Study

            source_run = s.get(Study, study_id).source_run
        per_image = _find_per_image(out, source_run)
        if per_image is not None:
            corr = metric_correlations(res["items"], pd.read_csv(per_image, dtype={"id": str}))
            put(corr, "metric_mos_correlation.csv")
            res["correlations"] = corr
        chart_table = mos
    fig = mos_figure(chart_table, res["mode"])
    atomic_write(out / "mos_chart.html", fig.to_html(include_plotlyjs=True, full_html=True))
    files.append(out / "mos_chart.html")
    atomic_write(out / "study_summary.json", json.dumps(summary, indent=2, default=str))
    files.append(out / "study_summary.json")
    res["files"] = files
    res["rebuild"] = "skipped"
    if rebuild and res["mode"] == "mos":
        try:
            from evaluation.leaderboard import rebuild_tables
        except ImportError as exc:
            res["rebuild"] = f"evaluation.leaderboard.rebuild_tables not importable ({exc})"
        else:
            if not (out / RUN_RECORD).is_file():
                res["rebuild"] = f"skipped: {out} has no {RUN_RECORD} (not an evaluation run folder)"
            else:
                try:
                    rebuild_tables(out)
                    res["rebuild"] = "done"
                except (OSError, ValueError) as exc:
                    res["rebuild"] = f"failed: {exc}"
                    log.warning("rebuild_tables(%s) failed: %s", out, exc)
    return res


def export_ratings(service: StudyService, study_id: str, path: str | Path, *, fmt: str = "csv") -> Path:
    """Export every rating with QC flags to CSV or JSON (JSON lines); safe against formula injection.

    Contains only hashed rater ids, never raw personal data.
    """
    if fmt not in ("csv", "json"):
        raise ValueError(f"fmt={fmt!r} is not allowed; use 'csv' or 'json'")
    _, flagged = qc_tables(service, study_id)
    cols = [
        "rating_id",
        "rater_id",
        "session_id",
        "item_id",
        "kind",
        "method",
        "method_b",
        "scene",
        "score",
        "expected_score",
        "position",
        "swap",
        "view_ms",
        "shown_at",
        "submitted_at",
        "source",
        "excluded",
        "exclusion_reason",
        "qc_excluded",
        "qc_reason",
    ]
    df = flagged[cols].copy()
    for c in ("shown_at", "submitted_at"):
        df[c] = df[c].astype(str).replace({"NaT": "", "None": ""})
    path = Path(path)
    if fmt == "csv":
        atomic_write(path, spreadsheet_csv(df))
    else:
        atomic_write(path, df.to_json(orient="records", lines=True))
    return path
