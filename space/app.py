"""The Space: builds the Gradio Blocks app from the tab modules; ``launch`` starts it."""

from __future__ import annotations

import logging
import os
import threading
import warnings

import gradio as gr

from .arena_tab import ARENA_CSS, build_arena_tab
from .compare_tab import build_compare_tab
from .config import SpaceSettings
from .fetching import start_background_fetch
from .leaderboard_tab import CSS as LEADERBOARD_CSS
from .leaderboard_tab import build_leaderboard_tab
from .render_tab import build_render_tab
from .status_tab import build_status_tab, follow_model_changes, status_banner
from .study_tab import build_study_ui, tune_queue
from .submit_tab import build_portal_board, build_portal_tab, get_portal, portal_closed_reason

__all__ = ["build_app", "launch"]

INTRO = """# Natural camera bokeh: PyNET-Bokeh and its competitors
PyNET-Bokeh (Ignatov, Patel, Timofte, CVPRW 2020) learns a Canon 50mm f/1.8's depth of field from the EBB!
dataset; here it runs beside renderers that blur a photo from its depth map. **Click on the photo** to focus."""

# Layout: photo, result and Render button above the fold at 1366x768; on a phone (390x844) the photo and the
# result are stacked at a smaller height so that both fit on the first screen.
CSS = """
#intro h1 { font-size: 1.45rem; margin: 0 0 .2rem 0; }
#intro p { font-size: .9rem; margin: 0; }
#status-banner p { font-size: .82rem; margin: 0; }
.gradio-container { padding-top: .4rem !important; }
#render-message p { font-size: .9rem; margin: 0; }
#method-note p { font-size: .85rem; margin: 0; }
#compare-gallery .grid-wrap { height: auto !important; max-height: none !important; overflow-y: visible !important; }
#compare-gallery .caption-label { white-space: normal !important; overflow: visible !important;
  text-overflow: clip !important; max-width: 100% !important; }
#compare-table td, #compare-table th { overflow-wrap: anywhere; }  /* long method names in a narrow column */
#photo-note p { font-size: .9rem; margin: 0; color: var(--error-text-color, #b91c1c); }
@media (max-width: 640px) {
  #intro p { display: none; }
  #status-banner p { font-size: .72rem; line-height: 1.25; }
  #intro h1 { font-size: 1.05rem; }
  #photo, #result, #depth_view { height: 250px !important; max-height: 250px !important; }
  #photo img, #result img, #depth_view img { max-height: 220px !important; }
  #compare-gallery .caption-label { font-size: .7rem !important; padding: 1px 4px !important; }
  /* two pictures a row: three made each ~95 px wide, its caption over a third of it (seen with 9 methods) */
  #compare-gallery .grid-container { grid-template-columns: repeat(2, minmax(0, 1fr)) !important; }
}
"""


def _initial_tab(request: gr.Request) -> gr.Tabs:
    params = dict(request.query_params) if request is not None else {}
    return gr.Tabs(selected="study") if params.get("study") else gr.Tabs()


def _warm_up_renderers() -> None:
    # The lens renderer's CPU kernels are compiled by Numba on first use (10-30 s, then cached on disk):
    # do it in the background at start-up rather than in the first visitor's request.
    from bokeh_model.methods.bokehme import warm_up as warm_up_bokehme
    from bokeh_model.methods.lens import warm_up

    warm_up()
    warm_up_bokehme()
    # PyNET's fastest CPU backend may need a one-off ONNX export (tens of seconds, then cached on disk): build it
    # now when weights are installed, not in the first visitor's render.
    from bokeh_model import create_method

    pynet = create_method("pynet")
    if pynet.availability()[0]:
        try:
            pynet.prepare()
        except Exception:  # noqa: BLE001 - a failed warm-up only costs the first render its time; it is logged
            logging.getLogger(__name__).exception("PyNET backend warm-up failed")


def build_app(settings: SpaceSettings | None = None) -> gr.Blocks:
    """Build (not launch) the app; tests call this directly."""
    settings = settings or SpaceSettings.from_env()
    threading.Thread(target=_warm_up_renderers, name="warm-up", daemon=True).start()
    start_background_fetch(settings)  # on a Space (SPACE_ID) or with BOKEH_FETCH_MODELS=1; serves meanwhile
    with warnings.catch_warnings():
        # css in Blocks() (deprecated for launch()) so that every way of launching, tests included, gets it
        warnings.simplefilter("ignore")
        blocks = gr.Blocks(title="PyNET-Bokeh: natural camera bokeh", css=CSS + LEADERBOARD_CSS + ARENA_CSS)
    with blocks as demo:
        gr.Markdown(INTRO, elem_id="intro")
        # Evaluated again at every page load (below): models fetched in the background change it without a restart.
        banner = gr.Markdown(status_banner(settings), elem_id="status-banner")
        with gr.Tabs() as tabs:
            with gr.Tab("Render", id="render"):
                shared = build_render_tab(settings)
            with gr.Tab("Compare", id="compare"):
                build_compare_tab(settings, shared)
            with gr.Tab("Arena", id="arena"):
                build_arena_tab(settings, demo)  # also serves /arena-api/v1
            with gr.Tab("Leaderboard", id="leaderboard") as leaderboard_tab:
                build_leaderboard_tab(settings)
                gr.Markdown("### Submitted methods: the evaluation portal", elem_id="portal-board-title")
                portal = get_portal()
                if portal.configured:
                    build_portal_board(portal)(leaderboard_tab.select)  # fresh rows whenever the tab is opened
                else:
                    gr.Markdown(
                        f"The evaluation portal is not open on this server: {portal_closed_reason(portal)} "
                        "The Portal tab explains how researchers submit."
                    )
            with gr.Tab("Portal", id="portal"):
                build_portal_tab()
            with gr.Tab("Study", id="study"):
                build_study_ui(db_url=settings.study_db, organizer_token=settings.organizer_token)
            with gr.Tab("Status", id="status"):
                build_status_tab(settings)
        follow_model_changes(demo, settings, banner, shared.get("method"))  # models fetched while running
        # A rater link (?study=...) opens the Study tab directly.
        demo.load(_initial_tab, None, tabs, api_visibility="private")
        demo.load(lambda: status_banner(settings), None, banner, api_visibility="private")
    # Renders share `concurrency` slots; the study's own handlers have no limit (they are cheap and many raters
    # may submit at once), and the queue is long enough for a crowd of raters.
    demo.queue(default_concurrency_limit=settings.concurrency, max_size=512)
    tune_queue(demo)  # queue() builds a new queue object
    # read by launch(); Gradio has one upload limit for every component, so it must admit a portal submission
    # (a val294 zip of PNGs is a few hundred MB) when the portal is configured. Photos are checked on arrival.
    portal_mb = int(os.environ.get("BOKEH_PORTAL_MAX_MB", "1536")) if os.environ.get("BOKEH_PORTAL_DATASET") else 0
    demo.max_upload_mb = max(settings.max_upload_mb, portal_mb)
    return demo


def launch(demo: gr.Blocks, **kwargs: object) -> None:
    """Start the server; host and port come from GRADIO_SERVER_NAME / GRADIO_SERVER_PORT when set."""
    max_mb = getattr(demo, "max_upload_mb", 64)
    demo.launch(max_file_size=f"{max_mb}mb", footer_links=["api", "gradio"], **kwargs)
