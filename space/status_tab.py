"""Status tab: which models are installed and, for each missing one, how to provide it."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from .config import SpaceSettings
from .services import status_rows

__all__ = ["build_status_tab", "status_banner"]


def status_banner(settings: SpaceSettings) -> str:
    """One honest line at the top of the page about what this instance can and cannot do."""
    rows = {row["component"]: row for row in status_rows(settings)}
    parts = []
    if rows["PyNET-Bokeh weights"]["state"] != "ready":
        parts.append("**PyNET-Bokeh weights are not installed here**, so PyNET is listed as unavailable")
    if rows["Depth model"]["state"] != "ready":
        parts.append("**no depth model is installed**, so depth is an *approximate* estimate (labelled as such)")
    if not parts:
        return ""
    return "ℹ️ " + "; ".join(parts) + ". The Status tab says how to add them."


def build_status_tab(settings: SpaceSettings) -> None:
    table = gr.DataFrame(
        pd.DataFrame(status_rows(settings)),
        interactive=False,
        wrap=True,
        label="Models and data",
        elem_id="status-table",
    )
    refresh = gr.Button("Refresh", elem_id="status-refresh")
    refresh.click(lambda: pd.DataFrame(status_rows(settings)), None, table, api_name="status")
    gr.Markdown(
        "Settings (environment variables): `BOKEH_PYNET_WEIGHTS` (folder or hub id), `BOKEH_DEPTH_MODEL` "
        "(transformers depth model id or folder), `BOKEH_RESULTS_DIR` (evaluation output shown on the "
        "Leaderboard), `BOKEH_STUDY_DB` and `BOKEH_ORGANIZER_TOKEN` (user study), `BOKEH_MAX_RENDER_SIDE`, "
        "`BOKEH_PYNET_PREVIEW_SIDE`, `BOKEH_MAX_UPLOAD_MB`, `BOKEH_CONCURRENCY`."
    )
