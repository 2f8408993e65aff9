"""Render tab: the photo (click to focus) beside the result as a before/after slider, compact controls beside them.

Interaction rules (what a visitor can count on):

- Every click on the photo ends with a result focused where the *last* click was: a click stores its position,
  then a render reads the stored position with ``trigger_mode="always_last"`` (a click during a render is
  rendered after it, at its own position), and a render that a newer one of the same page has overtaken is
  dropped (a per-session sequence number), so a slow early render never replaces a later one.
- An error never wipes the previous result: the page keeps it and shows a readable message (no server paths).
- Unavailable methods are listed with their reason and cannot be run; controls offer only accepted values.
- Uploads are checked when they arrive (size in megapixels, not an image, depth map of another photo).
- The download is the photo's own size (up to ``max_photo_mp``); depth and blur are computed at processing
  resolution and brought back with guided upsampling.

Why one file: the tab's handlers are closures over its components (photo, result, controls, messages); split
apart, a dozen components would be passed between modules.
"""

from __future__ import annotations

import itertools
import logging
import re
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from bokeh_model import BokehError, InputError

from .config import EXAMPLES_DIR, SpaceSettings
from .controls import (
    MAIN_PARAMS,
    UI_HIDDEN_PARAMS,
    control_for,
    depth_preview,
    export_image,
    parse_params,
    photo_input,
)
from .services import (
    check_depth_upload,
    depth_source_choices,
    depth_source_note,
    method_infos,
    photo_size_problem,
    prepare_photo,
    render_photo,
)
from .visitor import error_text, visitor_reason

__all__ = ["PHOTO_HEIGHT", "build_render_tab", "make_render_fn", "readable", "render_outputs", "user_errors"]

log = logging.getLogger(__name__)

PHOTO_HEIGHT = 420  # px: photo and result side by side with the Render button above the fold at 1366x768
PNG_MAX_PIXELS = 4_000_000  # results up to 4 MP download as PNG; larger ones as JPEG q95 (PNG: 30+ MB, 1+ s)

_TEMP_PATH = re.compile(re.escape(tempfile.gettempdir()) + r"(?:/[^/\s'\"]+)*/([^/\s'\"]+)")


def readable(message: str) -> str:
    """The message a visitor sees: server temporary paths shortened to the file's own name."""
    return _TEMP_PATH.sub(r"\1", message)


@contextmanager
def user_errors() -> Iterator[None]:
    """Library errors -> a readable ``gr.Error`` and one log line; anything else keeps its traceback in the log."""
    try:
        yield
    except gr.Error as exc:
        log.warning("refused: %s", error_text(exc))
        raise
    except BokehError as exc:
        message = readable(str(exc))
        log.warning("refused: %s", message)  # an expected user error: one line, no traceback
        raise gr.Error(message, print_exception=False) from None
    except Exception as exc:  # a bug must not take the server down; the log keeps the traceback
        log.exception("unexpected error while rendering")
        raise gr.Error(
            f"Unexpected error ({type(exc).__name__}): {readable(str(exc))}", print_exception=False
        ) from None


def example_paths() -> list[str]:
    return sorted(str(p) for p in EXAMPLES_DIR.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg"})


def _licence_line(name: str, description: str) -> str:
    """The weights' licence as found, for a method whose description does not state it (PyNET's did not)."""
    if "licen" in description.lower():
        return ""
    if name == "pynet":
        return " Weights licence: CC BY-NC-SA 4.0 (academic, non-commercial use only; Ignatov, Patel, Timofte)."
    from bokeh_model.method_weights import get_weights_spec, weights_spec_names

    if name in weights_spec_names():
        return f" Weights licence: {get_weights_spec(name).license}"
    return ""


def _describe_method(infos: list, name: str | None) -> str:
    info = next((i for i in infos if i.name == name), None)
    if info is None:
        return "No method is available."
    if info.available:
        return info.description + _licence_line(info.name, info.description)
    return f"⚠ **{info.name} is unavailable here:** {visitor_reason(info.name, info.reason)}"


@dataclass
class RenderOutputs:
    download: str  # the result at the photo's own size
    pair: tuple[str, str]  # before / after previews at processing resolution
    depth: str | None  # the depth map used (preview)
    notes: str
    summary: str  # one line for the message beside the controls
    timings: dict[str, float]  # seconds per stage: decode, downscale, depth, render, finish, encode
    seconds: float  # the whole render, end to end in the server


def render_outputs(
    settings: SpaceSettings,
    photo: str | None,
    method: str,
    focus_x: float | None,
    focus_y: float | None,
    depth_source: str,
    depth_map: str | None,
    params: dict[str, Any],
) -> RenderOutputs:
    """Everything one render produces, as files for the page and the API; raises BokehError / gr.Error."""
    if not photo:
        raise gr.Error("Upload a photo or pick an example first.", print_exception=False)
    start = time.perf_counter()
    prepared = prepare_photo(photo, settings.max_render_side, settings.max_photo_mp)
    focus = None
    if focus_x is not None and focus_y is not None and focus_x >= 0 and focus_y >= 0:
        focus = (int(round(focus_x)), int(round(focus_y)))
        height, width = prepared.full.shape[:2]
        if focus[0] >= width or focus[1] >= height:
            raise InputError(
                f"focus point ({focus[0]}, {focus[1]}) lies outside the {width}x{height} photo "
                f"(x in [0, {width - 1}], y in [0, {height - 1}]; -1 = automatic focus)"
            )
    result = render_photo(
        prepared.work,
        method,
        settings,
        params=params,
        focus_xy=prepared.to_work(focus),
        depth_source=depth_source,
        uploaded_depth=depth_map,
        full=prepared.full,
    )
    encode_start = time.perf_counter()
    height, width = result.image.shape[:2]
    # the download is named after the photo and the method (chelsea_lens.png), not a random id
    name = f"{Path(photo).stem}_{method}" if isinstance(photo, str) else method
    download = export_image(result.image, "png" if height * width <= PNG_MAX_PIXELS else "download", name=name)
    preview = result.preview if result.preview is not None else result.image
    pair = (export_image(prepared.work, "jpeg"), export_image(preview, "jpeg"))
    depth_img = None if result.depth is None else export_image(depth_preview(result.depth.depth), "png")
    timings = {**prepared.timings, **result.timings, "encode": time.perf_counter() - encode_start}
    total = time.perf_counter() - start
    stages = ", ".join(f"{name} {seconds:.2f}" for name, seconds in timings.items())
    lines = [f"**{method}**: {width}x{height} px in {total:.2f} s ({stages} s)."]
    if focus is not None:
        lines.append(f"Focus at pixel ({focus[0]}, {focus[1]}).")
    if result.depth is not None:
        marker = "⚠ " if result.depth.approximate else ""
        lines.append(f"{marker}Depth: {result.depth.label}.")
    lines += prepared.notes + result.notes
    where = "automatic focus" if focus is None else f"focus at ({focus[0]}, {focus[1]})"
    summary = f"✓ {method}, {where}: {width}x{height} px in {total:.1f} s."
    return RenderOutputs(download, pair, depth_img, "\n\n".join(lines), summary, timings, total)


def make_render_fn(settings: SpaceSettings) -> Callable[..., tuple[Any, Any, Any, str]]:
    """The ``/render`` API function: errors raise (the client gets ``AppError`` with a readable message)."""

    def render(
        photo: str | None,
        method: str = "lens",
        focus_x: float = -1,
        focus_y: float = -1,
        depth_source: str = "auto",
        depth_map: str | None = None,
        params: str = "{}",
    ) -> tuple[Any, Any, Any, str]:
        """Render bokeh for one photo; the result has the photo's own size (up to the app's megapixel limit).

        Args:
            photo: the photo (PNG, JPEG, WebP, ...).
            method: a method name from the Status tab (lens, gaussian, disk, pynet, ...).
            focus_x: x of the in-focus pixel in the photo's pixels, -1 for automatic focus.
            focus_y: y of the in-focus pixel, -1 for automatic focus.
            depth_source: auto, a depth model (dpt-hybrid, depth-anything-v2-small; model = the Space's default),
                approximate or upload.
            depth_map: a depth map file (near = bright, same aspect ratio as the photo) when depth_source is upload.
            params: JSON object of the method's parameters, e.g. {"strength": 24, "blades": 6}.

        Returns:
            The result at the photo's own size (PNG up to 4 MP, else JPEG q95), the before/after pair (previews),
            the depth map used and notes.
        """
        with user_errors():
            out = render_outputs(
                settings, photo, method, focus_x, focus_y, depth_source, depth_map, parse_params(params)
            )
            return out.download, out.pair, out.depth, out.notes

    return render


_SHOW_RESULT_JS = """() => {
  const result = document.querySelector('#result-column');
  if (!result) return;
  const box = result.getBoundingClientRect();
  if (box.top < 0 || box.top > window.innerHeight * 0.5) result.scrollIntoView({block: 'start'});
}"""


class _LatestRender:
    """Per page session, the sequence number of the newest render request: older renders' results are dropped."""

    def __init__(self, max_sessions: int = 4096) -> None:
        self._counter = itertools.count(1)
        self._latest: OrderedDict[str, int] = OrderedDict()
        self._shown: set[str] = set()  # sessions whose page shows a result
        self._lock = threading.Lock()
        self._max = max_sessions

    def start(self, session: str) -> int:
        with self._lock:
            number = next(self._counter)
            self._latest[session] = number
            self._latest.move_to_end(session)
            while len(self._latest) > self._max:
                self._shown.discard(self._latest.popitem(last=False)[0])
            return number

    def is_latest(self, session: str, number: int) -> bool:
        with self._lock:
            return self._latest.get(session, number) == number

    def current(self, session: str) -> int:
        """The newest render request's number of this session (0 before the first)."""
        with self._lock:
            return self._latest.get(session, 0)

    def shown(self, session: str, value: bool | None = None) -> bool:
        """Whether the session's page shows a result (set it with ``value``)."""
        with self._lock:
            if value is not None and session in self._latest:
                (self._shown.add if value else self._shown.discard)(session)
            return session in self._shown


def build_render_tab(settings: SpaceSettings) -> dict[str, gr.components.Component]:
    """Create the tab's components inside the current Blocks context; returns those other tabs reuse."""
    infos = method_infos(settings)
    by_name = {info.name: info for info in infos}
    available = [info.name for info in infos if info.available]
    default = "lens" if "lens" in available else (available[0] if available else None)
    choices = [(info.name if info.available else f"{info.name} (unavailable)", info.name) for info in infos]

    main_groups: dict[str, gr.Group] = {}
    advanced_groups: dict[str, gr.Group] = {}
    controls: list[tuple[str, str, gr.components.Component]] = []

    def add_controls(name: str, which: str) -> None:
        specs = [s for s in by_name[name].method.params if s.name not in UI_HIDDEN_PARAMS]
        specs = [s for s in specs if (s.name in MAIN_PARAMS) == (which == "main")]
        with gr.Group(visible=name == default) as group:
            for spec in specs:
                controls.append((name, spec.name, control_for(name, spec)))
        (main_groups if which == "main" else advanced_groups)[name] = group

    with gr.Row(equal_height=False, elem_id="render-row"):
        with gr.Column(scale=4, min_width=300, elem_id="photo-column"):
            photo = photo_input(
                label="Photo: click to focus",
                height=PHOTO_HEIGHT,
                sources=["upload", "clipboard"],
                elem_id="photo",
            )
            # A refused upload is explained right under the photo: on a phone the message beside Render is
            # below the fold.
            photo_note = gr.Markdown(elem_id="photo-note")
        with gr.Column(scale=4, min_width=300, elem_id="result-column"), gr.Tabs(elem_id="result-tabs"):
            with gr.Tab("Before / after", id="result-tab", elem_id="result-tab"):
                before_after = gr.ImageSlider(
                    label="Before / after: drag the handle",
                    type="filepath",
                    height=PHOTO_HEIGHT,
                    max_height=PHOTO_HEIGHT,
                    interactive=False,
                    buttons=["fullscreen"],
                    elem_id="result",
                )
            with gr.Tab("Depth used", id="depth-tab", elem_id="depth-tab"):
                depth_view = gr.Image(
                    label="Depth used (near = bright)",
                    height=PHOTO_HEIGHT,
                    interactive=False,
                    format="png",
                    buttons=["download", "fullscreen"],
                    elem_id="depth_view",
                )
        with gr.Column(scale=3, min_width=260, elem_id="controls-column"):
            method = gr.Dropdown(choices=choices, value=default, label="Method", elem_id="method")
            method_note = gr.Markdown(_describe_method(infos, default), elem_id="method-note")
            for info in infos:
                add_controls(info.name, "main")
            with gr.Row():
                render_button = gr.Button(
                    "Render", variant="primary", elem_id="render", interactive=default is not None, min_width=100
                )
                download = gr.DownloadButton(
                    "⬇ Full size", value=None, elem_id="download", interactive=False, min_width=100
                )
            message = gr.Markdown("Click on the photo to choose what stays sharp.", elem_id="render-message")
            with gr.Accordion("Advanced: aperture, depth, focus", open=False, elem_id="advanced"):
                for info in infos:
                    add_controls(info.name, "advanced")
                depth_source = gr.Radio(
                    depth_source_choices(settings),
                    value="auto",
                    label="Depth",
                    elem_id="depth_source",
                )
                # whether the picked depth model is installed, checked when it is picked (models arrive later)
                depth_model_note = gr.Markdown(elem_id="depth-model-note")
                # Shown by toggling its column: an update to the upload component itself would give the session a
                # fresh copy of it without photo_input's path-only pre-processing.
                with gr.Column(visible=False) as depth_box:
                    depth_map = photo_input(
                        label="Depth map (near = bright, same shape as the photo)",
                        height=160,
                        sources=["upload", "clipboard"],  # a webcam picture is no depth map
                        elem_id="depth_upload",
                    )
                    # the verdict on an upload, also here: the message beside Render is scrolled away when the
                    # Advanced section is open (seen in the browser at 1366x768 and 390x844)
                    depth_note = gr.Markdown(elem_id="depth-note")
                with gr.Row():
                    focus_x = gr.Number(-1, label="focus x (px, -1 = auto)", precision=0, elem_id="focus_x")
                    focus_y = gr.Number(-1, label="focus y (px, -1 = auto)", precision=0, elem_id="focus_y")
    gr.Examples(examples=example_paths(), inputs=photo, label="Example photos (CC0 / public domain)")
    notes = gr.Markdown(elem_id="render-info")
    # The named /render API: same inputs as the page, but errors raise (clients need an error, not a kept
    # result). Its button is never shown; the page's own handlers below are private.
    params_json = gr.Textbox(visible=False, label="params", elem_id="params_json")
    api_button = gr.Button(visible=False, elem_id="render-api")
    api_button.click(
        make_render_fn(settings),
        [photo, method, focus_x, focus_y, depth_source, depth_map, params_json],
        [download, before_after, depth_view, notes],
        api_name="render",
    )

    control_components = [component for _, _, component in controls]
    latest = _LatestRender()

    def chosen_params(name: str, values: tuple[Any, ...]) -> dict[str, Any]:
        chosen = {param: value for (owner, param, _), value in zip(controls, values, strict=True) if owner == name}
        return {k: v for k, v in chosen.items() if v is not None and v != ""}

    def page_render(
        request: gr.Request | None,
        photo_path: str | None,
        name: str,
        x: float | None,
        y: float | None,
        source: str,
        depth_path: str | None,
        values: tuple[Any, ...],
    ) -> tuple[Any, ...]:
        skip = (gr.skip(), gr.skip(), gr.skip())
        session = getattr(request, "session_hash", None) or "no-session"
        number = latest.start(session)
        # Availability is checked again at every render: models fetched in the background appear without a restart.
        info = {i.name: i for i in method_infos(settings)}.get(name)
        if info is not None and not info.available:
            text = f"{name} cannot run here: {visitor_reason(name, info.reason)}"
            gr.Warning(text)
            return (*skip, f"⚠ {text}", gr.skip())
        try:
            out = render_outputs(settings, photo_path, name, x, y, source, depth_path, chosen_params(name, values))
        except (BokehError, gr.Error) as exc:
            text = readable(error_text(exc))
            log.warning("refused: %s", text)  # an expected user error: one line, no traceback
            gr.Warning(text)
            kept = "\n\nThe previous result is kept." if latest.shown(session) else ""
            return (*skip, f"⚠ {text}{kept}", gr.skip())
        except Exception as exc:  # a bug: keep the page's result, say so, and keep the traceback in the log
            log.exception("unexpected error while rendering")
            text = f"Unexpected error ({type(exc).__name__}): {readable(str(exc))}"
            gr.Warning(text)
            kept = "\n\nThe previous result is kept." if latest.shown(session) else ""
            return (*skip, f"⚠ {text}{kept}", gr.skip())
        if not latest.is_latest(session, number):
            return (*skip, gr.skip(), gr.skip())  # a newer click or Render is on its way: do not flash this one
        latest.shown(session, True)
        return out.pair, out.depth, gr.update(value=out.download, interactive=True), out.summary, out.notes

    # Gradio injects gr.Request only into positional parameters: it comes first.
    def on_render(
        request: gr.Request,
        photo_path: str | None,
        name: str,
        x: float | None,
        y: float | None,
        source: str,
        depth_path: str | None,
        *values: Any,
    ) -> tuple[Any, ...]:
        return page_render(request, photo_path, name, x, y, source, depth_path, values)

    def pick_focus(evt: gr.SelectData) -> tuple[int, int]:
        return int(evt.index[0]), int(evt.index[1])

    outputs = [before_after, depth_view, download, message, notes]
    # On a phone Render sits below the result: bring the result into view when it is tapped.
    render_button.click(None, None, None, js=_SHOW_RESULT_JS, api_visibility="private", queue=False)
    render_button.click(
        on_render,
        [photo, method, focus_x, focus_y, depth_source, depth_map, *control_components],
        outputs,
        api_visibility="private",
        trigger_mode="always_last",
        concurrency_id="render",
    )
    # A click stores its position (un-queued, every click), then renders from the stored position. The render must
    # not take the click's own SelectData: Gradio's always_last replays the *first* deferred event with its original
    # event data, so a click made while a render runs would be rendered at the previous click's position.
    photo.select(
        pick_focus, None, [focus_x, focus_y], api_visibility="private", trigger_mode="multiple", queue=False
    ).then(
        on_render,
        [photo, method, focus_x, focus_y, depth_source, depth_map, *control_components],
        outputs,
        api_visibility="private",
        trigger_mode="always_last",
        concurrency_id="render",
    )

    def describe(name: str) -> tuple[Any, ...]:
        current = method_infos(settings)  # checked again: models fetched in the background appear without a restart
        info = next((i for i in current if i.name == name), None)
        runnable = info is not None and info.available
        return (
            _describe_method(current, name),
            gr.update(interactive=runnable),
            *[gr.update(visible=key == name) for key in main_groups],
            *[gr.update(visible=key == name) for key in advanced_groups],
        )

    method.change(
        describe,
        method,
        [method_note, render_button, *main_groups.values(), *advanced_groups.values()],
        api_visibility="private",
    )

    def check_photo(request: gr.Request, path: str | None) -> tuple[Any, Any, Any]:
        # On every new photo (upload, paste or example): a good one clears an earlier refusal's warning.
        if not path:
            return gr.skip(), gr.skip(), gr.skip()
        session = getattr(request, "session_hash", None) or "no-session"
        renders_before = latest.current(session)
        problem = photo_size_problem(path, settings.max_photo_mp)  # header, pixel count, and a full decode
        if problem is None:
            # A large photo's decode can outlast a quick first click: then the render's message stays.
            clicked = latest.current(session) != renders_before
            return gr.skip(), gr.skip() if clicked else "Click on the photo to choose what stays sharp.", ""
        # An expected user error: one log line. No gr.Warning: in an un-queued handler Gradio shows no toast and
        # writes it to the server's stderr as a Python warning instead (two more lines per refusal).
        log.warning("refused upload: %s", problem)
        return None, f"⚠ {problem}", f"⚠ {problem}"

    def check_depth(depth_path: str | None, photo_path: str | None) -> tuple[Any, Any]:
        if not depth_path:
            return gr.skip(), gr.skip()
        if not photo_path:
            return gr.skip(), "Depth map loaded; upload the photo it belongs to."
        try:
            problem = photo_size_problem(photo_path, settings.max_photo_mp, decode=False)  # decoded on arrival
            if problem:
                raise gr.Error(problem)
            from PIL import Image

            with Image.open(photo_path) as image:
                shape = (image.height, image.width)
            _, found = check_depth_upload(depth_path, shape)
        except (BokehError, gr.Error) as exc:
            text = readable(error_text(exc))
            log.warning("refused depth upload: %s", text)  # one line (un-queued: no toast, see check_photo)
            return None, f"⚠ {text}"
        text = " ".join(found) if found else "Depth map accepted."
        return gr.skip(), text

    photo.change(check_photo, photo, [photo, message, photo_note], api_visibility="private", queue=False)

    def on_depth_upload(depth_path: str | None, photo_path: str | None) -> tuple[Any, Any, Any]:
        kept, text = check_depth(depth_path, photo_path)
        return kept, text, text

    depth_map.upload(
        on_depth_upload, [depth_map, photo], [depth_map, message, depth_note], api_visibility="private", queue=False
    )
    depth_source.change(
        lambda s: (gr.update(visible=s == "upload"), depth_source_note(s, settings)),
        depth_source,
        [depth_box, depth_model_note],
        api_visibility="private",
    )
    photo.change(lambda: (-1, -1), None, [focus_x, focus_y], api_visibility="private", queue=False)
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
