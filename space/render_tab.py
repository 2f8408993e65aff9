"""Render tab: upload or pick a photo, click to focus, pick a method and its settings, see and download."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import gradio as gr

from bokeh_model import BokehError

from .config import EXAMPLES_DIR, SpaceSettings
from .controls import UI_HIDDEN_PARAMS, control_for, depth_preview, export_image, parse_params, photo_input
from .services import DEPTH_SOURCES, method_infos, prepare_photo, render_photo

__all__ = ["build_render_tab", "user_errors"]

log = logging.getLogger(__name__)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn library errors into a readable message in the page; keep serving other users on anything else."""
    try:
        yield
    except gr.Error:
        raise
    except BokehError as exc:
        raise gr.Error(str(exc)) from None
    except Exception as exc:  # a bug must not take the server down; the log keeps the traceback
        log.exception("unexpected error while rendering")
        raise gr.Error(f"Unexpected error ({type(exc).__name__}): {exc}") from None


def example_paths() -> list[str]:
    return sorted(str(p) for p in EXAMPLES_DIR.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})


def _focus_point(x: float | None, y: float | None, scale: float) -> tuple[int, int] | None:
    if x is None or y is None or x < 0 or y < 0:
        return None
    return int(round(x * scale)), int(round(y * scale))


def _describe_method(infos: list, name: str | None) -> str:
    info = next((i for i in infos if i.name == name), None)
    if info is None:
        return "No method is available."
    return info.description if info.available else f"⚠️ **Unavailable:** {info.reason}"


def make_render_fn(settings: SpaceSettings) -> Callable[..., tuple[Any, Any, Any, str]]:
    def render(
        photo: str | None,
        method: str = "lens",
        focus_x: float = -1,
        focus_y: float = -1,
        depth_source: str = "auto",
        depth_map: str | None = None,
        params: str = "{}",
    ) -> tuple[Any, Any, Any, str]:
        """Render bokeh for one photo.

        Args:
            photo: the photo (PNG, JPEG, WebP, ...).
            method: a method name from the Status tab (lens, gaussian, disk, pynet, ...).
            focus_x: x of the in-focus pixel in the photo's pixels, -1 for automatic focus.
            focus_y: y of the in-focus pixel, -1 for automatic focus.
            depth_source: auto, model, approximate or upload.
            depth_map: a depth map file (near = bright) when depth_source is upload.
            params: JSON object of the method's parameters, e.g. {"strength": 24, "blades": 6}.

        Returns:
            The result at full (processing) resolution, the before/after pair, the depth map used and notes.
        """
        with user_errors():
            if not photo:
                raise gr.Error("Upload a photo or pick an example first.")
            image, scale, notes = prepare_photo(photo, settings.max_render_side)
            result = render_photo(
                image,
                method,
                settings,
                params=parse_params(params),
                focus_xy=_focus_point(focus_x, focus_y, scale),
                depth_source=depth_source,
                uploaded_depth=depth_map,
            )
            lines = [f"**{method}** rendered {image.shape[1]}x{image.shape[0]} px in {result.seconds:.2f} s."]
            if result.depth is not None:
                marker = "⚠️ " if result.depth.approximate else ""
                lines.append(f"{marker}Depth: {result.depth.label}.")
            lines += notes + result.notes
            depth_img = None if result.depth is None else export_image(depth_preview(result.depth.depth), "png")
            pair = (export_image(image, "jpeg"), export_image(result.image, "jpeg"))
            return export_image(result.image, "png"), pair, depth_img, "\n\n".join(lines)

    return render


def build_render_tab(settings: SpaceSettings) -> dict[str, gr.components.Component]:
    """Create the tab's components inside the current Blocks context; returns those other tabs reuse."""
    infos = method_infos(settings)
    available = [info.name for info in infos if info.available]
    default = "lens" if "lens" in available else (available[0] if available else None)
    choices = [(info.name if info.available else f"{info.name} (unavailable)", info.name) for info in infos]

    with gr.Row():
        with gr.Column(scale=3):
            photo = photo_input(
                label="Photo: click on it to set the focus",
                height=440,
                sources=["upload", "clipboard"],
                elem_id="photo",
            )
            gr.Examples(examples=example_paths(), inputs=photo, label="Example photos (CC0 / public domain)")
        with gr.Column(scale=2):
            method = gr.Dropdown(choices=choices, value=default, label="Method", elem_id="method")
            method_note = gr.Markdown(_describe_method(infos, default), elem_id="method-note")
            with gr.Row():
                focus_x = gr.Number(-1, label="focus x (px, -1 = auto)", precision=0, elem_id="focus_x")
                focus_y = gr.Number(-1, label="focus y (px, -1 = auto)", precision=0, elem_id="focus_y")
            depth_source = gr.Radio(
                [(label, key) for key, label in DEPTH_SOURCES.items()],
                value="auto",
                label="Depth",
                elem_id="depth_source",
            )
            depth_map = photo_input(
                label="Depth map (near = bright)", visible=False, height=200, elem_id="depth_upload"
            )
            groups: dict[str, gr.Group] = {}
            controls: list[tuple[str, str, gr.components.Component]] = []
            for info in infos:
                specs = [s for s in info.method.params if s.name not in UI_HIDDEN_PARAMS]
                with gr.Group(visible=info.name == default) as group:
                    for spec in specs:
                        controls.append((info.name, spec.name, control_for(info.name, spec)))
                groups[info.name] = group
            render_button = gr.Button("Render", variant="primary", elem_id="render")
            params_json = gr.Textbox(visible=False, elem_id="params_json")
    with gr.Row():
        result = gr.Image(
            label="Result (download for full resolution)",
            format="png",
            height=440,
            interactive=False,
            buttons=["download", "fullscreen"],
            elem_id="result",
        )
        depth_view = gr.Image(
            label="Depth used (near = bright)", height=440, interactive=False, elem_id="depth_view", format="png"
        )
    before_after = gr.ImageSlider(label="Before / after", type="pil", max_height=520, elem_id="before_after")
    notes = gr.Markdown(elem_id="render-info")

    def describe(name: str) -> tuple[Any, ...]:
        # Availability is checked again: models fetched in the background appear without a restart.
        return (_describe_method(method_infos(settings), name), *[gr.update(visible=key == name) for key in groups])

    method.change(describe, method, [method_note, *groups.values()], api_visibility="private")

    def collect(name: str, *values: Any) -> str:
        chosen = {param: value for (owner, param, _), value in zip(controls, values, strict=True) if owner == name}
        return json.dumps({k: v for k, v in chosen.items() if v is not None and v != ""})

    def pick_focus(evt: gr.SelectData) -> tuple[int, int]:
        return int(evt.index[0]), int(evt.index[1])

    render = make_render_fn(settings)
    control_components = [component for _, _, component in controls]
    inputs = [photo, method, focus_x, focus_y, depth_source, depth_map, params_json]
    outputs = [result, before_after, depth_view, notes]

    depth_source.change(lambda s: gr.update(visible=s == "upload"), depth_source, depth_map, api_visibility="private")
    render_button.click(collect, [method, *control_components], params_json, api_visibility="private").then(
        render, inputs, outputs, api_name="render"
    )
    photo.select(pick_focus, None, [focus_x, focus_y], api_visibility="private").then(
        collect, [method, *control_components], params_json, api_visibility="private"
    ).then(render, inputs, outputs, api_visibility="private")
    photo.change(lambda: (-1, -1), None, [focus_x, focus_y], api_visibility="private")
    return {
        "photo": photo,
        "method": method,
        "focus_x": focus_x,
        "focus_y": focus_y,
        "depth_source": depth_source,
        "depth_map": depth_map,
        "params_json": params_json,
        "method_note": method_note,
    }
