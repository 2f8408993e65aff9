"""``report.html``: the results table of a run with its banners and notes, then plotly charts.

Pure figure builders over DataFrames plus one writer. Every chart takes the same method -> colour map
(:func:`method_colors`), so a method has one colour across the page and the table's swatches. The first
chart embeds plotly.js, so the page works offline.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from bokeh_model.files import atomic_write

__all__ = ["distribution_figure", "method_colors", "mos_figure", "runtime_quality_figure", "write_report"]

_CODE_SPAN = re.compile(r"`([^`]+)`")


def _text_html(text: str) -> str:
    """Escaped text with its Markdown code spans (`` `cmd` ``) as ``<code>``, so no backticks show on the page."""
    return _CODE_SPAN.sub(r"<code>\1</code>", html.escape(text))


_METRIC_LABELS = {"psnr": "PSNR ↑ (dB)", "ssim": "SSIM ↑", "lpips": "LPIPS ↓"}
# Plotly's default qualitative palette followed by Dark24's first colours: distinct for up to 20 methods.
_PALETTE = (
    "#636EFA",
    "#EF553B",
    "#00CC96",
    "#AB63FA",
    "#FFA15A",
    "#19D3F3",
    "#FF6692",
    "#B6E880",
    "#FF97FF",
    "#FECB52",
    "#2E91E5",
    "#E15F99",
    "#1CA71C",
    "#FB0D0D",
    "#DA16FF",
    "#222A2A",
    "#B68100",
    "#750D86",
    "#EB663B",
    "#511CFB",
)


def method_colors(methods: Sequence[str]) -> dict[str, str]:
    """One colour per method, by first appearance in ``methods`` (the palette repeats after 20)."""
    unique = list(dict.fromkeys(str(m) for m in methods))
    return {method: _PALETTE[index % len(_PALETTE)] for index, method in enumerate(unique)}


def _color_map(methods: Sequence[str], colors: Mapping[str, str] | None) -> dict[str, str]:
    result = dict(colors or {})
    extra = method_colors([m for m in methods if m not in result])
    used = len(result)
    for index, method in enumerate(extra):
        result[method] = _PALETTE[(used + index) % len(_PALETTE)]
    return result


def distribution_figure(
    per_image: pd.DataFrame, title: str = "Per-image metrics by method", colors: Mapping[str, str] | None = None
) -> object:
    """Box plots (with points) of PSNR, SSIM and LPIPS per method; metrics with no values are left out."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    metrics = [m for m in ("psnr", "ssim", "lpips") if m in per_image and per_image[m].notna().any()]
    metrics = metrics or ["psnr"]
    figure = make_subplots(rows=1, cols=len(metrics), subplot_titles=[_METRIC_LABELS[m] for m in metrics])
    methods = list(dict.fromkeys(per_image["method"].astype(str))) if len(per_image) else []
    palette = _color_map(methods, colors)
    for column, metric in enumerate(metrics, start=1):
        for method in methods:
            part = per_image.loc[per_image["method"].astype(str) == method]
            figure.add_trace(
                go.Box(
                    y=part[metric],
                    name=method,
                    boxpoints="all",
                    jitter=0.3,
                    legendgroup=method,
                    showlegend=column == 1,
                    marker={"color": palette[method]},
                    line={"color": palette[method]},
                    text=part["id"].astype(str),
                    hovertemplate="id %{text}: %{y}<extra>" + html.escape(method) + "</extra>",
                ),
                row=1,
                col=column,
            )
    figure.update_layout(title=title, height=450, boxmode="group")
    return figure


def runtime_quality_figure(
    summary: pd.DataFrame, metric: str = "psnr", colors: Mapping[str, str] | None = None
) -> object:
    """Scatter of mean runtime (s, log axis) against a mean metric, one point per method that has both."""
    import plotly.graph_objects as go

    figure = go.Figure()
    data = summary.dropna(subset=["runtime_s", metric]) if len(summary) else summary
    palette = _color_map([str(m) for m in data["method"]] if len(data) else [], colors)
    for _, row in data.iterrows():
        figure.add_trace(
            go.Scatter(
                x=[row["runtime_s"]],
                y=[row[metric]],
                mode="markers+text",
                name=str(row["method"]),
                text=[str(row["method"])],
                textposition="top center",
                marker={"size": 12, "color": palette[str(row["method"])]},
            )
        )
    figure.update_layout(
        title=f"Runtime vs {_METRIC_LABELS.get(metric, metric)} (measured methods with a runtime)",
        xaxis={"title": "mean runtime per image, s", "type": "log"},
        yaxis={"title": _METRIC_LABELS.get(metric, metric)},
        height=420,
    )
    return figure


def mos_figure(mos: pd.DataFrame, colors: Mapping[str, str] | None = None) -> object:
    """Bar chart of MOS (lower is better) with its confidence interval per method."""
    import plotly.graph_objects as go

    data = mos.sort_values("mos")
    methods = [str(m) for m in data["method"]]
    palette = _color_map(methods, colors)
    figure = go.Figure(
        go.Bar(
            x=methods,
            y=data["mos"],
            marker={"color": [palette[m] for m in methods]},
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


_STYLE = (
    "body{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}h1{overflow-wrap:anywhere}"
    ".scroll{overflow-x:auto}"
    ".note{color:#444;margin:.3em 0}.banner{background:#fde68a;padding:.6em;font-weight:bold;margin:.4em 0}"
    "table.results{border-collapse:collapse;margin:1em 0;width:100%}"
    "table.results th,table.results td{border:1px solid #ccc;padding:.3em .5em;text-align:left}"
    "table.results th{background:#f3f4f6}table.results tr.paper td{color:#555;background:#fafafa}"
    ".swatch{display:inline-block;width:.8em;height:.8em;margin-right:.4em;border-radius:2px}"
    "ul.skipped li{color:#92400e}"
)


def _table_html(table: pd.DataFrame, colors: Mapping[str, str], paper_source: str) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = []
    for _, row in table.iterrows():
        is_paper = str(row.get("Source", "")) == paper_source
        cells = []
        for column in table.columns:
            text = html.escape(str(row[column]))
            if column == "Method" and str(row[column]) in colors and not is_paper:
                text = f"<span class='swatch' style='background:{colors[str(row[column])]}'></span>{text}"
            cells.append(f"<td>{text}</td>")
        body.append(f"<tr class='{'paper' if is_paper else 'measured'}'>{''.join(cells)}</tr>")
    table_html = f"<table class='results'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return f"<div class='scroll'>{table_html}</div>"  # narrow screens scroll the table, not the page


def write_report(
    path: str | os.PathLike,
    figures: Sequence[object],
    *,
    title: str,
    notes: Sequence[str] = (),
    banners: Sequence[str] = (),
    table: pd.DataFrame | None = None,
    skipped: Sequence[Mapping[str, str]] = (),
    colors: Mapping[str, str] | None = None,
    paper_source: str = "reported in paper",
) -> Path:
    """Write one self-contained HTML page (atomically): banners, the results table, methods not scored,
    notes, then the figures."""
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    parts += [f"<p class='banner'>{html.escape(banner)}</p>" for banner in banners]
    if table is not None:
        parts.append(_table_html(table, colors or {}, paper_source))
    if skipped:
        parts.append("<h2>Not scored</h2><ul class='skipped'>")
        parts += [
            f"<li><b>{html.escape(str(s.get('method')))}</b>: {_text_html(str(s.get('reason')))}</li>" for s in skipped
        ]
        parts.append("</ul>")
    if notes:
        parts.append("<h2>Notes</h2>")
        parts += [f"<p class='note'>{_text_html(note)}</p>" for note in notes]
    parts.append("<h2>Charts</h2>" if figures else "<p class='note'>No charts: no method was scored in this run.</p>")
    for index, figure in enumerate(figures):
        parts.append(figure.to_html(full_html=False, include_plotlyjs=index == 0))  # type: ignore[attr-defined]
    parts.append("</body></html>")
    return atomic_write(path, "\n".join(parts))
