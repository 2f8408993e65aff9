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
