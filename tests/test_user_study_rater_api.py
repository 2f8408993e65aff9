"""The rater JSON API (/study-api/v1): flow, server-side checks, opaque images, abuse limits, export, security."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.middleware import Middleware

from user_study.config import StudyConfig
from user_study.rater_api import build_rater_router, legacy_link_middleware
from user_study.rater_limits import ApiLimits, RateLimiter, client_key
from user_study.report import safe_cell
from user_study.service import StudyError, StudyService
from user_study.testing import make_fake_run

API = "/study-api/v1"


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    root = tmp_path_factory.mktemp("rater_api")
    run = make_fake_run(root / "run", methods=("a", "b", "c"), scenes=("1", "2", "3", "4"), size=(40, 30))
    service = StudyService(f"sqlite:///{root / 'study.db'}", rater_secret="api-secret", data_dir=root / "data")
    service.create_study(
        run, StudyConfig(items_per_session=3, min_view_ms=0, completion_code="DONE42"), study_id="flow"
    )
    service.create_study(run, StudyConfig(items_per_session=2, min_view_ms=60_000), study_id="slow")
    service.create_study(
        run,
        StudyConfig(items_per_session=4, target_votes_per_item=1, min_view_ms=0, lease_min=5),
        study_id="small",
    )
    service.root = root
    yield service
    service.close()


def _client(svc: StudyService, **limits) -> TestClient:
    app = FastAPI(middleware=[Middleware(legacy_link_middleware)])
    app.include_router(
        build_rater_router(svc, organizer_token="org-token", cache_dir=svc.root / "served", limits=ApiLimits(**limits))
    )
    return TestClient(app)


def _submit(c: TestClient, view: dict, score: object, position: int | None = None):
    pos = view["position"] if position is None else position
    return c.post(f"{API}/sessions/{view['session']}/submit", json={"position": pos, "score": score})


def test_session_flow_and_server_checks(svc):
    c = _client(svc)
    info = c.get(f"{API}/studies/flow").json()
    assert info["scale"]["0"] == "almost identical" and info["min_view_ms"] == 0
    view = c.post(f"{API}/begin", json={"study": "flow", "rater": "alice"}).json()
    n = view["n"]
    assert n == 3 + 3 and view["position"] == 0 and len(view["preload"]) == 2  # 3 test items + 3 controls
    assert c.get(f"{API}/sessions/{view['session']}").json()["position"] == 0
    assert c.post(f"{API}/sessions/{view['session']}/finish").status_code == 409  # not complete yet
    forged = view["session"].split(".")[0] + ".0123456789abcdef01234567"
    assert _submit(c, {**view, "session": forged}, 2).status_code == 404  # a session id alone is not enough
    assert _submit(c, view, 9).json()["error"] == "bad_score"
    assert _submit(c, view, None).json()["error"] == "no_score"
    assert _submit(c, view, 2, position=1).json()["error"] == "out_of_order"
    nxt = _submit(c, view, 2).json()
    assert nxt["status"] == "recorded" and nxt["position"] == 1
    again = _submit(c, view, 4).json()  # double click on the rated slot: nothing new stored, same next item
    assert again["status"] == "duplicate" and again["position"] == 1
    keys = set(nxt) - {"status"}
    while not nxt["done"]:
        assert set(nxt) - {"status"} == keys  # every item (test or check) carries exactly the same fields
        nxt = _submit(c, nxt, 1).json()
    assert nxt["completion_code"] == "DONE42" and nxt["position"] == n
    fin = c.post(f"{API}/sessions/{view['session']}/finish").json()
    assert fin["done"] and fin["completion_code"] == "DONE42"
    frame = svc.ratings_frame("flow")
    mine = frame[frame["rater_id"] == svc.rater_id("alice")]
    assert len(mine) == n and mine["item_id"].is_unique and mine.iloc[0]["score"] == 2
    # reload: the same link resumes, a new session after a completed one
    resumed = c.post(f"{API}/begin", json={"study": "flow", "rater": "alice"}).json()
    assert resumed["session"] != view["session"] and resumed["position"] == 0


def test_too_fast_is_rejected_with_retry_after(svc):
    c = _client(svc)
    view = c.post(f"{API}/begin", json={"study": "slow", "rater": "bob"}).json()
    res = _submit(c, view, 2)
    assert res.status_code == 409 and res.json()["error"] == "too_fast"
    assert int(res.headers["retry-after"]) >= 59 and res.json()["retry_after_ms"] > 59_000
    assert "longer" in res.json()["message"]


def test_images_are_opaque_and_look_alike(svc):
    """Test items, hidden references, gold and traps: same URL shape, same content type, same headers."""
    c = _client(svc)
    view = c.post(f"{API}/begin", json={"study": "flow", "rater": "carol"}).json()
    header_sets, srcs = set(), []
    while not view["done"]:
        for side in ("left", "right"):
            src = view[side]["src"]
            srcs.append(src)
            token = src.rsplit("/", 1)[1]
            assert src == f"{API}/images/{token}" and len(token) == 32 and int(token, 16) >= 0
            res = c.get(src)
            assert res.status_code == 200 and res.content[:8] == b"\x89PNG\r\n\x1a\n"
            header_sets.add(tuple(sorted((k, v) for k, v in res.headers.items() if k != "content-length")))
        view = _submit(c, view, 0).json()
    assert len(header_sets) == 1  # identical headers for every image of the session
    headers = dict(next(iter(header_sets)))
    assert headers["content-type"] == "image/png"
    assert not {"etag", "last-modified", "content-disposition"} & set(headers)
    kinds = set(svc.items_frame("flow")["kind"])
    assert {"hidden_ref", "gold", "trap"} <= kinds
    for src in srcs:
        assert not any(word in src for word in ("target", "trap", "items", "gold", ".png", ".jpg"))
    assert c.get(f"{API}/images/{'0' * 32}").status_code == 404
    assert c.get(f"{API}/images/..%2F..%2Fstudy.db").status_code == 404


def test_body_limit_and_bad_json(svc):
    c = _client(svc)
    res = c.post(f"{API}/begin", content=b'{"study": "' + b"x" * 100_000 + b'"}')
    assert res.status_code == 413 and res.json()["error"] == "too_large"
    assert c.post(f"{API}/begin", content=b"not json").status_code == 400
    assert c.post(f"{API}/begin", json=[1, 2]).status_code == 400
    assert c.post(f"{API}/begin", json={"study": "flow", "rater": "x", "source": "evil"}).status_code == 422


def test_unknown_study_lists_nothing(svc):
    c = _client(svc)
    res = c.get(f"{API}/studies/<img src=x>")
    assert res.status_code == 404 and res.headers["content-type"] == "application/json"
    assert "flow" not in res.text  # the public API does not list the known studies
    res = c.post(f"{API}/begin", json={"study": "nope", "rater": "x"})
    assert res.status_code == 404 and "flow" not in res.text


def test_legacy_links_redirect_with_their_parameters(svc):
    c = _client(svc)
    res = c.get("/?study=flow&PROLIFIC_PID=p1&STUDY_ID=s&SESSION_ID=t", follow_redirects=False)
    assert res.status_code == 307
    assert res.headers["location"] == "/rate?study=flow&PROLIFIC_PID=p1&STUDY_ID=s&SESSION_ID=t"


def test_begin_flood_from_one_client_does_not_lock_out_a_rater(svc):
    """200 ``begin`` calls with made-up ids from one client: most are refused with 429, the sessions that
    were opened hold their items only briefly, and a genuine rater elsewhere still gets a full session."""
    c = _client(svc, trusted_proxy_hops=1)
    attacker = {"X-Forwarded-For": "203.0.113.66"}
    codes = []
    for k in range(200):
        res = c.post(f"{API}/begin", json={"study": "small", "rater": f"fake-{k}"}, headers=attacker)
        codes.append(res.status_code)
        if res.status_code == 429:
            assert int(res.headers["retry-after"]) >= 1
    assert codes.count(200) <= ApiLimits.begin_burst and codes.count(429) >= 200 - ApiLimits.begin_burst
    spoofed = c.post(  # a forged left-most X-Forwarded-For entry does not give a fresh budget
        f"{API}/begin", json={"study": "small", "rater": "fake-x"}, headers={"X-Forwarded-For": "1.2.3.4, 203.0.113.66"}
    )
    assert spoofed.status_code == 429
    genuine = c.post(
        f"{API}/begin", json={"study": "small", "rater": "genuine"}, headers={"X-Forwarded-For": "198.51.100.7"}
    )
    view = genuine.json()
    assert genuine.status_code == 200 and view["n"] == 4 + 3 and not view["finished"]
    assert _submit(c, view, 1).json()["status"] == "recorded"


def test_new_sessions_per_client_are_capped(svc):
    c = _client(svc, begin_burst=1000, begin_per_min=1000, max_new_sessions=3)
    codes = [c.post(f"{API}/begin", json={"study": "flow", "rater": f"cap-{k}"}).status_code for k in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    resumed = c.post(f"{API}/begin", json={"study": "flow", "rater": "cap-0"})  # resuming is never capped
    assert resumed.status_code == 200


def test_rate_limiter_and_client_key():
    lim = RateLimiter(rate=1.0, burst=2)
    assert lim.take("a", now=0.0) == 0 and lim.take("a", now=0.0) == 0
    assert lim.take("a", now=0.0) == pytest.approx(1.0)
    assert lim.take("a", now=1.0) == 0  # refilled
    assert lim.take("b", now=0.0) == 0  # per key

    class Req:
        def __init__(self, xff):
            self.client = type("C", (), {"host": "10.0.0.1"})()
            self.headers = {"x-forwarded-for": xff} if xff else {}

    assert client_key(Req("1.1.1.1, 2.2.2.2"), 0) == "10.0.0.1"
    assert client_key(Req("1.1.1.1, 2.2.2.2"), 1) == "2.2.2.2"
    assert client_key(Req(""), 1) == "10.0.0.1"


def test_organizer_export_needs_the_token_and_leaves_no_file(svc):
    c = _client(svc)
    before = set(Path(tempfile.gettempdir()).glob("study_export_*"))
    ok = c.post(f"{API}/organizer/export", data={"token": "org-token", "study": "flow"})
    assert ok.status_code == 200 and ok.headers["content-type"].startswith("text/csv")
    assert 'filename="ratings_flow.csv"' in ok.headers["content-disposition"] and "rating_id" in ok.text
    js = c.post(f"{API}/organizer/export", json={"token": "org-token", "study": "flow", "format": "jsonl"})
    assert js.status_code == 200 and json.loads(js.text.splitlines()[0])["rating_id"]
    assert set(Path(tempfile.gettempdir()).glob("study_export_*")) == before  # temp files removed
    codes = [c.post(f"{API}/organizer/export", data={"token": f"guess{k}", "study": "flow"}) for k in range(8)]
    assert [r.status_code for r in codes[:5]] == [401] * 5 and codes[-1].status_code == 429
    assert int(codes[-1].headers["retry-after"]) >= 1


def test_restore_validates_like_import(svc, tmp_path):
    record = {
        "rating_id": "r" * 32,
        "study_id": "flow",
        "rater_id": "x" * 32,
        "item_id": svc.items_frame("flow")["item_id"].iloc[0],
        "score": 9,
        "submitted_at": "2026-11-30T10:00:00",
    }
    with pytest.raises(StudyError, match="record 1: score 9 is not allowed"):
        svc.restore_records("flow", [record])
    with pytest.raises(StudyError, match="record 1: submitted_at"):
        svc.restore_records("flow", [{**record, "score": 2, "submitted_at": "yesterday"}])
    with pytest.raises(StudyError, match="row 1: score 9"):
        svc.import_ratings("flow", pd.DataFrame({"rater": ["w"], "method": ["a"], "scene": ["1"], "score": [9]}))
    assert svc.restore_records("flow", [{**record, "score": 2}]) == {"restored": 1, "skipped": 0}


def test_formula_neutralising_after_blanks():
    assert safe_cell(' =HYPERLINK("http://x")') == '\' =HYPERLINK("http://x")'
    assert safe_cell("\t+1") == "'\t+1"
    assert safe_cell("  @SUM(A1)") == "'  @SUM(A1)"
    assert safe_cell("fine = ok") == "fine = ok" and safe_cell(3) == 3


def test_database_and_secrets_are_private(tmp_path):
    from user_study.config import ensure_rater_secret
    from user_study.hub import HubRatingSink

    db = tmp_path / "private" / "study.db"
    svc = StudyService(f"sqlite:///{db}", rater_secret="s", data_dir=tmp_path / "data")
    run = make_fake_run(tmp_path / "run", methods=("a",), scenes=("1", "2"))
    svc.create_study(run, StudyConfig(items_per_session=1, min_view_ms=0), study_id="p")
    svc.begin("p", "r")
    for path in [db, *db.parent.glob("study.db-*")]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    svc.close()
    loose = tmp_path / "loose.db"
    loose.touch(mode=0o644)
    os.chmod(loose, 0o644)
    StudyService(f"sqlite:///{loose}", rater_secret="s", data_dir=tmp_path / "data").close()
    assert stat.S_IMODE(loose.stat().st_mode) == 0o600  # an existing world-readable file is tightened
    secret_dir = tmp_path / "sec"
    ensure_rater_secret(secret_dir)
    os.chmod(secret_dir / ".rater_secret", 0o644)
    ensure_rater_secret(secret_dir)
    assert stat.S_IMODE((secret_dir / ".rater_secret").stat().st_mode) == 0o600

    class StandInApi:  # the scheduler only needs these; nothing leaves the machine
        def create_repo(self, **kw):
            return type("R", (), {"repo_id": kw["repo_id"]})()

        def run_as_future(self, fn, *a, **kw):
            from concurrent.futures import Future

            f = Future()
            f.set_result(None)
            return f

        def create_commit(self, **kw):
            return None

    sink = HubRatingSink("me/ratings", tmp_path / "hub", token="t", every=60, hf_api=StandInApi())
    sink.append({"rating_id": "1"})
    assert stat.S_IMODE(sink.path.stat().st_mode) == 0o600
    sink.stop()


def test_database_of_an_older_version_gets_the_new_column(tmp_path):
    """A study.db written before leases and image tokens existed opens, and its open session resumes."""
    import sqlite3

    db = tmp_path / "old.db"
    svc = StudyService(f"sqlite:///{db}", rater_secret="s", data_dir=tmp_path / "data")
    run = make_fake_run(tmp_path / "run", methods=("a",), scenes=("1", "2"))
    svc.create_study(run, StudyConfig(items_per_session=2, min_view_ms=0), study_id="old")
    first = svc.begin("old", "r")
    svc.close()
    con = sqlite3.connect(db)  # as the previous version left it: no lease column, no image tokens
    con.execute("DELETE FROM slot_image")
    con.execute("ALTER TABLE assignment DROP COLUMN lease_until")
    con.commit()
    con.close()
    svc = StudyService(f"sqlite:///{db}", rater_secret="s", data_dir=tmp_path / "data")
    again = svc.begin("old", "r")
    assert again.assignment_id == first.assignment_id and svc.image_path(again.left_image) is not None
    assert svc.submit(None, again.slot_token, 1).status == "recorded"
    svc.close()


def test_limits_from_the_environment(monkeypatch):
    monkeypatch.delenv("BOKEH_TRUSTED_PROXY_HOPS", raising=False)
    monkeypatch.setenv("SYSTEM", "spaces")
    assert ApiLimits.from_env().trusted_proxy_hops == 1  # a Space's proxy: one client address per rater
    monkeypatch.delenv("SYSTEM")
    monkeypatch.setenv("BOKEH_STUDY_BEGIN_PER_MIN", "5")
    assert ApiLimits.from_env().begin_per_min == 5 and ApiLimits.from_env().trusted_proxy_hops == 0
    monkeypatch.setenv("BOKEH_STUDY_MAX_BODY", "lots")
    with pytest.raises(ValueError, match="BOKEH_STUDY_MAX_BODY='lots' is not a number"):
        ApiLimits.from_env()


def test_the_study_package_does_not_import_the_app():
    # space imports user_study, never the reverse: the rater API and the CLI run without Gradio
    code = (
        "import importlib, pkgutil, sys, user_study\n"
        "for m in pkgutil.iter_modules(user_study.__path__):\n"
        "    importlib.import_module('user_study.' + m.name)\n"
        "print(sorted({k.split('.')[0] for k in sys.modules} & {'gradio', 'space'}))\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
