"""What a visitor reads and what the server logs for expected mistakes, without a browser (issue 23, items 2, 5, 6,
9 and 10; the browser side is tests/test_space_visitor_browser.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr
import pytest
from PIL import Image

from bokeh_model import create_method
from space import fetching
from space.config import EXAMPLES_DIR, SpaceSettings
from space.controls import export_image
from space.services import photo_size_problem
from space.status_tab import status_banner
from space.visitor import error_text, hide_paths, visitor_reason


@pytest.fixture()
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SpaceSettings:
    monkeypatch.setenv("BOKEH_CACHE", str(tmp_path / "cache"))  # no PyNET weights here
    monkeypatch.delenv("BOKEH_PYNET_WEIGHTS", raising=False)
    return SpaceSettings(depth_model=str(tmp_path / "no-depth"), results_dir=tmp_path / "results")


@pytest.fixture()
def fetch_states():
    saved = dict(fetching._STATES)
    fetching._STATES.clear()
    yield fetching._STATES
    fetching._STATES.clear()
    fetching._STATES.update(saved)


def test_visitor_lines_have_no_paths_or_recipes(fetch_states) -> None:
    reason = create_method("pynet").availability()[1]
    assert "/" in reason and "python -m" in reason  # the library's reason is a recipe for operators
    assert visitor_reason("pynet", reason) == "PyNET-Bokeh weights are not installed on this Space."
    fetching._set("PyNET-Bokeh weights", state="downloading")
    assert "being fetched" in visitor_reason("pynet", reason)
    fetching._set("PyNET-Bokeh weights", state="failed")
    assert "could not be fetched" in visitor_reason("pynet", reason)
    # a published method's missing weights (bokeh_model.method_weights): the fact, without the command and folder
    recipe = (
        "bokehme weights (default) are not installed; run `python -m bokeh_model fetch bokehme` (downloads) to put "
        "them in /root/.cache/bokeh_model/bokehme/default"
    )
    assert visitor_reason("bokehme", recipe) == "bokehme weights are not installed"
    short = visitor_reason("other", "needs onnxruntime (`pip install onnxruntime`). Then /opt/x/y is used.")
    assert short == "needs onnxruntime." and "/opt" not in short
    assert hide_paths("nothing at /root/.cache/bokeh_model/pynet-bokeh.") == "nothing at pynet-bokeh."
    assert hide_paths("from https://host.org/a/b.zip") == "from https://host.org/a/b.zip"  # URLs are kept
    assert error_text(gr.Error("Upload a photo first.")) == "Upload a photo first."  # str() gives "'Upload ...'"


def test_banner_follows_the_fetch(settings: SpaceSettings, fetch_states) -> None:
    assert "not installed here" in status_banner(settings)  # no fetch at all
    fetching._set("PyNET-Bokeh weights", state="downloading")
    assert "being downloaded in the background" in status_banner(settings)
    fetching._set("PyNET-Bokeh weights", state="failed", detail="HTTP 404")
    banner = status_banner(settings)
    assert "could not be downloaded" in banner and "being downloaded" not in banner


def test_failed_background_fetch_logs_one_line(settings: SpaceSettings, fetch_states, monkeypatch, caplog) -> None:
    from bokeh_model import fetch

    def refuse(*args, **kwargs):
        raise fetch.FetchError("cannot reach https://example.invalid/PyNET.zip (connection refused)")

    monkeypatch.setattr(fetch, "fetch_pynet", refuse)
    monkeypatch.setattr(fetch, "fetch_depth", refuse)
    with caplog.at_level(logging.WARNING, logger="space.fetching"):
        fetching._run(settings)
    lines = [r for r in caplog.records if r.name == "space.fetching"]
    heads = [r.getMessage().split(" failed: ")[0] + " failed" for r in lines]
    # the default depth model, PyNET, then whatever else the Space offers (other depth models, method weights)
    assert heads[:2] == ["background fetch of Depth model failed", "background fetch of PyNET-Bokeh weights failed"]
    assert all(h.startswith("background fetch of ") and h.endswith(" failed") for h in heads)
    assert all(r.exc_info is None for r in lines)  # an expected failure: one line, no traceback
    assert fetching.fetch_snapshot()[-1]["state"] == "failed"


def test_truncated_jpeg_is_refused_on_arrival(tmp_path: Path) -> None:
    whole = tmp_path / "whole.jpg"
    Image.open(EXAMPLES_DIR / "chelsea.png").convert("RGB").save(whole, quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert photo_size_problem(str(whole), 24) is None
    assert "could not be decoded" in (photo_size_problem(str(cut), 24) or "")
    assert photo_size_problem(str(cut), 24, decode=False) is None  # the header alone looks fine


def test_downloads_are_named_after_the_photo_and_method() -> None:
    image = Image.new("RGB", (8, 6), (10, 20, 30))
    import numpy as np

    first = export_image(np.asarray(image), "png", name="chelsea_lens")
    second = export_image(np.asarray(image), "download", name="chelsea_lens")
    assert Path(first).name == "chelsea_lens.png" and Path(second).name == "chelsea_lens.jpg"
    assert Path(first).parent != Path(second).parent  # equal names never overwrite each other
    assert Path(export_image(np.asarray(image), "jpeg", name="../../x y")).name == "x_y.jpg"


@pytest.mark.slow
def test_api_endpoints_and_inputs_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOKEH_DATA_DIR", str(tmp_path))
    from space.app import build_app

    demo = build_app(
        SpaceSettings(
            depth_model=str(tmp_path / "no-depth"),
            results_dir=tmp_path / "results",
            study_db=f"sqlite:///{tmp_path / 'study.db'}",
        )
    )
    api = demo.get_api_info()
    names = set(api["named_endpoints"])
    assert {"/render", "/compare", "/leaderboard", "/status"} <= names, names
    assert not [name for name in names if name.startswith("/lambda")], names  # page loads are private
    labels = [p["label"] for p in api["named_endpoints"]["/render"]["parameters"]]
    assert not [label for label in labels if label.startswith("parameter_")], labels
