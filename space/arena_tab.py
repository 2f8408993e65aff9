"""Arena tab: the visitor's own photo rendered by two methods drawn by the server, shown as A and B without
names; the visitor votes (A better / B better / tie / both bad), the names appear, "Next pair" draws another.

Everything that decides (which pair, when a vote counts, the board) is in :mod:`user_study.arena`; this module
only converts page values. Both renders share one depth map from :mod:`space.services` (the depth model, or the
labelled approximate depth, as the Render tab). The photo is never stored unless the consent box is ticked.
The same arena is served as JSON at ``/arena-api/v1`` (mounted here with this tab's renderer).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import pandas as pd

from bokeh_model import BokehError
from bokeh_model.depth import focus_disparity_at
from user_study.arena.api import mount_arena_routes
from user_study.arena.guards import guards_for
from user_study.arena.leaderboard import client_flags, heatmap_figure, pair_table
from user_study.arena.render import RenderedPair, to_uint8
from user_study.arena.service import ArenaRefused, ArenaService, get_arena_service, photo_sha256
from user_study.rater_limits import ApiLimits, client_key

from .config import SpaceSettings
from .controls import photo_input
from .render_tab import example_paths, readable
from .services import compute_depth, get_method, method_infos, photo_size_problem, prepare_photo, render_photo

__all__ = ["ARENA_CSS", "SpaceRenderer", "add_arena_column", "arena_board_frame", "build_arena_tab"]

log = logging.getLogger(__name__)

ARENA_HEIGHT = 330  # px: A and B side by side with the vote buttons above the fold at 1366x768
CHOICE_LABELS = {"a": "A is better", "b": "B is better", "tie": "Tie", "bad": "Both bad"}
# On a phone (390x844) the photo, A and B stack; each is smaller so both renders fit within about two screens.
ARENA_CSS = """
#arena-intro p { font-size: .9rem; margin: 0; }
#arena-message p, #arena-reveal p { font-size: .95rem; margin: 0; }
@media (max-width: 640px) {
  #arena-intro { display: none; }
  #arena-photo { height: 200px !important; max-height: 200px !important; }
  #arena-a, #arena-b { height: 260px !important; max-height: 260px !important; }
  #arena-a img, #arena-b img { max-height: 230px !important; }
  #arena-votes button { min-width: 40% !important; }
}
"""
QUESTION = "Which one looks more like a real camera's background blur? Look at both, then vote."


class SpaceRenderer:
    """Both methods with one depth map from the Space's services (depth model or its labelled fallback)."""

    def __init__(self, settings: SpaceSettings) -> None:
        self.settings = settings

    def methods(self) -> list[str]:
        return sorted(info.name for info in method_infos(self.settings) if info.available)

    def render(self, photo: np.ndarray, focus_xy: tuple[int, int], names: tuple[str, str]) -> RenderedPair:
        depth = compute_depth(photo, "auto", self.settings, focus_xy=focus_xy)
        images, params = [], {}
        for name in names:
            method = get_method(name, self.settings.pynet_weights)
            given: dict[str, Any] = {}
            if "focus_disparity" in method.param_names():
                given["focus_disparity"] = round(focus_disparity_at(depth.depth, *focus_xy), 4)
            params[name] = {
                k: v for k, v in method.validate_params(given).items() if isinstance(v, (bool, int, float, str))
            }
            result = render_photo(photo, name, self.settings, focus_xy=focus_xy, depth=depth)
            images.append(to_uint8(result.preview if result.preview is not None else result.image))
        return RenderedPair((images[0], images[1]), depth.label, params)


def _fmt(value: Any, digits: int = 0) -> str:
    return "—" if value is None or (isinstance(value, float) and not np.isfinite(value)) else f"{value:.{digits}f}"


def arena_board_frame(service: ArenaService, methods: list[str] | None = None) -> tuple[pd.DataFrame, str]:
    """The board for the page (display strings) and a line saying what went into it, from the votes now."""
    board, info = service.leaderboard(methods)
    rows = [
        {
            "Rank": "" if r["rank"] is None or pd.isna(r["rank"]) else int(r["rank"]),
            "Method": r["method"],
            "Strength (BT)": _fmt(r["strength"]),
            "95% CI": f"{_fmt(r['ci_low'])} – {_fmt(r['ci_high'])}" if r["votes"] else "—",
            "Votes": int(r["votes"]),
            "Win rate": "—" if not r["votes"] else f"{r['win_rate']:.0%}",
        }
        for r in board.to_dict("records")
    ]
    note = (
        f"{info['votes']} vote(s). Bradley–Terry strengths (Elo-like scale, mean 1000; ties and 'both bad' count "
        f"half to each side) with bootstrap 95% intervals; a method is ranked after {info['min_votes_for_rank']} "
        "votes (preliminary before)."
    )
    if info["flagged_clients"]:
        note += f" {info['flagged_votes_left_out']} vote(s) of {info['flagged_clients']} visitor(s) who always "
        note += "picked the same side are left out."
    return pd.DataFrame(rows, columns=["Rank", "Method", "Strength (BT)", "95% CI", "Votes", "Win rate"]), note


def add_arena_column(table: pd.DataFrame, db_url: str | None) -> pd.DataFrame:
    """``table`` (the Leaderboard tab's, with a ``Method`` column) with an ``Arena`` column from the stored votes
    at the time of the call: strength and 95 % interval, or the votes so far while below the minimum."""
    if table is None or "Method" not in getattr(table, "columns", []):
        return table
    try:
        board, info = get_arena_service(db_url).leaderboard()
    except Exception:  # noqa: BLE001 - the board must still show its measured columns if the arena cannot be read
        log.exception("arena leaderboard unavailable")
        return table
    by_name = {r["method"]: r for r in board.to_dict("records")}

    def cell(name: Any) -> str:
        r = by_name.get(str(name))
        if r is None or not r["votes"]:
            return ""
        if r["rank"] is None or pd.isna(r["rank"]):
            return f"{int(r['votes'])} votes (needs {info['min_votes_for_rank']})"
        return f"{r['strength']:.0f} [{r['ci_low']:.0f}, {r['ci_high']:.0f}]"

    out = table.copy()
    columns = list(out.columns)
    out.insert(columns.index("Source") if "Source" in columns else len(columns), "Arena", out["Method"].map(cell))
    return out


def _client(request: gr.Request | None, service: ArenaService) -> tuple[str, str]:
    key = client_key(request, ApiLimits.from_env().trusted_proxy_hops) if request is not None else "unknown"
    return key, service.client_hash(key)


def build_arena_tab(settings: SpaceSettings, demo: gr.Blocks) -> None:
    """The tab's components and handlers; also mounts ``/arena-api/v1`` on ``demo``."""
    service = get_arena_service(settings.study_db)
    renderer = SpaceRenderer(settings)
    mount_arena_routes(demo, renderer, settings.study_db)
    guards = guards_for(service, service.config)
    max_side = min(settings.max_render_side, service.config.max_side)

    gr.Markdown(
        "**Bokeh Arena.** Upload a photo (or pick an example) and **click the subject**. Two methods, drawn at "
        "random, blur it with the same depth map; their names are shown after you vote.",
        elem_id="arena-intro",
    )
    state = gr.State({})
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=200):
            photo = photo_input(
                label="Your photo: click the subject",
                sources=["upload"],
                height=ARENA_HEIGHT - 60,
                elem_id="arena-photo",
            )
            consent = gr.Checkbox(
                False,
                label="Keep my photo for research (stored with this consent; otherwise only its hash is kept)",
                elem_id="arena-consent",
            )
        img_a = gr.Image(
            label="A", interactive=False, height=ARENA_HEIGHT, buttons=["fullscreen"], elem_id="arena-a", scale=3
        )
        img_b = gr.Image(
            label="B", interactive=False, height=ARENA_HEIGHT, buttons=["fullscreen"], elem_id="arena-b", scale=3
        )
    message = gr.Markdown("Upload a photo or pick an example below, then click its subject.", elem_id="arena-message")
    with gr.Row(elem_id="arena-votes"):
        buttons = {c: gr.Button(label, elem_id=f"arena-vote-{c}", min_width=80) for c, label in CHOICE_LABELS.items()}
        next_button = gr.Button("Next pair ▶", variant="primary", elem_id="arena-next", min_width=80)
    reveal = gr.Markdown(elem_id="arena-reveal")
    with gr.Accordion("Compare A and B with a slider", open=False):
        slider = gr.ImageSlider(label="A | B", type="numpy", max_height=500, elem_id="arena-slider")
    gr.Examples(examples=example_paths(), inputs=photo, label="Example photos (CC0 / public domain)")

    def check_photo(path: str | None) -> tuple[Any, Any, dict]:
        if not path:
            return gr.skip(), gr.skip(), {}
        problem = photo_size_problem(path, settings.max_photo_mp)
        if problem is not None:
            log.warning("arena: refused upload: %s", problem)
            return None, f"⚠ {readable(problem)}", {}
        return gr.skip(), "Now click the subject of the photo (what should stay sharp).", {}

    photo.upload(check_photo, photo, [photo, message, state], api_visibility="private", queue=False)

    def pick(state: dict, evt: gr.SelectData) -> tuple[Any, ...]:
        # un-queued: the click is stored at once and the vote buttons know a new pair is on its way
        new = {**state, "focus_px": [int(evt.index[0]), int(evt.index[1])], "pending": True, "battle": None}
        return new, None, None, "Rendering two versions of your photo…", ""

    def render_battle(request: gr.Request, path: str | None, keep: bool, state: dict) -> tuple[Any, ...]:
        state = dict(state or {})
        if not path or "focus_px" not in state:
            return state, gr.skip(), gr.skip(), "Upload a photo, then click its subject.", gr.skip(), gr.skip()
        key, client = _client(request, service)
        try:
            guards.before_battle(key)
            problem = photo_size_problem(path, settings.max_photo_mp)
            if problem:
                raise BokehError(problem)
            prepared = prepare_photo(path, max_side, settings.max_photo_mp)
            height, width = prepared.full.shape[:2]
            fx = min(1.0, max(0.0, state["focus_px"][0] / max(1, width - 1)))
            fy = min(1.0, max(0.0, state["focus_px"][1] / max(1, height - 1)))
            data = Path(path).read_bytes()
            battle = service.start_battle(
                renderer,
                prepared.work,
                (fx, fy),
                client_hash=client,
                channel="space",
                photo_sha256=photo_sha256(data),
                photo_size=(width, height),
                consent_photo=data if keep else None,
                photo_ext=Path(path).suffix or ".png",
            )
        except (ArenaRefused, BokehError, ValueError) as exc:
            text = readable(str(exc))
            log.warning("arena: refused battle: %s", text)
            state["pending"] = False
            return state, gr.skip(), gr.skip(), f"⚠ {text}", gr.skip(), gr.skip()
        # the page gets the images in this answer: they are on screen from now on
        service.mark_shown(battle.id)
        state.update(battle=battle.id, pending=False, focus=[fx, fy])
        a, b = battle.images
        depth = "approximate, no depth model installed" if battle.depth_source.startswith("APPROX") else "depth model"
        note = f"{QUESTION} *(both with the same depth map: {depth})*"
        return state, a, b, note, "", (a, b)

    # a click on the photo and Next pair both end in a render of the new battle (the newest request wins)
    then_render: dict[str, Any] = {
        "fn": render_battle,
        "inputs": [photo, consent, state],
        "outputs": [state, img_a, img_b, message, reveal, slider],
        "api_visibility": "private",
        "trigger_mode": "always_last",
        "concurrency_id": "render",
    }
    photo.select(pick, state, [state, img_a, img_b, message, reveal], api_visibility="private", queue=False).then(
        **then_render
    )

    def next_pair(state: dict) -> tuple[Any, ...]:
        if not state or "focus_px" not in state:
            return state, gr.skip(), gr.skip(), "Upload a photo and click its subject first.", gr.skip()
        return {**state, "pending": True, "battle": None}, None, None, "Rendering a new pair…", ""

    next_button.click(
        next_pair, state, [state, img_a, img_b, message, reveal], api_visibility="private", queue=False
    ).then(**then_render)

    def make_vote(choice: str):  # noqa: ANN202 - a Gradio handler
        def vote(request: gr.Request, state: dict) -> tuple[Any, Any]:
            state = state or {}
            if state.get("pending") or not state.get("battle"):
                text = "Wait until both images are shown, then vote." if state.get("pending") else ""
                return text or "Upload a photo and click its subject first: there is no pair to vote on yet.", gr.skip()
            key, client = _client(request, service)
            try:
                guards.before_vote(key)
                try:
                    result = service.vote(state["battle"], client, choice)
                except ArenaRefused:
                    guards.after_refusal(key)
                    raise
            except ArenaRefused as exc:
                return f"⚠ {exc}", gr.skip()
            if result.status == "recorded":
                guards.after_vote(key)
            names = (
                f"**A** was **{result.method_a}**, **B** was **{result.method_b}**. "
                f"Your vote: {CHOICE_LABELS[result.choice]}. Press **Next pair** for another pair on this photo."
            )
            return "Thank you, your vote counts.", names

        return vote

    for choice, button in buttons.items():
        button.click(make_vote(choice), state, [message, reveal], api_visibility="private", concurrency_limit=None)

    with gr.Accordion("Arena leaderboard (from the stored votes)", open=False, elem_id="arena-board-box"):
        # filled at every page load (below) and by Refresh: the board is computed from the votes stored at that moment
        board_note = gr.Markdown(elem_id="arena-board-note")
        board = gr.DataFrame(interactive=False, elem_id="arena-board")
        heatmap = gr.Plot(elem_id="arena-heatmap")
        refresh = gr.Button("Refresh", elem_id="arena-board-refresh")

        def refreshed() -> tuple[Any, Any, Any]:
            frame, note = arena_board_frame(service, renderer.methods())
            return note, frame, heatmap_figure(service.leaderboard()[1]["used_votes"])

        refresh.click(refreshed, None, [board_note, board, heatmap], api_name="arena_leaderboard")
        demo = gr.context.Context.root_block
        if demo is not None:
            demo.load(refreshed, None, [board_note, board, heatmap], api_visibility="private")

    with gr.Accordion("Organizer: votes per pair and per visitor", open=False):
        token = gr.Textbox(label="Organizer token", type="password", elem_id="arena-organizer-token")
        show = gr.Button("Show", elem_id="arena-organizer-show")
        organizer_note = gr.Markdown()
        pairs = gr.DataFrame(label="Votes per pair", interactive=False)
        clients = gr.DataFrame(label="Votes per visitor (hashed); flagged = always the same side", interactive=False)

        def organizer(given: str) -> tuple[Any, Any, Any]:
            wanted = settings.organizer_token
            if not wanted:
                return "The organizer view is disabled: set BOKEH_ORGANIZER_TOKEN.", None, None
            if not hmac.compare_digest(
                hashlib.sha256(given.encode()).digest(), hashlib.sha256(wanted.encode()).digest()
            ):
                return "Wrong organizer token.", None, None
            votes = service.votes_frame()
            flags = client_flags(
                votes, min_votes=service.config.same_side_min_votes, share=service.config.same_side_share
            )
            refused = service.refusals()
            text = (
                f"{len(votes)} vote(s); {int(refused['refused'].sum()) if len(refused) else 0} refused. "
                "Exclude a visitor with `python -m user_study arena exclude --client-hash H --reason ...`."
            )
            return text, pair_table(votes), flags

        show.click(organizer, token, [organizer_note, pairs, clients], api_visibility="private")
