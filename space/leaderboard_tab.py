"""Leaderboard tab: the latest evaluation (the paper's Table 1 layout), MOS when a study has results, charts."""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from .config import SpaceSettings

__all__ = ["build_leaderboard_tab", "leaderboard_view"]

MAX_FIGURES = 3  # runtime vs quality, per-image metric distributions, MOS with confidence intervals


def _contents(settings: SpaceSettings) -> tuple[str, pd.DataFrame, list[Any]]:
    from evaluation.leaderboard import leaderboard_figures, load_leaderboard

    folder = settings.results_dir
    if not (folder / "run.json").is_file():
        text = (
            f"No evaluation results in `{folder}` yet, so only the paper's reported rows are shown. Run "
            f"`python evaluation/run.py --out {folder}` (add `--dataset` for EBB!) and press Refresh."
        )
        return text, load_leaderboard(None), []
    text = (
        f"Results from `{folder}`. Rows marked *reported in paper* are copied from the paper's Table 1 "
        "(EBB! test split, their hardware); the others were measured by `evaluation/run.py`."
    )
    return text, load_leaderboard(folder), leaderboard_figures(folder)[:MAX_FIGURES]


def leaderboard_view(settings: SpaceSettings) -> tuple[Any, ...]:
    """(explanation, table, one update per chart slot) for the configured results folder."""
    text, table, figures = _contents(settings)
    plots = [
        gr.update(value=figures[i] if i < len(figures) else None, visible=i < len(figures)) for i in range(MAX_FIGURES)
    ]
    return (text, table, *plots)


def build_leaderboard_tab(settings: SpaceSettings) -> None:
    text, table, figures = _contents(settings)
    note = gr.Markdown(text, elem_id="leaderboard-note")
    frame = gr.DataFrame(
        table,
        interactive=False,
        wrap=True,
        label="Leaderboard",
        elem_id="leaderboard-table",
        buttons=["copy", "fullscreen"],
    )
    charts = [
        gr.Plot(figures[i] if i < len(figures) else None, visible=i < len(figures), elem_id=f"leaderboard-plot-{i}")
        for i in range(MAX_FIGURES)
    ]
    refresh = gr.Button("Refresh", elem_id="leaderboard-refresh")
    refresh.click(lambda: leaderboard_view(settings), None, [note, frame, *charts], api_name="leaderboard")
