"""Leaderboard tab: the latest evaluation (the paper's Table 1 layout), MOS when a study has results, charts."""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from .config import SpaceSettings

__all__ = ["build_leaderboard_tab", "leaderboard_view"]


def leaderboard_view(settings: SpaceSettings) -> tuple[str, pd.DataFrame, Any]:
    """(explanation, table, plotly figure or None) for the configured results folder."""
    from evaluation.leaderboard import leaderboard_figures, load_leaderboard

    folder = settings.results_dir
    has_run = (folder / "run.json").is_file()
    table = load_leaderboard(folder if has_run else None)
    if has_run:
        text = (
            f"Results from `{folder}`. Rows marked *reported in paper* are copied from the paper's Table 1 "
            "(EBB! test split, their hardware); the others were measured by `evaluation/run.py`."
        )
        figures = leaderboard_figures(folder)
    else:
        text = (
            f"No evaluation results in `{folder}` yet, so only the paper's reported rows are shown. Run "
            f"`python evaluation/run.py --out {folder}` (add `--dataset` for EBB!) and press Refresh."
        )
        figures = []
    return text, table, (figures[0] if figures else None)


def build_leaderboard_tab(settings: SpaceSettings) -> None:
    text, table, figure = leaderboard_view(settings)
    note = gr.Markdown(text, elem_id="leaderboard-note")
    frame = gr.DataFrame(
        table,
        interactive=False,
        wrap=True,
        label="Leaderboard",
        elem_id="leaderboard-table",
        buttons=["copy", "fullscreen"],
    )
    plot = gr.Plot(figure, label="Runtime vs quality", elem_id="leaderboard-plot")
    refresh = gr.Button("Refresh", elem_id="leaderboard-refresh")
    refresh.click(lambda: leaderboard_view(settings), None, [note, frame, plot], api_name="leaderboard")
