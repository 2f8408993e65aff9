"""The Gradio rater flow over HTTP with gradio_client: named endpoints, server-side validation, resume."""

from __future__ import annotations

import re
import socket
import types
from pathlib import Path

import gradio as gr
import pytest

from user_study.config import StudyConfig
from user_study.testing import make_fake_run
from user_study.ui import OUTPUT_NAMES, _check_token, build_demo, build_study_ui, get_service

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
        StudyConfig(
            items_per_session=2,
            min_view_ms=0,
            title="UI test study",
            gold_per_session=0,
            trap_per_session=0,
            completion_code="DONE42",
        ),
        study_id="ui",
    )
    svc.create_study(run, StudyConfig(items_per_session=2, min_view_ms=60_000), study_id="slow")
    demo = build_demo(url, organizer_token="org-token")
    port = _free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield types.SimpleNamespace(demo=demo, url=f"http://127.0.0.1:{port}/", svc=svc)
    demo.close()
    mp.undo()


def _client(app):
    from gradio_client import Client

    return Client(app.url, download_files=False, verbose=False)


def test_endpoints_and_rating_flow(app):
    from gradio_client.exceptions import AppError

    c = _client(app)
    api = c.view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == {"/begin", "/submit"}  # organizer and load handlers are private
    assert [p["parameter_name"] for p in api["named_endpoints"]["/submit"]["parameters"]] == [
        "score_value",
        "slot_token",
    ]
    with pytest.raises(AppError, match="No session"):
        c.predict(1, "x:0", api_name="/submit")
    out = dict(zip(OUTPUT_NAMES, c.predict("ui", "rater-1", "link", api_name="/begin"), strict=True))
    slot, progress = out["slot"], out["progress"]
    assert re.fullmatch(r"[0-9a-f]{32}:0", slot) and progress.startswith("**Item 1 of 3**")
    assert "**Target (DSLR photo)**" in (out["left_label"], out["right_label"])
    assert "/studies/ui/" in out["left_image"]["path"]  # served from the study folder, not copied
    slow = _client(app)
    slow_slot = slow.predict("slow", "rater-1", "link", api_name="/begin")[0]
    with pytest.raises(AppError, match="longer"):
        slow.predict(2, slow_slot, api_name="/submit")  # minimum viewing time is enforced on the server
    nxt = c.predict(2, slot, api_name="/submit")
    assert nxt[0].endswith(":1") and "Item 2 of 3" in nxt[1]
    dup = c.predict(3, slot, api_name="/submit")  # double click on the old slot: nothing new is stored
    assert dup[0] == nxt[0] and "already recorded" in dup[1]
    with pytest.raises(AppError, match="not the current one"):
        c.predict(1, nxt[0].replace(":1", ":2"), api_name="/submit")

    # a reload (new client session, same rater link) resumes at the same item
    c2 = _client(app)
    resumed = c2.predict("ui", "rater-1", "link", api_name="/begin")
    assert resumed[0] == nxt[0]
    # another rater cannot submit into this session
    c3 = _client(app)
    c3.predict("ui", "rater-2", "link", api_name="/begin")
    with pytest.raises(AppError, match="does not belong"):
        c3.predict(1, nxt[0], api_name="/submit")

    slot = resumed[0]
    for _ in range(2):
        out = c2.predict(1, slot, api_name="/submit")
        slot = out[0]
    assert slot == "" and "DONE42" in out[-1]["value"]
    frame = app.svc.ratings_frame("ui")
    r1 = frame[frame["rater_id"] == app.svc.rater_id("rater-1")]
    assert len(r1) == 3 and r1["item_id"].is_unique and r1.iloc[0]["score"] == 2
    with pytest.raises(AppError, match="unknown study"):
        c.predict("nope", "rater-1", "link", api_name="/begin")


def test_load_reads_query_params_and_token_checks(app):
    init = next(f.fn for f in app.demo.fns.values() if getattr(f.fn, "__name__", "") == "init")
    req = types.SimpleNamespace(query_params={"study": "ui", "PROLIFIC_PID": "abc"})
    study, rater, source, head, instr, choices = init(req)
    assert (study, rater, source) == ("ui", "abc", "prolific")
    assert head == "## UI test study" and "mostly different" in instr and "at least" not in instr
    assert choices["choices"][0] == ("0 — almost identical", 0)
    assert init(types.SimpleNamespace(query_params={"study": "zzz", "rater": "x"}))[3].startswith("## Unknown study")
    with pytest.raises(gr.Error, match="Wrong organizer token"):
        _check_token("org-token", "guess")
    with pytest.raises(gr.Error, match="disabled"):
        _check_token(None, "anything")
    _check_token("org-token", "org-token")


def test_mounts_inside_a_tab(app, tmp_path):
    with gr.Blocks() as outer:
        with gr.Tab("Other"):
            gr.Markdown("x")
        with gr.Tab("Study"):
            build_study_ui(app.svc.db_url, organizer_token=None)
    names = {f.api_name for f in outer.fns.values()}
    assert {"begin", "submit"} <= names
    with pytest.raises(RuntimeError, match="inside an open"):
        build_study_ui(app.svc.db_url)


def test_organizer_handlers_need_the_token(app):
    fns = {getattr(f.fn, "__name__", ""): f.fn for f in app.demo.fns.values()}
    with pytest.raises(gr.Error, match="Wrong organizer token"):
        fns["org_status"]("guess", "ui")
    text, per_method, failed = fns["org_status"]("org-token", "ui")
    assert "ratings from" in text and set(per_method["method"]) == {"a", "b"}
    table, fig = fns["org_results"]("org-token", "ui")
    assert list(table.columns[:7]) == ["method", "mos", "ci_low", "ci_high", "rank", "sig_rank", "n_ratings"]
    path = fns["org_export"]("org-token", "ui")
    assert path.endswith(".csv") and "rating_id" in Path(path).read_text()
    with pytest.raises(gr.Error, match="unknown study"):
        fns["org_status"]("org-token", "missing")
