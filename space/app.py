"""The Space: builds the Gradio Blocks app from the tab modules; ``launch`` starts it."""

from __future__ import annotations

import threading

import gradio as gr

from user_study.ui import build_study_ui, tune_queue

from .compare_tab import build_compare_tab
from .config import SpaceSettings
from .leaderboard_tab import build_leaderboard_tab
from .render_tab import build_render_tab
from .status_tab import build_status_tab, status_banner
from .submit_tab import build_portal_tab

__all__ = ["build_app", "launch"]

INTRO = """# 📷 Natural camera bokeh: PyNET-Bokeh and its competitors
PyNET-Bokeh (Ignatov, Patel, Timofte, CVPRW 2020) learns the shallow depth of field of a Canon DSLR with a
50mm f/1.8 lens from the EBB! dataset. Here it runs beside renderers that blur a photo from its depth map.
**Click on the photo** to choose what stays sharp."""


def _initial_tab(request: gr.Request) -> gr.Tabs:
    params = dict(request.query_params) if request is not None else {}
    return gr.Tabs(selected="study") if params.get("study") else gr.Tabs()


def _warm_up_renderers() -> None:
    # The lens renderer's CPU kernels are compiled by Numba on first use (10-30 s, then cached on disk):
    # do it in the background at start-up rather than in the first visitor's request.
    from bokeh_model.methods._lens_fast import warm_up

    warm_up()


def build_app(settings: SpaceSettings | None = None) -> gr.Blocks:
    """Build (not launch) the app; tests call this directly."""
    settings = settings or SpaceSettings.from_env()
    threading.Thread(target=_warm_up_renderers, name="warm-up", daemon=True).start()
    with gr.Blocks(title="PyNET-Bokeh: natural camera bokeh") as demo:
        gr.Markdown(INTRO)
        banner = status_banner(settings)
        if banner:
            gr.Markdown(banner, elem_id="status-banner")
        with gr.Tabs() as tabs:
            with gr.Tab("Render", id="render"):
                shared = build_render_tab(settings)
            with gr.Tab("Compare", id="compare"):
                build_compare_tab(settings, shared)
            with gr.Tab("Leaderboard", id="leaderboard"):
                build_leaderboard_tab(settings)
            with gr.Tab("Portal", id="portal"):
                build_portal_tab(settings)
            with gr.Tab("Study", id="study"):
                build_study_ui(db_url=settings.study_db, organizer_token=settings.organizer_token)
            with gr.Tab("Status", id="status"):
                build_status_tab(settings)
        # A rater link (?study=...) opens the Study tab directly.
        demo.load(_initial_tab, None, tabs, api_visibility="private")
    # Renders share `concurrency` slots; the study's own handlers have no limit (they are cheap and many raters
    # may submit at once), and the queue is long enough for a crowd of raters.
    demo.queue(default_concurrency_limit=settings.concurrency, max_size=512)
    tune_queue(demo)  # queue() replaced the queue that build_study_ui tuned
    demo.max_upload_mb = settings.max_upload_mb  # read by launch()
    return demo


def launch(demo: gr.Blocks, **kwargs: object) -> None:
    """Start the server; host and port come from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT when set."""
    max_mb = getattr(demo, "max_upload_mb", 40)
    demo.launch(max_file_size=f"{max_mb}mb", footer_links=["api", "gradio"], **kwargs)
