"""The Space without a browser: the app builds, the render endpoint works in-process and over HTTP, bad input."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from space.app import build_app
from space.config import EXAMPLES_DIR, SpaceSettings
from space.render_tab import make_render_fn

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> SpaceSettings:
    data = tmp_path_factory.mktemp("space")
    return SpaceSettings(
        pynet_weights=None,
        depth_model=str(data / "no-depth-model-here"),
        results_dir=data / "results",
        study_db=f"sqlite:///{data / 'study.db'}",
        organizer_token="organizer-secret",
        max_render_side=640,
    )


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("photo") / "chelsea_small.png"
    Image.open(EXAMPLES_DIR / "chelsea.png").resize((226, 150)).save(path)
    return str(path)


def test_app_builds_without_launching(settings: SpaceSettings) -> None:
    demo = build_app(settings)
    assert isinstance(demo, gr.Blocks)
    names = {dep.get("api_name") for dep in demo.config["dependencies"]}
    assert {"render", "compare", "leaderboard", "status"} <= names


def test_render_labels_approximate_depth_and_focus(settings: SpaceSettings, photo: str) -> None:
    render = make_render_fn(settings)
    result, (before, after), depth, notes = render(photo, "lens", 113, 75, "auto", None, '{"strength": 12}')
    assert result.endswith(".png") and before.endswith(".jpg") and after.endswith(".jpg")
    assert Image.open(result).size == (226, 150) and Image.open(before).size == (226, 150)
    assert Image.open(depth).size == (226, 150) and Image.open(depth).mode == "L"
    assert "APPROXIMATE" in notes and "Focus at pixel (113, 75)" in notes
    original = np.asarray(Image.open(photo).convert("RGB"), np.float32)
    assert np.abs(np.asarray(Image.open(result), np.float32) - original).mean() > 1.0  # something was blurred


def test_focus_point_changes_the_output(settings: SpaceSettings, photo: str) -> None:
    render = make_render_fn(settings)
    near, *_ = render(photo, "lens", 113, 75, "approximate", None, '{"strength": 12}')
    far, *_ = render(photo, "lens", 5, 5, "approximate", None, '{"strength": 12}')
    assert np.abs(np.asarray(Image.open(near), np.float32) - np.asarray(Image.open(far), np.float32)).mean() > 0.5


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"hello, I am text", "is not an image file"),
        (None, "could not be decoded"),  # truncated PNG
    ],
)
def test_bad_uploads_give_readable_errors(
    settings: SpaceSettings, photo: str, tmp_path: Path, content: bytes | None, message: str
) -> None:
    bad = tmp_path / "upload.png"
    bad.write_bytes(content if content is not None else Path(photo).read_bytes()[:500])
    with pytest.raises(gr.Error, match=message):
        make_render_fn(settings)(str(bad), "lens", -1, -1, "auto", None, "{}")


def test_unavailable_method_and_bad_params_are_explained(settings: SpaceSettings, photo: str) -> None:
    render = make_render_fn(settings)
    with pytest.raises(gr.Error, match="pynet is not available here: PyNET weights are not installed"):
        render(photo, "pynet", -1, -1, "auto", None, "{}")
    with pytest.raises(gr.Error, match="JSON object"):
        render(photo, "lens", -1, -1, "auto", None, "[1, 2]")
    with pytest.raises(gr.Error, match="strength"):
        render(photo, "lens", -1, -1, "auto", None, '{"strength": -5}')
    with pytest.raises(gr.Error, match="Upload a photo"):
        render(None, "lens", -1, -1, "auto", None, "{}")
    with pytest.raises(gr.Error, match=r"focus point \(500, 20\) lies outside the 226x150 photo"):
        render(photo, "lens", 500, 20, "auto", None, "{}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_render_endpoint_over_http_with_gradio_client(settings: SpaceSettings, photo: str) -> None:
    from gradio_client import Client, handle_file

    demo = build_app(settings)
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        api = client.view_api(return_format="dict", print_info=False)
        params = [p["parameter_name"] for p in api["named_endpoints"]["/render"]["parameters"]]
        assert params[:3] == ["photo", "method", "focus_x"]
        result, pair, depth, notes = client.predict(
            handle_file(photo), "gaussian", 100, 70, "approximate", None, "{}", api_name="/render"
        )
        assert Image.open(result).size == (226, 150)
        assert "gaussian" in notes
        with pytest.raises(Exception, match="not an image"):
            broken = Path(photo).with_name("broken.png")
            broken.write_bytes(b"no image")
            client.predict(handle_file(str(broken)), "lens", -1, -1, "auto", None, "{}", api_name="/render")
        # The server keeps serving after the error.
        again = client.predict(handle_file(photo), "lens", -1, -1, "auto", None, "{}", api_name="/render")
        assert Image.open(again[0]).size == (226, 150)
    finally:
        demo.close()
    assert threading.active_count() >= 1


def test_result_comes_back_at_the_photos_own_size(settings: SpaceSettings, tmp_path: Path) -> None:
    big = tmp_path / "camera.jpg"
    Image.open(EXAMPLES_DIR / "chelsea.png").convert("RGB").resize((1500, 1000)).save(big, quality=95)
    result, (before, after), depth, notes = make_render_fn(settings)(
        str(big), "lens", 750, 500, "approximate", None, '{"strength": 16}'
    )
    assert Image.open(result).size == (1500, 1000)  # processed at 640 px, finished at full size
    assert Image.open(after).size == (640, 427)  # the page's before/after preview
    assert "guided" in notes and "Focus at pixel (750, 500)" in notes


def test_uploads_are_checked_from_the_header(tmp_path: Path) -> None:
    from space.services import photo_size_problem

    huge = tmp_path / "huge.png"
    Image.new("L", (8000, 4000)).save(huge)
    problem = photo_size_problem(str(huge), 24)
    assert problem is not None and "huge.png is 32 MP (8000x4000)" in problem and str(tmp_path) not in problem
    text = tmp_path / "text.jpg"
    text.write_text("not a picture")
    assert "text.jpg is not an image" in (photo_size_problem(str(text), 24) or "")
    assert photo_size_problem(str(EXAMPLES_DIR / "chelsea.png"), 24) is None


def test_depth_uploads_are_validated(tmp_path: Path) -> None:
    from bokeh_model import InputError
    from space.services import check_depth_upload

    grey = tmp_path / "grey.png"
    Image.new("L", (150, 100), 200).save(grey)
    depth, notes = check_depth_upload(str(grey), (200, 300))
    assert depth.shape == (200, 300) and notes == ["Depth map resized from 150x100 to 300x200."]
    colour = tmp_path / "colour.png"
    Image.new("RGB", (300, 200), (250, 10, 10)).save(colour)
    depth, notes = check_depth_upload(str(colour), (200, 300))
    assert depth.shape == (200, 300) and "colour image" in notes[0]
    with pytest.raises(InputError, match="another photo"):
        check_depth_upload(str(grey), (300, 300))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    with pytest.raises(InputError, match="bad.png is not an image"):
        check_depth_upload(str(bad), (200, 300))


def test_messages_never_show_server_temp_paths() -> None:
    import tempfile

    from space.render_tab import readable

    temp = tempfile.gettempdir()
    message = f"{temp}/gradio/04a4f00d/fake.jpg is not an image file"
    assert readable(message) == "fake.jpg is not an image file"


def test_controls_offer_only_accepted_values(settings: SpaceSettings) -> None:
    from bokeh_model import create_method
    from space.controls import control_for

    lens = create_method("lens")
    with gr.Blocks():
        blades = control_for("lens", lens.param_spec("blades"))
        strength = control_for("lens", lens.param_spec("strength"))
    values = [value for _, value in blades.choices]
    assert values == [0, *range(3, 17)]  # 1 and 2 blades are not apertures: not offered
    for value in values:
        lens.param_spec("blades").validate(value)
    assert (strength.minimum, strength.maximum) == (0.0, 64.0)


def test_user_errors_log_one_line_and_faults_keep_their_traceback(
    settings: SpaceSettings, photo: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    import space.render_tab as render_tab

    render = make_render_fn(settings)
    with caplog.at_level(logging.INFO, logger="space.render_tab"), pytest.raises(gr.Error):
        render(photo, "lens", -1, -1, "auto", None, '{"strength": -5}')
    refused = [r for r in caplog.records if r.name == "space.render_tab"]
    assert len(refused) == 1 and refused[0].exc_info is None and "strength" in refused[0].getMessage()
    caplog.clear()

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(render_tab, "render_photo", broken)
    with caplog.at_level(logging.INFO, logger="space.render_tab"), pytest.raises(gr.Error, match="a bug"):
        render(photo, "lens", -1, -1, "auto", None, "{}")
    assert any(r.exc_info is not None for r in caplog.records if r.name == "space.render_tab")


def _write_run(folder: Path, *, synthetic: bool, name: str) -> Path:
    import json

    folder.mkdir(parents=True, exist_ok=True)
    methods = {"lens": 30.0, "gaussian": 27.0, "disk": 25.0}
    run = {
        "status": "complete",
        "profile": "pynet",
        "dataset": {"name": name, "split": "val", "synthetic": synthetic, "description": name, "fingerprint": {"n": 2}},
        "lpips": {"available": False, "reason": "no weights"},
        "methods": {
            label: {"metrics": {"psnr": {"mean": psnr}, "ssim": {"mean": 0.9}}, "runtime_s": {"mean": 0.1}}
            | {"n_images": 2, "hardware": "CPU"}
            for label, psnr in methods.items()
        },
    }
    (folder / "run.json").write_text(json.dumps(run))
    rows = ["method,id,psnr,ssim,lpips"] + [f"{m},{i},{p + i},0.9," for m, p in methods.items() for i in (1, 2)]
    (folder / "per_image.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_leaderboard_keeps_non_ebb_runs_apart_from_the_papers_rows(tmp_path: Path) -> None:
    from space.leaderboard_tab import _contents

    synthetic = SpaceSettings(results_dir=_write_run(tmp_path / "synthetic", synthetic=True, name="synthetic-8"))
    banner, _, table, figures, paper = _contents(synthetic)
    assert "Not EBB!" in banner and "synthetic-8" in banner and "synthetic procedural scenes" in banner
    assert paper is None and "reported in paper" not in set(table["Source"]) and len(table) == 3
    # one colour per method in every chart
    colours: dict[str, set] = {}
    for figure in figures:
        for trace in figure.data:
            if trace.type == "bar":
                for name, colour in zip(trace.x, trace.marker.color, strict=True):
                    colours.setdefault(name, set()).add(colour)
            elif trace.name:
                colours.setdefault(trace.name, set()).add(trace.marker.color)
    assert set(colours) == {"lens", "gaussian", "disk"} and all(len(c) == 1 for c in colours.values())
    assert len({next(iter(c)) for c in colours.values()}) == 3

    ebb = SpaceSettings(results_dir=_write_run(tmp_path / "ebb", synthetic=False, name="EBB!"))
    banner, _, table, _, paper = _contents(ebb)
    assert banner == "" and paper is None
    assert "reported in paper" in set(table["Source"]) and len(table) == 9  # the paper's six beside the measured

    nothing = SpaceSettings(results_dir=tmp_path / "nothing")
    banner, text, table, figures, paper = _contents(nothing)
    assert len(table) == 0 and figures == [] and paper is not None and "No evaluation results" in text


def _small_pynet_space(tmp_path: Path, monkeypatch) -> tuple[Path, SpaceSettings]:
    """A 320x212 photo and the Space's settings with a random-weights PyNET (sizes and plumbing, not bokeh quality);
    PyNET's trained scale (a 1536-px long side) is stood in for by 96 px to keep the tests fast (same code path)."""
    from bokeh_model import pynet_scale
    from bokeh_model.pynet import PyNET

    weights = tmp_path / "pynet"
    PyNET().save_pretrained(weights)
    photo = tmp_path / "photo.png"
    Image.open(EXAMPLES_DIR / "chelsea.png").convert("RGB").resize((320, 212)).save(photo)
    settings = SpaceSettings(
        pynet_weights=str(weights),
        depth_model=str(tmp_path / "no-depth-model"),
        results_dir=tmp_path / "results",
        max_render_side=160,
    )
    monkeypatch.setattr(pynet_scale, "PYNET_TRAINED_SIDE", 96)
    return photo, settings


def test_pynet_runs_at_its_trained_scale_or_a_labelled_preview(tmp_path: Path, monkeypatch) -> None:
    photo, settings = _small_pynet_space(tmp_path, monkeypatch)
    result, (before, after), _, notes = make_render_fn(settings)(str(photo), "pynet", -1, -1, "approximate", None, "{}")
    assert Image.open(result).size == (320, 212) and Image.open(after).size == (160, 106)
    assert "PyNET ran at its trained scale: photo at 96x64 px, network input 48x32" in notes, notes
    assert "320x212 px by guided upsampling" in notes and "PREVIEW" not in notes and "10 s" not in notes
    # A preview is only an explicit choice (the operator's setting, or the preview-size control), and labelled.
    preview = SpaceSettings(**{**settings.__dict__, "pynet_cpu_preview_side": 64})
    result, _, _, notes = make_render_fn(preview)(str(photo), "pynet", -1, -1, "approximate", None, "{}")
    assert Image.open(result).size == (320, 212)
    assert "PyNET PREVIEW (chosen): photo at 64x42 px, network input 32x21" in notes, notes


def test_pynet_reuses_its_output_for_another_click_on_the_same_photo(tmp_path: Path, monkeypatch) -> None:
    """PyNET has no focus input: with a given depth map, a second click on the same photo reuses the network output
    (same result, said so), while a new depth map renders anew."""
    from space import services
    from space.render_cache import ContentCache

    photo, settings = _small_pynet_space(tmp_path, monkeypatch)
    ramp = np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (212, 1))
    depth_a, depth_b = tmp_path / "depth_a.png", tmp_path / "depth_b.png"
    Image.fromarray(ramp).save(depth_a)
    Image.fromarray(255 - ramp).save(depth_b)
    calls = []
    original = services.render_pynet_at_scale
    monkeypatch.setattr(services, "render_pynet_at_scale", lambda *a, **k: calls.append(1) or original(*a, **k))
    monkeypatch.setattr(services, "PYNET_RENDERS", ContentCache(4))
    render = make_render_fn(settings)
    first, _, _, notes = render(str(photo), "pynet", 50, 60, "upload", str(depth_a), "{}")
    assert len(calls) == 1 and "reused" not in notes
    assert "PyNET has no focus control" in notes, notes
    second, _, _, notes = render(str(photo), "pynet", 250, 150, "upload", str(depth_a), "{}")
    assert len(calls) == 1 and "PyNET's output was reused" in notes, notes
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(second)))
    render(str(photo), "pynet", 250, 150, "upload", str(depth_b), "{}")
    assert len(calls) == 2


def test_bokehme_preview_on_cpu_scales_the_blur_and_gets_the_full_size_finish(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("the preview path is for CPU-only machines")
    photo = tmp_path / "photo.png"
    Image.open(EXAMPLES_DIR / "chelsea.png").convert("RGB").resize((320, 212)).save(photo)
    settings = SpaceSettings(
        depth_model=str(tmp_path / "no-depth-model"),
        results_dir=tmp_path / "results",
        max_render_side=160,
        cpu_preview_side=64,
    )
    render = make_render_fn(settings)
    params = '{"strength": 40}'
    result, (_, after), _, notes = render(str(photo), "bokehme_classical", -1, -1, "approximate", None, params)
    assert Image.open(result).size == (320, 212) and Image.open(after).size == (160, 106)
    assert "BokehMe classical preview: computed at 64x42 px" in notes and "K scaled to 16.0" in notes
