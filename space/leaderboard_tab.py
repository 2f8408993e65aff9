"""Leaderboard tab: the latest evaluation (the paper's Table 1 layout), MOS when a study has results, charts.

Honesty rules: the paper's Table 1 rows (EBB! test subset) sit in the same table only beside results measured on
EBB!. A run on other data (a synthetic sample, another dataset) is shown on its own, under a banner that names the
data, without the paper's rows. Every chart gives a method the same colour.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from evaluation.leaderboard import is_ebb_run
from evaluation.report import method_colors

from .arena_tab import add_arena_column
from .config import SpaceSettings

__all__ = ["CSS", "build_leaderboard_tab", "is_ebb_run", "leaderboard_view", "method_colours"]

MAX_FIGURES = 3  # runtime vs quality, per-image metric distributions, MOS with confidence intervals


def _read_run(folder: Path) -> dict[str, Any] | None:
    path = folder / "run.json"
    if not path.is_file():
        return None
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return run if run.get("status") == "complete" else None


def _data_name(run: dict[str, Any]) -> str:
    dataset = run.get("dataset", {}) or {}
    n = (dataset.get("fingerprint") or {}).get("n")
    what = dataset.get("description") or dataset.get("name") or "unnamed data"
    kind = "synthetic procedural scenes with thin-lens targets" if dataset.get("synthetic") else "not EBB!"
    count = f"{n} images, " if n else ""
    return f"{what} ({count}{kind}; profile {run.get('profile')})"


def method_colours(methods: list[str]) -> dict[str, str]:
    """One colour per method name, the same in every chart of a run: the evaluation report's palette, assigned in
    sorted order (plotly on its own colours traces by their order in each figure)."""
    return method_colors(sorted({str(m) for m in methods}))


def _chart_methods(figure: Any) -> list[str]:
    names = []
    for trace in figure.data:
        if trace.type == "bar" and trace.x is not None:
            names += [str(x) for x in trace.x]
        elif trace.name:
            names.append(str(trace.name))
    return names


def _recolour(figures: list[Any]) -> list[Any]:
    colours = method_colours([name for figure in figures for name in _chart_methods(figure)])
    for figure in figures:
        for trace in figure.data:
            if trace.type == "bar" and trace.x is not None:
                trace.marker.color = [colours[str(x)] for x in trace.x]
            elif trace.name in colours:
                trace.marker.color = colours[trace.name]
                if trace.type == "box":
                    trace.line.color = colours[trace.name]
    return figures


# The columns a reader compares come first, so that on a phone (390 px) Method, PSNR, SSIM and MOS are on screen
# without scrolling sideways; LPIPS and the rest follow, with a hint that the table scrolls.
KEY_COLUMNS = ["Method", "PSNR ↑", "SSIM ↑", "MOS ↓", "LPIPS ↓", "Runtime s"]
# Headers break only between words (not "LPIP / S"); on a phone a hint says that more columns follow.
CSS = """
#leaderboard-table th, #leaderboard-table th *, #leaderboard-paper-table th, #leaderboard-paper-table th * {
  word-break: keep-all !important; overflow-wrap: normal !important; hyphens: none !important; }
#leaderboard-scroll-hint { display: none; }
@media (min-width: 641px) { #leaderboard-table th, #leaderboard-table th * { white-space: nowrap !important; } }
@media (max-width: 640px) {
  #leaderboard-scroll-hint { display: block; font-size: .8rem; margin: 0; }
  #leaderboard-table th, #leaderboard-table td { padding: 4px 5px !important; font-size: .78rem !important; }
}
"""


def _key_columns_first(table: pd.DataFrame) -> pd.DataFrame:
    first = [c for c in KEY_COLUMNS if c in table.columns]
    return table[first + [c for c in table.columns if c not in first]]


def _decade_label(power: int) -> str:
    seconds = 10.0**power
    if seconds < 1e-3:
        return f"{seconds * 1e6:g} µs"
    if seconds < 1:
        return f"{seconds * 1e3:g} ms"
    return f"{seconds:g} s"


def _fit_figures(figures: list[Any]) -> list[Any]:
    """Charts readable from 390 px up: titles wrapped (a long title was cut on a phone), the legend under the plot
    (it squeezed the subplots until their titles collided), smaller subplot titles, room for the axis labels, and
    a log axis ticked once per decade instead of at every digit."""
    for figure in figures:
        title = str(figure.layout.title.text or "")
        if " (" in title:  # "Runtime vs PSNR (measured ...)" -> the qualifier on a smaller second line
            head, _, tail = title.rpartition(" (")
            title = f"{head}<br><sup>({tail}</sup>"
        figure.update_layout(
            title={"text": title, "font": {"size": 15}, "x": 0.01, "xanchor": "left"},
            margin={"l": 56, "r": 12, "t": 72, "b": 48},
            legend={"orientation": "h", "yanchor": "top", "y": -0.12, "x": 0},
            autosize=True,
        )
        figure.update_annotations(font_size=12)
        figure.update_yaxes(automargin=True, title_standoff=4)
        figure.update_xaxes(automargin=True)
        if figure.layout.xaxis.type == "log":
            values = [v for trace in figure.data for v in (trace.x if trace.x is not None else ()) if v and v > 0]
            if values:
                low = math.floor(math.log10(min(values)))
                high = max(low + 1, math.ceil(math.log10(max(values))))
                decades = list(range(low, high + 1))
                figure.update_xaxes(
                    range=[low - 0.05, high + 0.05],
                    tickvals=[10.0**k for k in decades],
                    ticktext=[_decade_label(k) for k in decades],
                    minor={"showgrid": False, "ticks": ""},
                )
    return figures


def _contents(settings: SpaceSettings) -> tuple[str, str, pd.DataFrame, list[Any], pd.DataFrame | None]:
    """(banner, explanation, measured table, charts, the paper's table shown apart or None)."""
    from evaluation.leaderboard import PAPER_SOURCE, leaderboard_figures, load_leaderboard

    folder = settings.results_dir
    run = _read_run(folder)
    paper = load_leaderboard(None)
    if run is None:  # no server path and no command for visitors: the README says how to run an evaluation
        text = (
            "No evaluation results on this Space yet. The paper's own Table 1 (reported, not measured here) is below."
        )
        return "", text, paper.iloc[0:0], [], paper
    table = _key_columns_first(load_leaderboard(folder))
    figures = _fit_figures(_recolour(leaderboard_figures(folder)[:MAX_FIGURES]))
    if is_ebb_run(run):
        text = (
            f"Measured on {_data_name(run)}. Rows marked *{PAPER_SOURCE}* are copied from "
            "the paper's Table 1 (the 200-image EBB! test subset with private targets, their hardware); the others "
            "were measured by `evaluation/run.py`."
        )
        return "", text, table, figures, None
    measured = table[table["Source"] != PAPER_SOURCE].reset_index(drop=True)
    banner = (
        f"⚠ **Not EBB!** These results were measured on {_data_name(run)}. They are not comparable with the "
        "paper's Table 1, so its rows are not shown here; run the evaluation on EBB! to compare with them."
    )
    text = "Measured by this project's evaluation (`evaluation/run.py`)."
    return banner, text, measured, figures, None


def leaderboard_view(settings: SpaceSettings) -> tuple[Any, ...]:
    """(banner, explanation, table, the paper's table, one update per chart slot) for the results folder."""
    banner, text, table, figures, paper = _contents(settings)
    plots = [
        gr.update(value=figures[i] if i < len(figures) else None, visible=i < len(figures)) for i in range(MAX_FIGURES)
    ]
    return (
        gr.update(value=banner, visible=bool(banner)),
        text,
        gr.update(value=add_arena_column(table, settings.study_db), visible=len(table) > 0),
        gr.update(visible=paper is not None),
        paper if paper is not None else gr.skip(),
        *plots,
    )


def build_leaderboard_tab(settings: SpaceSettings) -> None:
    banner_text, text, table, figures, paper = _contents(settings)
    banner = gr.Markdown(banner_text, visible=bool(banner_text), elem_id="leaderboard-banner")
    note = gr.Markdown(text, elem_id="leaderboard-note")
    gr.Markdown("Swipe the table sideways for hardware and source →", elem_id="leaderboard-scroll-hint")
    frame = gr.DataFrame(
        # replaced at every page load (demo.load below), the Arena column from the votes stored at that moment
        add_arena_column(table, settings.study_db),
        interactive=False,
        wrap=True,
        label="Leaderboard",
        elem_id="leaderboard-table",
        buttons=["copy", "fullscreen"],
        visible=len(table) > 0,
    )
    with gr.Accordion(
        "The paper's Table 1 (reported on the EBB! test subset; not measured here)",
        open=True,
        visible=paper is not None,
        elem_id="leaderboard-paper",
    ) as paper_box:
        paper_frame = gr.DataFrame(
            paper if paper is not None else None,
            interactive=False,
            wrap=True,
            label="Reported in the paper",
            elem_id="leaderboard-paper-table",
        )
    charts = [
        gr.Plot(figures[i] if i < len(figures) else None, visible=i < len(figures), elem_id=f"leaderboard-plot-{i}")
        for i in range(MAX_FIGURES)
    ]
    refresh = gr.Button("Refresh", elem_id="leaderboard-refresh")
    outputs = [banner, note, frame, paper_box, paper_frame, *charts]

    def leaderboard() -> tuple[Any, ...]:
        """The leaderboard as it is now: banner, note, measured table, the paper's table and the charts."""
        return leaderboard_view(settings)

    refresh.click(leaderboard, None, outputs, api_name="leaderboard")
    # Read again at every page load: results written after the server started (a new run, a study's MOS) show
    # without pressing Refresh. (The values above are only what the server saw when it started.)
    demo = gr.context.Context.root_block
    if demo is not None:
        demo.load(leaderboard, None, outputs, api_visibility="private")
