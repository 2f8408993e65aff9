"""Leaderboard tab: the latest evaluation (the paper's Table 1 layout), MOS when a study has results, charts.

Honesty rules: the paper's Table 1 rows (EBB! test subset) sit in the same table only beside results measured on
EBB!. A run on other data (a synthetic sample, another dataset) is shown on its own, under a banner that names the
data, without the paper's rows. Every chart gives a method the same colour.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from evaluation.report import method_colors

from .arena_tab import add_arena_column
from .config import SpaceSettings

__all__ = ["build_leaderboard_tab", "is_ebb_run", "leaderboard_view", "method_colours"]

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


def is_ebb_run(run: dict[str, Any]) -> bool:
    """Whether a run was measured on EBB! (the data of the paper's Table 1), not on a synthetic or other set."""
    dataset = run.get("dataset", {}) or {}
    if dataset.get("synthetic"):
        return False
    # val294 is EBB!'s community split; otherwise the dataset's name (e.g. the folder `evaluation.ebb` wrote) says it
    return dataset.get("split") == "val294" or "ebb" in str(dataset.get("name", "")).lower()


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


def _contents(
    settings: SpaceSettings, *, charts: bool = True
) -> tuple[str, str, pd.DataFrame, list[Any], pd.DataFrame | None]:
    """(banner, explanation, measured table, charts, the paper's table shown apart or None)."""
    from evaluation.leaderboard import PAPER_SOURCE, leaderboard_figures, load_leaderboard

    folder = settings.results_dir
    run = _read_run(folder)
    paper = load_leaderboard(None)
    if run is None:
        text = (
            f"No evaluation results in `{folder}` yet. Run `python evaluation/run.py --out {folder} --dataset ...` "
            "on EBB! and press Refresh. The paper's own Table 1 (reported, not measured here) is below."
        )
        return "", text, paper.iloc[0:0], [], paper
    table = load_leaderboard(folder)
    figures = _recolour(leaderboard_figures(folder)[:MAX_FIGURES]) if charts else []
    if is_ebb_run(run):
        text = (
            f"Results from `{folder}`, measured on {_data_name(run)}. Rows marked *{PAPER_SOURCE}* are copied from "
            "the paper's Table 1 (the 200-image EBB! test subset with private targets, their hardware); the others "
            "were measured by `evaluation/run.py`."
        )
        return "", text, table, figures, None
    measured = table[table["Source"] != PAPER_SOURCE].reset_index(drop=True)
    banner = (
        f"⚠ **Not EBB!** These results were measured on {_data_name(run)}. They are not comparable with the "
        "paper's Table 1, so its rows are not shown here; run the evaluation on EBB! to compare with them."
    )
    text = f"Results from `{folder}`."
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
    frame = gr.DataFrame(
        # a callable: the Arena column is computed from the stored votes at every page load, never stale
        lambda: add_arena_column(_contents(settings, charts=False)[2], settings.study_db),
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
    refresh.click(
        lambda: leaderboard_view(settings),
        None,
        [banner, note, frame, paper_box, paper_frame, *charts],
        api_name="leaderboard",
    )
