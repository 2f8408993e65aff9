"""Gradio rater flow and organizer view.

The Space mounts the study inside a tab::

    with gr.Blocks() as demo:
        with gr.Tab("Study"):
            build_study_ui()

Rater links: ``?study=<id>&rater=<id>`` (also ``PROLIFIC_PID=...`` for Prolific, ``workerId=...`` for MTurk,
``code=...`` for invite codes). The same link resumes the open session after a reload.

Named API endpoints (callable with ``gradio_client``): ``/begin(study, rater, source)`` and
``/submit(score_value, slot_token)``. Both return :data:`OUTPUT_NAMES` in order (``slot`` is the token of
the item now shown, ``""`` when the session is over; ``done`` holds the completion code).
Per-rater state is a ``gr.State`` (server-side, one per page or client); every
submit is validated by :meth:`StudyService.submit` against the rater's stored assignment, so calling the API
directly cannot rate items that were not assigned, skip the viewing time or rate twice. The organizer
handlers are private and check the organizer token.
"""

from __future__ import annotations

import hmac
import os
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr

from user_study.config import DEFAULT_SCALE_LABELS, Settings
from user_study.hub import sink_from_env
from user_study.service import RaterView, StudyError, StudyService, SubmitRejected

__all__ = ["OUTPUT_NAMES", "build_demo", "build_study_ui", "get_service", "tune_queue"]

#: What ``/begin`` and ``/submit`` return over the API (gr.State and layout outputs are not part of it).
OUTPUT_NAMES = (
    "slot",
    "progress",
    "left_label",
    "left_image",
    "right_label",
    "right_image",
    "instruction",
    "score",
    "done",
)

_QUERY_SOURCES = (
    ("PROLIFIC_PID", "prolific"),
    ("workerId", "mturk"),
    ("code", "invite"),
    ("rater", "link"),
)
_SERVICES: dict[str, StudyService] = {}


def get_service(db_url: str | None = None) -> StudyService:
    """The shared :class:`StudyService` of this process for ``db_url`` (settings from the environment).

    One engine (connection pool) per database per process; it holds no per-rater data.
    """
    settings = Settings.from_env(db_url)
    svc = _SERVICES.get(settings.db_url)
    if svc is None:
        sink = sink_from_env(settings.data_dir, settings.hub_repo, settings.hf_token)
        svc = _SERVICES[settings.db_url] = StudyService.from_settings(settings, sink=sink)
    return svc


def _instructions(labels: dict[int, str], mode: str) -> str:
    if mode == "pairwise":
        return (
            "### Instructions\n"
            "You will see two renderings of the same photo. **Which one looks more like a real camera photo** "
            "(natural background blur, sharp subject, no artefacts)? Pick *Left*, *Right* or *No preference*.\n"
        )
    scale = "\n".join(f"| **{k}** | {labels[k]} |" for k in range(5))
    return (
        "### Instructions\n"
        "Each item shows a **rendered image** and the **target photo taken with a DSLR camera**, side by side "
        "(the side changes; the labels say which is which). Compare them, paying attention to the blur of the "
        "background and the sharpness of the subject, and rate **how different the rendered image looks from "
        "the target**:\n\n| score | meaning |\n|---|---|\n"
        f"{scale}\n\n"
        "Examples: if the two images look the same, choose **0**; if the rendered image has the right subject "
        "but its background blur looks clearly unlike the DSLR photo, choose **2-3**; if it looks like another "
        "photo altogether, choose **4**. Some items are checks: one may carry a written instruction — follow "
        "it. Please look at both images for a few seconds before answering.\n"
    )


def _min_view_note(min_view_ms: int) -> str:
    return (
        f"\n*Look at both images for at least {min_view_ms / 1000:.0f} s before you submit.*\n" if min_view_ms else ""
    )


def _view_updates(view: RaterView, svc: StudyService, note: str = "", *, layout: bool = False) -> tuple[Any, ...]:
    """Outputs in :data:`OUTPUT_NAMES` order, plus the rating column's visibility.

    Mid-session only plain values are returned (no ``gr.update`` of labels or visibility), because every
    property update makes Gradio rebuild the component's per-session config, which dominated the cost of a
    submit under load. ``layout=True`` (session start and end) also sets visibilities.
    """
    state = {
        "study_id": view.study_id,
        "rater_id": view.rater_id,
        "assignment_id": view.assignment_id,
        "position": view.position,
        "mode": view.mode,
    }
    if view.done or view.finished or not view.assignment_id:
        done = f"### {view.message}"
        if view.completion_code:
            done += f"\n\nYour completion code: **`{view.completion_code}`**"
            url = svc.study_config(view.study_id).completion_url
            if url:
                link = url.replace("{code}", view.completion_code)
                done += f"\n\n[Return to the crowd platform]({link})"
        if view.done and not view.finished:
            done += "\n\nClick **Start / resume** for another session."
        progress = f"Sessions completed: {view.sessions_done}"
        return (
            state,
            "",
            progress,
            "",
            None,
            "",
            None,
            "",
            None,
            gr.update(value=done, visible=True),
            gr.update(visible=False),
        )
    progress = f"**Item {view.position + 1} of {view.n_slots}**"
    if note:
        progress += f" — {note}"
    return (
        state,
        view.slot_token,
        progress,
        f"**{view.left_label}**",
        view.left_path,
        f"**{view.right_label}**",
        view.right_path,
        f"**{view.instruction}**" if view.instruction else "",
        None,
        gr.update(value="", visible=False) if layout else gr.skip(),
        gr.update(visible=True) if layout else gr.skip(),
    )


def _check_token(expected: str | None, given: str | None) -> None:
    if not expected:
        raise gr.Error("The organizer view is disabled: set BOKEH_ORGANIZER_TOKEN on the server.")
    if not given or not hmac.compare_digest(str(given).encode(), expected.encode()):
        raise gr.Error("Wrong organizer token.")


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


def build_study_ui(db_url: str | None = None, organizer_token: str | None = None) -> None:
    """Create the rater flow and the organizer view inside the currently open ``gr.Blocks`` context.

    Args:
        db_url: SQLAlchemy URL (default ``BOKEH_STUDY_DB`` or ``<BOKEH_DATA_DIR>/study.db``).
        organizer_token: Token of the organizer view (default ``BOKEH_ORGANIZER_TOKEN``; none = disabled).
    """
    demo = gr.context.Context.root_block
    if demo is None:
        raise RuntimeError("build_study_ui() must be called inside an open `with gr.Blocks():` context")
    tune_queue(demo)
    settings = Settings.from_env(db_url, organizer_token)
    svc = get_service(settings.db_url)
    media_root = (settings.data_dir / "studies").absolute()
    media_root.mkdir(parents=True, exist_ok=True)
    gr.set_static_paths([media_root])  # study images are served from disk, never copied per request
    token = settings.organizer_token

    st = gr.State({})
    header = gr.Markdown("## Bokeh rendering study")
    instructions = gr.Markdown(_instructions(dict(DEFAULT_SCALE_LABELS), "mos"))
    with gr.Row():
        study_box = gr.Textbox(label="Study", scale=1)
        rater_box = gr.Textbox(label="Your rater id / invite code", scale=2)
        source_box = gr.Textbox(value="link", visible=False)
        start_btn = gr.Button("Start / resume", variant="primary", scale=1)
    with gr.Column(visible=False) as rating_col:
        progress = gr.Markdown()
        instruction = gr.Markdown()
        with gr.Row(equal_height=True):
            with gr.Column():
                left_cap = gr.Markdown()
                left_img = gr.Image(show_label=False, interactive=False, height=420, buttons=["fullscreen"])
            with gr.Column():
                right_cap = gr.Markdown()
                right_img = gr.Image(show_label=False, interactive=False, height=420, buttons=["fullscreen"])
        score = gr.Radio(choices=[(str(k), k) for k in range(5)], label="Your rating")
        slot = gr.Textbox(visible=False)
        submit_btn = gr.Button("Submit rating", variant="primary")
    done_md = gr.Markdown(visible=False)
    outputs = [st, slot, progress, left_cap, left_img, right_cap, right_img, instruction, score, done_md, rating_col]

    def _choices(mode: str, labels: dict[int, str]) -> Any:
        if mode == "pairwise":
            return gr.update(
                choices=[("Left", 0), ("Right", 1), ("No preference", 2)],
                label="Which looks more like a real camera photo?",
            )
        return gr.update(
            choices=[(f"{k} — {labels[k]}", k) for k in range(5)],
            label="How different is the rendered image from the DSLR target?",
        )

    def init(request: gr.Request):
        params = dict(request.query_params) if request is not None else {}
        study = params.get("study", "")
        rater, source = "", "link"
        for key, src in _QUERY_SOURCES:
            if params.get(key):
                rater, source = params[key], src
                break
        head, instr, choices = "## Bokeh rendering study", gr.update(), gr.update()
        if study:
            try:
                cfg = svc.study_config(study)
                head = f"## {cfg.title}"
                instr = _instructions(cfg.scale_labels, cfg.mode) + _min_view_note(cfg.min_view_ms)
                if cfg.instructions_md:
                    instr += "\n" + cfg.instructions_md
                choices = _choices(cfg.mode, cfg.scale_labels)
            except StudyError as exc:
                head = f"## Unknown study\n{exc}"
        return study, rater, source, head, instr, choices

    def begin(study: str, rater: str, source: str, state: dict, profile: gr.OAuthProfile | None = None):
        """Start or resume the rater's session; returns the first pending item.

        The rater id comes from the link (or the box); when it is empty and the rater signed in with
        Hugging Face (Spaces with ``hf_oauth``), the username is used instead. Only its keyed hash is stored.
        """
        source = source if source in {s for _, s in _QUERY_SOURCES} else "link"
        if not str(rater or "").strip() and profile is not None and getattr(profile, "username", None):
            rater, source = profile.username, "hf_oauth"
        try:
            view = svc.begin(str(study or "").strip(), str(rater or ""), source)
            cfg = svc.study_config(view.study_id)
        except StudyError as exc:
            raise gr.Error(str(exc)) from None
        updates = list(_view_updates(view, svc, layout=True))
        updates[8] = _choices(cfg.mode, cfg.scale_labels)
        updates[8]["value"] = None
        return tuple(updates)

    def submit(score_value: Any, slot_token: str, state: dict):
        """Submit a rating for the current slot; returns the next item (or the completion code)."""
        rater_id = (state or {}).get("rater_id")
        if not rater_id:
            raise gr.Error("No session: open your study link (or click Start / resume) first.")
        if score_value is None or score_value == "":
            raise gr.Error("Choose a rating first.")
        try:
            result = svc.submit(rater_id, str(slot_token or ""), score_value)
        except SubmitRejected as exc:
            raise gr.Error(str(exc)) from None
        except StudyError as exc:
            raise gr.Error(str(exc)) from None
        note = "already recorded" if result.status == "duplicate" else ""
        return _view_updates(result.view, svc, note)

    demo.load(init, None, [study_box, rater_box, source_box, header, instructions, score], api_visibility="private")
    start_btn.click(begin, [study_box, rater_box, source_box, st], outputs, api_name="begin", concurrency_limit=None)
    submit_btn.click(submit, [score, slot, st], outputs, api_name="submit", concurrency_limit=None, trigger_mode="once")

    # ------------------------------------------------------------------ organizer view
    with gr.Accordion("Organizer", open=False):
        if not token:
            gr.Markdown("The organizer view is disabled: set `BOKEH_ORGANIZER_TOKEN` on the server.")
            return
        with gr.Row():
            tok = gr.Textbox(label="Organizer token", type="password")
            org_study = gr.Textbox(label="Study id")
            status_btn = gr.Button("Status")
            agg_btn = gr.Button("Results")
            export_btn = gr.Button("Export CSV")
        summary = gr.Markdown()
        per_method = gr.DataFrame(label="Progress per method", max_height=300)
        qc_table = gr.DataFrame(label="QC exclusions (failed checks)", max_height=300)
        mos_table = gr.DataFrame(label="MOS (lower is better)", max_height=300)
        chart = gr.Plot()
        export_file = gr.File(label="Export")

        def org_status(t: str, study: str):
            _check_token(token, t)
            try:
                info = svc.status(study.strip())
                frame = svc.ratings_frame(study.strip())
            except StudyError as exc:
                raise gr.Error(str(exc)) from None
            from user_study.report import qc_tables

            decisions, _ = qc_tables(svc, study.strip(), frame)
            failed = decisions[decisions["excluded"]] if len(decisions) else decisions
            s = info["sessions"]
            text = (
                f"**{info['n_ratings']}** ratings from **{info['n_raters']}** raters; sessions: "
                f"{s['open']} open, {s['completed']} completed, {s['expired']} expired; "
                f"manual exclusions: {info['excluded_manual']}; failed QC checks: {len(failed)}."
            )
            return text, info["per_method"], failed

        def org_results(t: str, study: str):
            _check_token(token, t)
            from user_study.report import compute_results, mos_figure

            try:
                res = compute_results(svc, study.strip(), rounds=200)
            except StudyError as exc:
                raise gr.Error(str(exc)) from None
            table = res["mos"] if res["mode"] == "mos" else res["bt"]
            return table, mos_figure(table, res["mode"])

        def org_export(t: str, study: str):
            _check_token(token, t)
            from user_study.report import export_ratings

            out = Path(tempfile.mkdtemp(prefix="study_export_")) / f"ratings_{study.strip()}.csv"
            try:
                export_ratings(svc, study.strip(), out, fmt="csv")
            except StudyError as exc:
                raise gr.Error(str(exc)) from None
            return str(out)

        status_btn.click(org_status, [tok, org_study], [summary, per_method, qc_table], api_visibility="private")
        agg_btn.click(org_results, [tok, org_study], [mos_table, chart], api_visibility="private")
        export_btn.click(org_export, [tok, org_study], [export_file], api_visibility="private")


def build_demo(db_url: str | None = None, organizer_token: str | None = None) -> gr.Blocks:
    """Standalone study app (tests, load benchmark, ``python -m user_study serve``)."""
    with gr.Blocks(title="Bokeh user study") as demo:
        build_study_ui(db_url, organizer_token)
    demo.queue(default_concurrency_limit=int(os.environ.get("BOKEH_STUDY_CONCURRENCY", "16")))
    tune_queue(demo)  # queue() builds a new queue object
    return demo
