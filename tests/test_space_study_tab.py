"""The Study tab of the Gradio app (space/study_tab.py): rater links, organizer handlers, the mounted rater page."""

from __future__ import annotations

import logging
import socket
import types

import gradio as gr
import httpx
import pytest

from space.study_tab import _check_token, build_demo, build_study_ui
from user_study.config import StudyConfig
from user_study.rater_api import rater_link
from user_study.service import get_service
from user_study.testing import make_fake_run

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui")
    mp = pytest.MonkeyPatch()
    mp.setenv("BOKEH_DATA_DIR", str(root / "data"))
    mp.setenv("BOKEH_RATER_SECRET", "ui-secret")
    mp.delenv("BOKEH_STUDY_HUB_REPO", raising=False)
    url = f"sqlite:///{root / 'study.db'}"
    run = make_fake_run(root / "run", methods=("a", "b"), scenes=("1", "2", "3"))
    svc = get_service(url)
    svc.create_study(
        run,
        StudyConfig(items_per_session=2, min_view_ms=0, title="UI <b>test</b> study", completion_code="DONE42"),
        study_id="ui",
    )
    demo = build_demo(url, organizer_token="org-token")
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield types.SimpleNamespace(demo=demo, url=f"http://127.0.0.1:{port}", svc=svc)
    demo.close()
    mp.undo()


def test_no_rater_endpoints_in_gradio_and_the_page_is_mounted(app):
    from gradio_client import Client

    api = Client(app.url + "/", download_files=False, verbose=False).view_api(return_format="dict", print_info=False)
    assert api["named_endpoints"] == {}  # raters use the rater API, organizer handlers are private
    with httpx.Client(base_url=app.url) as c:
        old = c.get("/?study=ui&rater=r%201", follow_redirects=False)  # a link of the former Gradio form
        assert old.status_code == 307 and old.headers["location"] == "/rate?study=ui&rater=r+1"
        page = c.get(old.headers["location"])
        assert page.status_code == 200 and "rater.js" in page.text
        assert "frame-ancestors" not in page.headers["content-security-policy"]  # MTurk frames the page
        assert c.get("/").status_code == 200  # the Space itself is untouched
        begin = c.post("/study-api/v1/begin", json={"study": "ui", "rater": "r1"})
        assert begin.status_code == 200 and begin.json()["n"] >= 2


def test_link_builder_escapes(app):
    fns = {getattr(f.fn, "__name__", ""): f.fn for f in app.demo.fns.values()}
    text = fns["make_link"]("ui")
    assert "UI &lt;b&gt;test&lt;/b&gt; study" in text
    assert rater_link("ui") in text and "RATER_ID" not in text  # no placeholder to edit by hand
    # escaped as text, not inside a code span (where "&lt;" would show literally)
    assert fns["make_link"]("<img src=x>") == "No study with the id “&lt;img src=x&gt;”."
    request = types.SimpleNamespace(headers={"host": "space.example", "x-forwarded-proto": "https"})
    assert 'href="https://space.example/rate?study=ui"' in fns["make_link"]("ui", request)  # absolute


def test_token_checks_are_rate_limited():
    with pytest.raises(gr.Error, match="disabled"):
        _check_token(None, "anything")
    _check_token("org-token", "org-token", "client-a")
    messages = []
    for _ in range(8):
        with pytest.raises(gr.Error) as err:
            _check_token("org-token", "guess", "client-b")
        messages.append(err.value.message)
    assert messages[0] == "Wrong organizer token." and "Too many wrong organizer tokens" in messages[-1]
    _check_token("org-token", "org-token", "client-b")  # the right token still works


def test_mounts_inside_a_tab(app):
    with gr.Blocks() as outer:
        with gr.Tab("Other"):
            gr.Markdown("x")
        with gr.Tab("Study"):
            build_study_ui(app.svc.db_url, organizer_token=None)
    assert getattr(outer, "_rater_routes_mounted", False)
    with pytest.raises(RuntimeError, match="inside an open"):
        build_study_ui(app.svc.db_url)


def test_organizer_handlers_need_the_token(app, caplog, capfd):
    fns = {getattr(f.fn, "__name__", ""): f.fn for f in app.demo.fns.values()}
    capfd.readouterr()
    with caplog.at_level(logging.INFO):
        # expected mistakes: a message in the panel (outputs kept, no red Error badges) and one log line each
        text, *kept = fns["org_status"]("guess", "ui")
        assert text == "⚠ Wrong organizer token." and all(k == gr.skip() for k in kept)
        text, *kept = fns["org_results"]("org-token", "  ")
        assert text == "⚠ Enter the study id first." and all(k == gr.skip() for k in kept)
        text, *_ = fns["org_status"]("org-token", "missing")
        assert text.startswith('⚠ unknown study "missing"; known studies: ') and "[" not in text
    lines = [r for r in caplog.records if r.name == "space.study_tab"]
    assert len(lines) == 3 and all(r.exc_info is None for r in lines), [r.getMessage() for r in lines]
    assert "Traceback" not in "".join(capfd.readouterr())
    text, per_method, failed = fns["org_status"]("org-token", "ui")
    assert "ratings from" in text and set(per_method["value"]["method"]) == {"a", "b"}
    assert per_method["visible"] and not failed["visible"]  # an empty table is hidden, not headed "1 2 3"
    text, table, chart = fns["org_results"]("org-token", "ui")  # no ratings yet: no chart with empty axes
    assert text == "No ratings to analyse yet." and not table["visible"] and not chart["visible"]
    assert "org_export" not in fns  # exports only through the authenticated route, no public temp file
