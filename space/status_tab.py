"""Status tab: which models are installed, the progress of a background fetch, and how to provide what is missing.

Shown as cards that wrap to the page width (one column on a phone), refreshed every few seconds while models
are being fetched, so a visitor sees PyNET and the depth model arrive without reloading.
"""

from __future__ import annotations

import html
from typing import Any

import gradio as gr

from .config import SpaceSettings
from .fetching import background_fetch_enabled, fetch_snapshot
from .services import status_rows

__all__ = ["build_status_tab", "follow_model_changes", "method_choices", "render_status_cards", "status_banner"]

_CSS = """
<style>
#status-cards .cards {display: grid; gap: 12px;
  grid-template-columns: repeat(auto-fill, minmax(min(100%, 300px), 1fr));}
#status-cards .card {border: 1px solid var(--border-color-primary, #ddd); border-radius: 8px; padding: 10px 12px;
  min-width: 0; background: var(--block-background-fill, transparent);}
#status-cards .card h4 {margin: 0 0 6px 0; font-size: 1rem;}
#status-cards .badge {display: inline-block; border-radius: 999px; padding: 1px 10px; font-size: 0.85rem;
  font-weight: 600; margin-bottom: 6px;}
#status-cards .ok {background: #d7f5dd; color: #14532d;}
#status-cards .busy {background: #dbeafe; color: #1e3a8a;}
#status-cards .missing {background: #fde8c8; color: #7c2d12;}
#status-cards .failed {background: #fde2e2; color: #7f1d1d;}
#status-cards p, #status-cards details {margin: 4px 0; font-size: 0.9rem; overflow-wrap: anywhere;}
#status-cards .bar {height: 8px; border-radius: 4px; background: #e5e7eb; overflow: hidden; margin: 6px 0;}
#status-cards .bar > div {height: 100%; background: #2563eb;}
</style>
"""


def status_banner(settings: SpaceSettings) -> str:
    """One honest line at the top of the page about what this instance can and cannot do."""
    rows = {row["component"]: row for row in status_rows(settings)}
    fetching = background_fetch_enabled()
    parts = []
    if rows["PyNET-Bokeh weights"]["state"] != "ready":
        parts.append(
            "**PyNET-Bokeh weights are being downloaded in the background** (PyNET becomes available when ready)"
            if fetching
            else "**PyNET-Bokeh weights are not installed here**, so PyNET is listed as unavailable"
        )
    if rows["Depth model"]["state"] != "ready":
        parts.append(
            "**the depth model is being downloaded**; until then depth is an *approximate* estimate (labelled)"
            if fetching
            else "**no depth model is installed**, so depth is an *approximate* estimate (labelled as such)"
        )
    if not parts:
        return ""
    return "ℹ️ " + "; ".join(parts) + ". The Status tab shows " + ("progress." if fetching else "how to add them.")


def method_choices(settings: SpaceSettings) -> list[tuple[str, str]]:
    """The Render tab's method list as it is now: ``(label, name)``, unavailable ones marked."""
    from .services import method_infos

    return [
        (info.name if info.available else f"{info.name} (unavailable)", info.name) for info in method_infos(settings)
    ]


def follow_model_changes(
    demo: gr.Blocks, settings: SpaceSettings, banner: gr.Markdown, method: gr.Dropdown | None = None
) -> None:
    """Keep the banner and the method list current every few seconds while a background fetch runs (the timer
    stops itself when it is done), so fetched models appear without a restart."""

    # The banner itself is evaluated at every page load (its value is a function, see space/app.py).
    if method is None or not background_fetch_enabled():
        return
    # While a background fetch runs, the method list follows it. It is only sent when it differs from what this
    # page shows, and never at page load: an event that outputs the dropdown while the visitor clicks the photo
    # can swallow that click (seen in the browser at 390x844). Renders re-check availability themselves.
    shown = gr.State(method_choices(settings))
    timer = gr.Timer(3.0)

    def tick(previous: Any) -> tuple[Any, ...]:
        running = any(item["state"] in ("waiting", "downloading", "converting") for item in fetch_snapshot())
        choices = method_choices(settings)
        update = gr.skip() if choices == previous else gr.update(choices=choices)
        return status_banner(settings), update, choices, gr.Timer(active=running)

    timer.tick(tick, shown, [banner, method, shown, timer], api_visibility="private", queue=False)


def _megabytes(count: int) -> str:
    return f"{count / 1e6:,.1f} MB"


def _card(row: dict[str, Any]) -> str:
    progress = row.get("progress")
    state = str(row["state"])
    kind = "ok" if row.get("ok") else "missing"
    if progress is not None and not row.get("ok"):
        state = {"waiting": "queued for download", "downloading": "downloading", "converting": "converting"}.get(
            progress["state"], progress["state"]
        )
        kind = "failed" if progress["state"] == "failed" else "busy"
    parts = [f'<div class="card" data-component="{html.escape(row["component"])}">']
    parts.append(f"<h4>{html.escape(row['component'])}</h4>")
    parts.append(f'<span class="badge {kind}">{html.escape(state)}</span>')
    if progress is not None and not row.get("ok") and progress["state"] in ("downloading", "converting"):
        fraction = progress.get("fraction")
        if fraction is not None:
            parts.append(f'<div class="bar"><div style="width:{100 * fraction:.1f}%"></div></div>')
            parts.append(
                f"<p>{_megabytes(progress['done'])} of {_megabytes(progress['total'])} ({100 * fraction:.0f}%)</p>"
            )
        elif progress["done"]:
            parts.append(f"<p>{_megabytes(progress['done'])} so far</p>")
    if progress is not None and progress["state"] == "failed":
        parts.append(f"<p>Download failed: {html.escape(progress['detail'])}</p>")
    if row.get("detail"):
        parts.append(f"<p>{html.escape(str(row['detail']))}</p>")
    if row.get("how to provide") and not row.get("ok"):
        parts.append(f"<details><summary>How to provide it</summary>{html.escape(row['how to provide'])}</details>")
    parts.append("</div>")
    return "".join(parts)


def render_status_cards(settings: SpaceSettings) -> str:
    """The Status tab's HTML: one card per component (models, methods, compute)."""
    return _CSS + '<div class="cards">' + "".join(_card(row) for row in status_rows(settings)) + "</div>"


def build_status_tab(settings: SpaceSettings) -> None:
    # A callable value is evaluated at every page load, so a new visitor never sees the start-up state.
    cards = gr.HTML(lambda: render_status_cards(settings), elem_id="status-cards")
    refresh = gr.Button("Refresh", elem_id="status-refresh")
    refresh.click(lambda: render_status_cards(settings), None, cards, api_name="status")

    def tick() -> str:
        return render_status_cards(settings)

    # While a background fetch runs, the cards refresh themselves (cheap: file lookups only).
    timer = gr.Timer(2.0, active=background_fetch_enabled())
    timer.tick(tick, None, cards, api_visibility="private", queue=False)
    if fetch_snapshot() or background_fetch_enabled():
        gr.Markdown(
            "Models missing at start-up are downloaded in the background; PyNET and the depth model become "
            "available here and in the Render tab when ready, without a restart."
        )
    gr.Markdown(
        "Settings (environment variables): `BOKEH_PYNET_WEIGHTS` (folder or hub id; default: the folder "
        "`python -m bokeh_model fetch pynet` fills), `BOKEH_DEPTH_MODEL` "
        "(transformers depth model id or folder), `BOKEH_FETCH_MODELS` (1: fetch missing models in the background; "
        "on by default on a Space), `BOKEH_PYNET_URL`, `BOKEH_RESULTS_DIR` (evaluation output shown on the "
        "Leaderboard), `BOKEH_STUDY_DB` and `BOKEH_ORGANIZER_TOKEN` (user study), `BOKEH_MAX_RENDER_SIDE`, "
        "`BOKEH_PYNET_PREVIEW_SIDE`, `BOKEH_MAX_UPLOAD_MB`, `BOKEH_CONCURRENCY`."
    )
