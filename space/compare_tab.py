"""Compare tab: every available method on the same photo, the same depth and the same focus, with runtimes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from .config import SpaceSettings
from .controls import depth_preview, export_image
from .render_tab import user_errors
from .services import DepthResult, compute_depth, method_infos, prepare_photo, render_photo
from .visitor import visitor_reason

__all__ = ["build_compare_tab"]

COLUMNS = ["method", "runtime s", "note"]


def _short_depth(depth: DepthResult) -> str:
    # a caption sits over its picture: the long label of approximate depth covered the whole depth map on a phone
    return "approximate" if depth.approximate else depth.label


def build_compare_tab(settings: SpaceSettings, shared: dict[str, gr.components.Component]) -> None:
    gr.Markdown(
        "Runs every available method with its default settings on the photo, focus point and depth source chosen "
        "in the **Render** tab, at processing resolution. The depth map is computed once and shared, so the "
        "methods differ only in how they render."
    )
    button = gr.Button("Compare all methods", variant="primary", elem_id="compare")
    # No fixed height: the gallery grows with its items, so every method is visible without scrolling inside it.
    gallery = gr.Gallery(
        label="Methods side by side",
        columns=3,
        height="auto",
        object_fit="contain",
        elem_id="compare-gallery",
        buttons=["download", "fullscreen"],
    )
    # named columns from the start (an empty DataFrame shows the headers "1 2 3")
    # wrap and fixed widths: the notes (CPU preview size, focus) were cut at the table's right edge, at 1366 px as
    # on a phone, where the first two columns took most of the width
    table = gr.DataFrame(
        pd.DataFrame(columns=COLUMNS),
        label="Runtime",
        interactive=False,
        wrap=True,
        column_widths=["27%", "19%", "54%"],
        elem_id="compare-table",
    )

    def compare(
        photo: str | None, focus_x: float, focus_y: float, depth_source: str, depth_map: str | None
    ) -> tuple[list[tuple[Any, str]], pd.DataFrame]:
        """Render the photo with every available method (default parameters) and time each."""
        with user_errors():
            if not photo:
                raise gr.Error("Upload a photo or pick an example in the Render tab first.", print_exception=False)
            prepared = prepare_photo(photo, settings.max_render_side, settings.max_photo_mp)
            image = prepared.work
            clicked = None if focus_x is None or focus_x < 0 else (int(focus_x), int(focus_y))
            focus = prepared.to_work(clicked)
            depth = compute_depth(image, depth_source, settings, focus_xy=focus, uploaded=depth_map)
            items: list[tuple[Any, str]] = [
                (export_image(image, "jpeg"), "input photo"),
                (export_image(depth_preview(depth.depth), "jpeg"), f"depth: {_short_depth(depth)}"),
            ]
            rows = []
            for info in method_infos(settings):
                if not info.available:
                    reason = visitor_reason(info.name, info.reason)  # one line, no server paths
                    rows.append({"method": info.name, "runtime s": None, "note": f"unavailable: {reason}"})
                    continue
                result = render_photo(image, info.name, settings, focus_xy=focus, depth=depth)
                name = f"{Path(photo).stem}_{info.name}"  # downloads as <photo>_<method>.jpg
                items.append((export_image(result.image, "jpeg", name=name), f"{info.name} ({result.seconds:.2f} s)"))
                rows.append(
                    {"method": info.name, "runtime s": round(result.seconds, 3), "note": " ".join(result.notes)}
                )
            return items, pd.DataFrame(rows, columns=COLUMNS)

    button.click(
        compare,
        [shared["photo"], shared["focus_x"], shared["focus_y"], shared["depth_source"], shared["depth_map"]],
        [gallery, table],
        api_name="compare",
    )
