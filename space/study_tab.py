"""Study tab: rater links and the organizer view (status, QC, results, export) of the user study.

Raters do not use Gradio: they get the dedicated page ``/rate?study=<id>&rater=<id>`` and its JSON API
(:mod:`user_study.rater_api`), served by the same server. :func:`build_study_ui` adds those routes to the app
the surrounding ``gr.Blocks`` launches (:func:`user_study.rater_api.mount_rater_routes`; old rater links
``/?study=...`` are redirected to the page):

    with gr.Blocks() as demo:
        with gr.Tab("Study"):
            build_study_ui()
    demo.launch()

The tab itself holds a link builder for rater links and the organizer view, unlocked by
``BOKEH_ORGANIZER_TOKEN``; wrong tokens are rate-limited per client. The export is a form that posts the token to
the rater API's organizer route, so no file is ever served from a public temp URL. :func:`build_demo` is the
Study tab alone as an app (tests, the load benchmark); ``python -m user_study serve`` serves the rater page
without Gradio.
"""

from __future__ import annotations

import hmac
import html
import logging
import os

import gradio as gr

from user_study.config import Settings
from user_study.rater_api import API_PREFIX, PAGE_PATH, mount_rater_routes, rater_link
from user_study.rater_limits import ApiLimits, RateLimiter, client_key
from user_study.service import StudyError, get_service

__all__ = ["build_demo", "build_study_ui", "tune_queue"]

log = logging.getLogger(__name__)
_TOKEN_TRIES = RateLimiter(ApiLimits.token_tries_per_min / 60.0, ApiLimits.token_burst)


def _check_token(expected: str | None, given: str | None, client: str = "local") -> None:
    if not expected:
        raise gr.Error("The organizer view is disabled: set BOKEH_ORGANIZER_TOKEN on the server.")
    if not given or not hmac.compare_digest(str(given).encode(), expected.encode()):
        wait = _TOKEN_TRIES.take(client)
        if wait > 0:
            raise gr.Error(f"Too many wrong organizer tokens: try again in {wait:.0f} s.")
        raise gr.Error("Wrong organizer token.")


def _refused(text: str) -> str:
    """An expected organizer mistake (wrong token, no study id): a toast, one log line, no traceback, and the text
    for the panel's message (outputs keep their values instead of turning into red "Error" badges)."""
    log.warning("study tab: refused: %s", text)
    shown = html.escape(text, quote=False)  # a toast and Markdown render HTML: a study id is shown as text
    gr.Warning(shown)
    return f"⚠ {shown}"


def _public_url(request: gr.Request | None, path: str) -> str:
    """``path`` as an absolute URL of this server, as the visitor's browser reached it (proxy headers first)."""
    headers = dict(getattr(request, "headers", None) or {})
    host = (headers.get("x-forwarded-host") or headers.get("host") or "").split(",")[0].strip()
    if not host:
        return path
    proto = (headers.get("x-forwarded-proto") or "").split(",")[0].strip() or (
        "https" if os.environ.get("SPACE_ID") else "http"
    )
    return f"{proto}://{host}{path}"


def _client(request: gr.Request | None) -> str:
    if request is None:
        return "local"
    hops = ApiLimits.from_env().trusted_proxy_hops
    return client_key(request.request, hops) if getattr(request, "request", None) is not None else "local"


def tune_queue(demo: gr.Blocks) -> None:
    """Recompute Gradio's queue analytics every 1000 events instead of after every event.

    Gradio 6.31 rebuilds a pandas frame of up to 10 000 past events after each event
    (``GRADIO_ANALYTICS_CACHE_FREQUENCY``, default 1), a cost that grows with traffic. An explicit
    environment setting is respected.
    """
    if "GRADIO_ANALYTICS_CACHE_FREQUENCY" in os.environ:
        return
    queue = getattr(demo, "_queue", None)
    if queue is not None and hasattr(queue, "ANAYLTICS_CACHE_FREQUENCY"):
        queue.ANAYLTICS_CACHE_FREQUENCY = 1000


_EXPORT_FORM = f"""
<form method="post" action="{API_PREFIX}/organizer/export" target="_blank" id="study-export-form"
      style="display:flex;gap:8px;flex-wrap:wrap;align-items:end">
  <label>Organizer token <input type="password" name="token" required autocomplete="off"></label>
  <label>Study id <input type="text" name="study" required></label>
  <label>Format <select name="format"><option value="csv">CSV</option><option value="jsonl">JSON lines</option>
  </select></label>
  <button type="submit">Download ratings</button>
</form>
"""


def build_study_ui(db_url: str | None = None, organizer_token: str | None = None) -> None:
    """Create the Study tab (rater links, organizer view) inside the currently open ``gr.Blocks`` context and
    mount the rater page and API on the app it launches (:func:`mount_rater_routes`).

    Args:
        db_url: SQLAlchemy URL (default ``BOKEH_STUDY_DB`` or ``<BOKEH_DATA_DIR>/study.db``).
        organizer_token: Token of the organizer view (default ``BOKEH_ORGANIZER_TOKEN``; none = disabled).
    """
    demo = gr.context.Context.root_block
    if demo is None:
        raise RuntimeError("build_study_ui() must be called inside an open `with gr.Blocks():` context")
    settings = Settings.from_env(db_url, organizer_token)
    svc = get_service(settings.db_url)
    mount_rater_routes(demo, settings.db_url, settings.organizer_token)
    token = settings.organizer_token

    gr.Markdown(
        "## User study\n"
        f"Raters rate on their own page, **[{PAGE_PATH}]({PAGE_PATH})**, one item per screen. Give each rater a "
        f"link `{PAGE_PATH}?study=<study id>&rater=<their id>`. Prolific: use "
        f"`{PAGE_PATH}?study=<id>&PROLIFIC_PID={{{{%PROLIFIC_PID%}}}}&STUDY_ID={{{{%STUDY_ID%}}}}&SESSION_ID="
        "{{%SESSION_ID%}}` and set the study's `completion_url`. MTurk: use the page as an ExternalQuestion "
        "URL; MTurk adds `workerId`, `assignmentId` and `turkSubmitTo`, and the page submits the HIT at the end.",
        elem_id="study-intro",
    )
    with gr.Row():
        link_study = gr.Textbox(label="Study id", scale=2, elem_id="study-link-id")
        link_btn = gr.Button("Rater link", scale=1)
    link_out = gr.Markdown(elem_id="study-link")

    def make_link(study: str, request: gr.Request = None) -> str:
        study = str(study or "").strip()
        if not study:
            return "Enter a study id."
        try:
            title = svc.study_config(study).title
        except StudyError:
            # escaped as text (not in a code span, where the entities would show literally)
            return f"No study with the id “{html.escape(study)}”."
        # absolute, to copy into a crowd platform; the page asks for the rater's id when the link has none
        url = _public_url(request, rater_link(study))
        # escaped: the id and title are shown as text, never as HTML
        return (
            f'**{html.escape(title)}**: <a href="{html.escape(url)}" target="_blank">{html.escape(url)}</a>'
            f"<br>Add <code>&amp;rater=…</code> with each rater's id to give everyone their own link; without it, "
            "raters type their id or invite code on the page."
        )

    link_btn.click(make_link, [link_study], [link_out], api_visibility="private")

    # ------------------------------------------------------------------ organizer view
    with gr.Accordion("Organizer", open=False):
        if not token:
            gr.Markdown("The organizer view is disabled: set `BOKEH_ORGANIZER_TOKEN` on the server.")
            return
        with gr.Row():
            tok = gr.Textbox(label="Organizer token", type="password", elem_id="study-org-token")
            org_study = gr.Textbox(label="Study id", elem_id="study-org-id")
            status_btn = gr.Button("Status", elem_id="study-status")
            agg_btn = gr.Button("Results", elem_id="study-results")
        summary = gr.Markdown(elem_id="study-summary")
        # hidden until there is something to show (empty tables show the headers "1 2 3", an empty chart axes)
        per_method = gr.DataFrame(label="Progress per method", max_height=300, visible=False, elem_id="study-progress")
        qc_table = gr.DataFrame(
            label="QC exclusions (failed checks)", max_height=300, visible=False, elem_id="study-qc"
        )
        mos_table = gr.DataFrame(label="MOS (lower is better)", max_height=300, visible=False, elem_id="study-mos")
        chart = gr.Plot(visible=False, elem_id="study-chart")
        gr.Markdown("**Export** (the file is built for this request and deleted on the server right after):")
        gr.HTML(_EXPORT_FORM)

        def org_status(t: str, study: str, request: gr.Request = None):
            try:
                _check_token(token, t, _client(request))
                if not str(study or "").strip():
                    raise StudyError("Enter the study id first.")
                info = svc.status(study.strip())
                frame = svc.ratings_frame(study.strip())
            except (gr.Error, StudyError) as exc:
                return _refused(str(getattr(exc, "message", exc))), gr.skip(), gr.skip()
            from user_study.report import qc_tables

            decisions, _ = qc_tables(svc, study.strip(), frame)
            failed = decisions[decisions["excluded"]] if len(decisions) else decisions
            s = info["sessions"]
            text = (
                f"**{info['n_ratings']}** ratings from **{info['n_raters']}** raters; sessions: "
                f"{s['open']} open, {s['completed']} completed, {s['expired']} expired; "
                f"manual exclusions: {info['excluded_manual']}; failed QC checks: {len(failed)}."
            )
            return (
                text,
                gr.update(value=info["per_method"], visible=len(info["per_method"]) > 0),
                gr.update(value=failed, visible=len(failed) > 0),
            )

        def org_results(t: str, study: str, request: gr.Request = None):
            from user_study.report import compute_results, mos_figure

            try:
                _check_token(token, t, _client(request))
                if not str(study or "").strip():
                    raise StudyError("Enter the study id first.")
                res = compute_results(svc, study.strip(), rounds=200)
            except (gr.Error, StudyError) as exc:
                return _refused(str(getattr(exc, "message", exc))), gr.skip(), gr.skip()
            table = res["mos"] if res["mode"] == "mos" else res["bt"]
            if not len(table):  # no chart with empty axes: say that there is nothing yet
                return "No ratings to analyse yet.", gr.update(visible=False), gr.update(visible=False)
            return (
                gr.skip(),
                gr.update(value=table, visible=True),
                gr.update(value=mos_figure(table, res["mode"]), visible=True),
            )

        status_btn.click(org_status, [tok, org_study], [summary, per_method, qc_table], api_visibility="private")
        agg_btn.click(org_results, [tok, org_study], [summary, mos_table, chart], api_visibility="private")


def build_demo(db_url: str | None = None, organizer_token: str | None = None) -> gr.Blocks:
    """Standalone study app: the Study tab plus the rater page (tests, ``benchmarks/study_load.py``)."""
    with gr.Blocks(title="Bokeh user study") as demo:
        build_study_ui(db_url, organizer_token)
    demo.queue(default_concurrency_limit=int(os.environ.get("BOKEH_STUDY_CONCURRENCY", "16")))
    tune_queue(demo)  # queue() builds a new queue object
    return demo
