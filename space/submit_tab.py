"""Portal tab: the public leaderboard of submitted methods, the submission form and organizer actions.

On a Hugging Face Space (``SYSTEM=spaces``, ``hf_oauth: true`` in the README front matter) submitters sign in
with ``gr.LoginButton`` and handlers receive their ``gr.OAuthProfile``. Elsewhere there is no sign-in: the form
asks for the organizer token (``BOKEH_ORGANIZER_TOKEN``) and a submitter name. Scoring runs in the portal's
background worker; the form polls the submitter's progress with a timer that is on only while something waits.
"""

from __future__ import annotations

import html
import os
import threading
from collections.abc import Callable
from typing import Any

import gradio as gr
import pandas as pd

from bokeh_model.errors import BokehError
from evaluation.portal import (
    DuplicateSubmission,
    Portal,
    PortalError,
    PortalSettings,
    SubmissionMeta,
    SubmissionRefused,
    Submitter,
)
from evaluation.portal.board import PAPER_COLUMNS

__all__ = ["build_portal_board", "build_portal_tab", "get_portal", "portal_closed_reason"]

LICENCES = ["MIT", "Apache-2.0", "BSD-3-Clause", "CC BY 4.0", "CC BY-NC-SA 4.0", "GPL-3.0", "other (say in notes)"]
SORTS = [("PSNR ↑", "psnr"), ("SSIM ↑", "ssim"), ("LPIPS ↓", "lpips"), ("Runtime s", "runtime")]
MINE_COLUMNS = ["Id", "Method", "Submitted", "Status", "Progress", "Visibility", "PSNR (pynet)", "PSNR (dmshn)"]
_portal_lock = threading.Lock()
_portal: Portal | None = None


def get_portal() -> Portal:
    """The process-wide portal from the environment, with its scoring worker started (built once)."""
    global _portal
    with _portal_lock:
        if _portal is None:
            _portal = Portal(PortalSettings.from_env())
            if _portal.configured:
                _portal.start_worker()
        return _portal


def portal_closed_reason(portal: Portal) -> str:
    """Why the portal takes no submissions, in one line for visitors (the setup recipe is in the README)."""
    return portal.not_configured_reason().split(":", 1)[0].rstrip(".") + "."


def _esc(text: Any) -> str:
    """User text shown in Markdown (file names, method names): no HTML gets through."""
    return html.escape(str(text), quote=False)


def _submitter(profile: gr.OAuthProfile | None, login: bool, token: str, name: str, portal: Portal) -> Submitter:
    if login:
        if profile is None:
            raise PortalError("sign in with Hugging Face first (the button above the form)")
        return Submitter(profile.username, getattr(profile, "name", "") or "", via="oauth")
    portal.check_organizer(token)
    name = " ".join(str(name or "").split())
    if not name:
        raise PortalError("give the submitter's name (it is recorded with the submission)")
    return Submitter(name, name, via="organizer")


def _progress_html(statuses: list[dict[str, Any]]) -> str:
    active = [s for s in statuses if s["status"] in ("queued", "running")]
    if not active:
        done = [s for s in statuses if s["status"] in ("scored", "failed", "cancelled")]
        if not done:
            return ""
        last = done[-1]
        if last["status"] == "failed":
            return f"❌ **{_esc(last['id'])} failed:** {_esc(last['message'])}"
        if last["status"] == "scored":
            return f"✅ **{_esc(last['id'])} is scored** and listed on the leaderboard (Leaderboard tab, Refresh)."
        return f"{_esc(last['id'])}: {last['status']}"
    status = active[0]
    if status["status"] == "queued":
        ahead = status["queue_position"]
        text = f"⏳ {_esc(status['id'])}: waiting in the queue ({ahead} ahead)"
    else:
        text = f"⚙️ {_esc(status['id'])}: {_esc(status['stage'])}"
    percent = round(100 * status["progress"])
    return f'<progress value="{percent}" max="100"></progress> {percent}% — {text}'


VIEW_COLUMNS = ["#", "Method", "PSNR ↑", "SSIM ↑", "LPIPS ↓", "Runtime s", "Hardware", "Depth", "Extra data"]
VIEW_COLUMNS += ["Authors", "Licence", "Source", "Id"]
_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_{}[]()#+-.!|<>"})


def _board_view(frame: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard for the page: the method name links to its paper or code (user text escaped)."""
    view = frame.rename(columns={"Rank": "#", "Uses depth": "Depth"})
    names = [html.escape(str(m)).translate(_MD_SPECIAL) for m in frame["Method"]]
    links = [str(link).replace("(", "%28").replace(")", "%29") for link in frame["Link"]]
    view["Method"] = [f"[{name}]({link})" if link else name for name, link in zip(names, links, strict=True)]
    return view[VIEW_COLUMNS]


def _mine_frame(statuses: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for s in statuses:
        profiles = s.get("profiles", {})
        rows.append(
            {
                "Id": s["id"],
                "Method": s["method"],
                "Submitted": s["submitted_at"][:16].replace("T", " "),
                "Status": s["status"] + (f": {s['message']}" if s["message"] else ""),
                "Progress": f"{round(100 * s['progress'])}%",
                "Visibility": s["visibility"],
                "PSNR (pynet)": f"{profiles['pynet']['psnr']:.2f}" if "pynet" in profiles else "–",
                "PSNR (dmshn)": f"{profiles['dmshn']['psnr']:.2f}" if "dmshn" in profiles else "–",
            }
        )
    return pd.DataFrame(rows, columns=MINE_COLUMNS)


def build_portal_board(portal: Portal | None = None) -> Callable[[Any], None]:
    """The portal's public leaderboard (submitted methods beside our measured rows, filters, the paper's rows in
    their own block), built inside the current Blocks: the Leaderboard tab shows it.

    Returns a function that makes another event (e.g. selecting the tab) refresh it.
    """
    portal = portal or get_portal()

    def board(profile: str, sort_label: str, depth: str, hardware: str) -> tuple[pd.DataFrame, pd.DataFrame, str]:
        sort_key = dict(SORTS).get(sort_label or "", "psnr")
        frame, paper, notes = portal.leaderboard(
            profile or "pynet", sort_by=sort_key, uses_depth=depth or "any", hardware=hardware or ""
        )
        frame = _board_view(frame)
        text = "\n".join(f"- {_esc(n)}" for n in notes)
        if portal.pull_error:
            text += f"\n- ⚠️ {_esc(portal.pull_error)}; showing what this server has."
        if portal.store.last_push_error:
            text += f"\n- ⚠️ The results repo could not be updated yet ({_esc(portal.store.last_push_error)}); retrying."
        return frame, paper, text

    with gr.Row():
        profile = gr.Radio(["pynet", "dmshn"], value="pynet", label="Metric profile", elem_id="portal-profile")
        sort = gr.Dropdown([s for s, _ in SORTS], value="PSNR ↑", label="Sort by", elem_id="portal-sort")
        depth = gr.Radio(["any", "yes", "no"], value="any", label="Uses depth", elem_id="portal-depth")
        hardware = gr.Textbox(label="Hardware contains", placeholder="e.g. A100", elem_id="portal-hardware")
    first_board, first_paper, first_notes = board("pynet", "PSNR ↑", "any", "")
    table = gr.DataFrame(
        first_board,
        headers=VIEW_COLUMNS,
        datatype=["number", "markdown"] + ["str"] * (len(VIEW_COLUMNS) - 2),
        column_widths=["44px", "150px", "80px", "84px", "84px", "96px", "130px", "72px", "96px"]
        + ["160px", "110px", "360px", "230px"],
        interactive=False,
        wrap=True,
        label="Submitted and measured methods",
        elem_id="portal-board",
        buttons=["copy", "fullscreen"],
    )
    notes = gr.Markdown(first_notes, elem_id="portal-notes")
    refresh = gr.Button("Refresh", elem_id="portal-refresh")
    with gr.Accordion("Reported in the paper (Table 1; different test set, not comparable)", open=False):
        paper = gr.DataFrame(first_paper, headers=PAPER_COLUMNS, interactive=False, elem_id="portal-paper")
    inputs = [profile, sort, depth, hardware]
    for trigger in (refresh.click, profile.change, sort.change, depth.change, hardware.submit):
        trigger(board, inputs, [table, paper, notes], api_visibility="private")

    def refresh_on(trigger: Any) -> None:
        trigger(board, inputs, [table, paper, notes], api_visibility="private")

    return refresh_on


def build_portal_tab(*, portal: Portal | None = None, login: bool | None = None) -> None:
    """Build the Portal tab (submission form with sign-in, progress, organizer actions) inside the current Blocks
    (``portal``/``login`` are for tests); the leaderboard itself is :func:`build_portal_board`."""
    portal = portal or get_portal()
    login = (os.environ.get("SYSTEM") == "spaces") if login is None else login
    # Gradio reads "<n>mb" as n MiB; build_app raises the server's limit to the portal's archive limit, so the
    # archive limit is what a submitter can send (both in MiB, as the portal's own checks report sizes).
    archive_mib = portal.settings.limits.max_archive_bytes >> 20
    splits = list(portal.settings.splits)

    def who(profile: gr.OAuthProfile | None) -> str:
        if not login:
            return "Off a Space there is no sign-in: organizers submit with their token and the submitter's name."
        if profile is None:
            return "**Sign in with Hugging Face** to submit; your username is shown with your row."
        return f"Signed in as **@{_esc(profile.username)}**."

    def mine(profile: gr.OAuthProfile | None, name: str) -> tuple[pd.DataFrame, str, Any, Any]:
        user = profile.username if (login and profile is not None) else (" ".join(str(name or "").split()))
        statuses = portal.my_submissions(user) if user else []
        pending = any(s["status"] in ("queued", "running") for s in statuses)
        ids = [s["id"] for s in statuses if s["visibility"] == "public"]
        return (
            _mine_frame(statuses),
            _progress_html(statuses),
            gr.Timer(active=pending),
            gr.Dropdown(choices=ids, value=ids[-1] if ids else None),
        )

    intro = (
        "### Submit your method to the EBB! Val294 leaderboard\n"
        "Upload a **.zip of predictions** named `<id>.png` or `<id>.jpg` (ids 4400–4693 for `val294`, each the "
        "size of its target, 8-bit RGB). The portal checks the archive, then scores it under **both** metric "
        "profiles (`pynet`: the authors' protocol; `dmshn`: published Val294 tables) with the same code as "
        "`python evaluation/run.py`, and lists it. One submission may wait at a time; "
        f"{portal.settings.per_day} per 24 hours. Hardware and runtime are shown as you report them."
    )
    intro += f" Archives up to {archive_mib:,} MiB are accepted."
    with gr.Tabs():
        with gr.Tab("Submit", id="portal-submit") as submit_tab:
            if not portal.configured:  # said first, and the form below is disabled (not a late refusal)
                gr.Markdown(
                    f"⚠️ **Submissions are closed here:** {portal_closed_reason(portal)}", elem_id="portal-closed"
                )
            gr.Markdown(intro)
            if login:
                gr.LoginButton(elem_id="portal-login")
            whoami = gr.Markdown(who(None) if not login else "", elem_id="portal-who")
            with gr.Row(visible=not login):
                token = gr.Textbox(label="Organizer token", type="password", elem_id="portal-token")
                submitter_name = gr.Textbox(label="Submitter name", elem_id="portal-submitter")
            with gr.Row():
                method = gr.Textbox(label="Method name", max_length=80, elem_id="portal-method")
                authors = gr.Textbox(label="Authors", max_length=300, elem_id="portal-authors")
                link = gr.Textbox(label="Paper or code link", placeholder="https://…", elem_id="portal-link")
            with gr.Row():
                hardware_in = gr.Textbox(label="Hardware (as you measured runtime)", elem_id="portal-hw")
                # A Textbox, not a Number: an empty Number sends 0, which would read as a reported runtime.
                runtime = gr.Textbox(
                    label="Runtime, s per image (as reported)", placeholder="e.g. 0.05", elem_id="portal-runtime"
                )
                licence = gr.Dropdown(
                    LICENCES, label="Licence", allow_custom_value=True, value=None, elem_id="portal-licence"
                )
                split = gr.Dropdown(splits, value=splits[0], label="Split", elem_id="portal-split")
            with gr.Row():
                with gr.Column(min_width=240):
                    uses_depth = gr.Checkbox(label="Uses a depth map", elem_id="portal-uses-depth")
                    extra_data = gr.Checkbox(
                        label="Trained on data beyond EBB! train (ids 0–4399)", elem_id="portal-extra"
                    )
                extra_note = gr.Textbox(label="Which extra data", min_width=240, elem_id="portal-extra-note")
            upload = gr.File(label="Predictions (.zip)", file_types=[".zip"], type="filepath", elem_id="portal-file")
            send = gr.Button("Submit for scoring", variant="primary", elem_id="portal-send")
            report = gr.Markdown(elem_id="portal-report")
            progress = gr.Markdown(elem_id="portal-progress")
            mine_table = gr.DataFrame(
                pd.DataFrame(columns=MINE_COLUMNS), interactive=False, label="Your submissions", elem_id="portal-mine"
            )
            with gr.Row():
                withdraw_id = gr.Dropdown([], label="Withdraw a submission", elem_id="portal-withdraw-id")
                withdraw = gr.Button("Withdraw from the leaderboard", variant="stop", elem_id="portal-withdraw")
            timer = gr.Timer(1.5, active=False)
            watch = [mine_table, progress, timer, withdraw_id]
            if not portal.configured:
                form = [token, submitter_name, method, authors, link, hardware_in, runtime, licence, split]
                form += [uses_depth, extra_data, extra_note, upload, send, withdraw_id, withdraw]
                for component in form:
                    component.interactive = False

            def submit(
                file: str | None,
                method_v: str,
                authors_v: str,
                link_v: str,
                hardware_v: str,
                runtime_v: str,
                licence_v: str | None,
                split_v: str,
                depth_v: bool,
                extra_v: bool,
                note_v: str,
                token_v: str,
                name_v: str,
                profile: gr.OAuthProfile | None,
            ) -> tuple[Any, ...]:
                try:
                    who_submits = _submitter(profile, login, token_v, name_v, portal)
                    meta = SubmissionMeta(
                        method=method_v,
                        authors=authors_v,
                        license=licence_v or "",
                        link=link_v,
                        hardware=hardware_v,
                        runtime_s=runtime_v,
                        uses_depth=depth_v,
                        extra_data=extra_v,
                        extra_data_note=note_v,
                    ).validated()
                    if not file:
                        raise PortalError("choose the .zip of predictions to upload first")
                    sub_id = portal.submit(file, meta, who_submits, split=split_v)
                    text = f"✅ Accepted as **{_esc(sub_id)}** and queued for scoring."
                except DuplicateSubmission as exc:  # a double click: the first one counts
                    text = f"✅ Accepted as **{_esc(exc.sub_id)}** and queued for scoring (sent twice, counted once)."
                except SubmissionRefused as exc:
                    text = "❌ " + _esc(exc.report.render())
                except BokehError as exc:  # PortalError, or the dataset cannot be opened here
                    text = f"❌ {_esc(exc)}"
                return (text, *mine(profile, name_v))

            send.click(
                submit,
                [upload, method, authors, link, hardware_in, runtime, licence, split, uses_depth, extra_data]
                + [extra_note, token, submitter_name],
                [report, *watch],
                api_visibility="private",
                concurrency_limit=2,
            )
            timer.tick(mine, [submitter_name], watch, api_visibility="private")
            submit_tab.select(who, None, whoami, api_visibility="private").then(
                mine, [submitter_name], watch, api_visibility="private"
            )

            def do_withdraw(sub_id: str | None, token_v: str, name_v: str, profile: gr.OAuthProfile | None) -> Any:
                try:
                    if not sub_id:
                        raise PortalError("choose one of your submissions first")
                    portal.withdraw(sub_id, _submitter(profile, login, token_v, name_v, portal))
                    text = f"{_esc(sub_id)} is withdrawn: it no longer shows on the leaderboard (kept in the log)."
                except PortalError as exc:
                    text = f"❌ {_esc(exc)}"
                return (text, *mine(profile, name_v))

            withdraw.click(
                do_withdraw, [withdraw_id, token, submitter_name], [report, *watch], api_visibility="private"
            )

        with gr.Tab("Organizers", id="portal-organizers"):
            gr.Markdown(
                "Hide a row with a reason (it stays in the results repo and the audit log, and can be shown "
                "again). Needs the organizer token. Command line: `python -m evaluation.submit --help`."
            )
            with gr.Row():
                org_token = gr.Textbox(label="Organizer token", type="password", elem_id="portal-org-token")
                org_id = gr.Textbox(label="Submission id", elem_id="portal-org-id")
                org_reason = gr.Textbox(label="Reason", elem_id="portal-org-reason")
            with gr.Row():
                hide = gr.Button("Hide", variant="stop", elem_id="portal-hide")
                unhide = gr.Button("Show again", elem_id="portal-unhide")
            org_result = gr.Markdown(elem_id="portal-org-result")
            # hidden while empty (an empty DataFrame shows the headers "1 2 3")
            audit = gr.DataFrame(interactive=False, label="Audit log", visible=False, elem_id="portal-audit")

            def organizer(action: str, token_v: str, sub_id: str, reason: str) -> tuple[str, Any]:
                try:
                    getattr(portal, action)(sub_id.strip(), reason, token_v)
                    text = f"{_esc(sub_id)}: {'hidden' if action == 'hide' else 'shown again'}."
                except PortalError as exc:
                    text = f"❌ {_esc(exc)}"
                    if "organizer" in str(exc):
                        return text, gr.update(value=pd.DataFrame(), visible=False)
                log = pd.DataFrame(portal.store.audit_log()).fillna("")
                return text, gr.update(value=log, visible=len(log) > 0)

            hide.click(
                lambda *a: organizer("hide", *a),
                [org_token, org_id, org_reason],
                [org_result, audit],
                api_visibility="private",
            )
            unhide.click(
                lambda *a: organizer("unhide", *a),
                [org_token, org_id, org_reason],
                [org_result, audit],
                api_visibility="private",
            )
