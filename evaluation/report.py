"""``report.html``: plotly charts of a run (metric distributions per method, runtime vs quality, MOS).

Pure figure builders over DataFrames plus one writer. The first chart embeds plotly.js, so the page works
offline.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from bokeh_model.files import atomic_write

__all__ = ["distribution_figure", "mos_figure", "runtime_quality_figure", "write_report"]

_METRIC_LABELS = {"psnr": "PSNR ↑ (dB)", "ssim": "SSIM ↑", "lpips": "LPIPS ↓"}


def distribution_figure(per_image: pd.DataFrame, title: str = "Per-image metrics by method") -> object:
    """Box plots (with points) of PSNR, SSIM and LPIPS per method; metrics with no values are left out."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    metrics = [m for m in ("psnr", "ssim", "lpips") if m in per_image and per_image[m].notna().any()]
    metrics = metrics or ["psnr"]
    figure = make_subplots(rows=1, cols=len(metrics), subplot_titles=[_METRIC_LABELS[m] for m in metrics])
    methods = list(dict.fromkeys(per_image["method"])) if len(per_image) else []
    for column, metric in enumerate(metrics, start=1):
        for method in methods:
            values = per_image.loc[per_image["method"] == method, metric]
            figure.add_trace(
                go.Box(
                    y=values,
                    name=method,
                    boxpoints="all",
                    jitter=0.3,
                    legendgroup=method,
                    showlegend=column == 1,
                    text=per_image.loc[per_image["method"] == method, "id"].astype(str),
                    hovertemplate="id %{text}: %{y}<extra>" + html.escape(method) + "</extra>",
                ),
                row=1,
                col=column,
            )
    figure.update_layout(title=title, height=450, boxmode="group")
    return figure


def runtime_quality_figure(summary: pd.DataFrame, metric: str = "psnr") -> object:
    """Scatter of mean runtime (s, log axis) against a mean metric, one point per measured method."""
    import plotly.graph_objects as go

    figure = go.Figure()
    data = summary.dropna(subset=["runtime_s", metric]) if len(summary) else summary
    for _, row in data.iterrows():
        figure.add_trace(
            go.Scatter(
                x=[row["runtime_s"]],
                y=[row[metric]],
                mode="markers+text",
                name=row["method"],
                text=[row["method"]],
                textposition="top center",
                marker={"size": 12},
            )
        )
    figure.update_layout(
        title=f"Runtime vs {_METRIC_LABELS.get(metric, metric)} (measured methods)",
        xaxis={"title": "mean runtime per image, s", "type": "log"},
        yaxis={"title": _METRIC_LABELS.get(metric, metric)},
        height=420,
    )
    return figure


def mos_figure(mos: pd.DataFrame) -> object:
    """Bar chart of MOS (lower is better) with its confidence interval per method."""
    import plotly.graph_objects as go

    data = mos.sort_values("mos")
    figure = go.Figure(
        go.Bar(
            x=data["method"],
            y=data["mos"],
            error_y={
                "type": "data",
                "symmetric": False,
                "array": data["ci_high"] - data["mos"],
                "arrayminus": data["mos"] - data["ci_low"],
            },
        )
    )
    figure.update_layout(
        title="MOS from the user study (0 = almost identical to the target ... 4; lower is better)",
        yaxis={"title": "MOS ↓"},
        height=420,
    )
    return figure


def write_report(path: str | os.PathLike, figures: Sequence[object], *, title: str, notes: Sequence[str] = ()) -> Path:
    """Write the figures into one self-contained HTML page (atomically)."""
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}"
        ".note{color:#444}.banner{background:#fde68a;padding:.6em;font-weight:bold}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for note in notes:
        css = "banner" if note.upper().startswith("SYNTHETIC") else "note"
        parts.append(f"<p class='{css}'>{html.escape(note)}</p>")
    for index, figure in enumerate(figures):
        parts.append(figure.to_html(full_html=False, include_plotlyjs=index == 0))  # type: ignore[attr-defined]
    if not figures:
        parts.append("<p>No charts: the run has no measured methods.</p>")
    parts.append("</body></html>")
    return atomic_write(path, "\n".join(parts))
