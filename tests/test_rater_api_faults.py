"""Study organizer and rater API faults (issue 23, items 11 and 15-18): Prolific links and codes, client identity
behind proxies, bad input to the JSON API, CSV cells, and quality-control items that content must not betray."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from user_study.config import StudyConfig
from user_study.rater_api import build_rater_router
from user_study.rater_limits import ApiLimits
from user_study.service import StudyService
from user_study.testing import make_fake_run

API = "/study-api/v1"
PROLIFIC_URL = "https://app.prolific.com/submissions/complete?cc={code}"


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    run = make_fake_run(root / "run", methods=("a", "b", "c"), scenes=("1", "2", "3", "4"), size=(40, 30))
    service = StudyService(f"sqlite:///{root / 'study.db'}", rater_secret="faults-secret", data_dir=root / "data")
    plain = {"items_per_session": 2, "min_view_ms": 0}
    service.create_study(run, StudyConfig(**plain, completion_url=PROLIFIC_URL), study_id="percode")
    service.create_study(
        run, StudyConfig(**plain, completion_code="C0DE99", completion_url=PROLIFIC_URL), study_id="fixed"
    )
    service.create_study(run, StudyConfig(**plain, completion_url="https://example.org/done?c={code}"), study_id="own")
    service.create_study(run, StudyConfig(items_per_session=3, min_view_ms=0), study_id="qc")
    service.root = root
    yield service
    service.close()


def _client(svc: StudyService, **limits) -> TestClient:
    app = FastAPI()
    app.include_router(build_rater_router(svc, organizer_token="org", cache_dir=svc.root / "served", **limits))
    return TestClient(app)


def _finish(c: TestClient, study: str, rater: str) -> dict:
    view = c.post(f"{API}/begin", json={"study": study, "rater": rater}).json()
    while not view["done"]:
        view = c.post(
            f"{API}/sessions/{view['session']}/submit", json={"position": view["position"], "score": 1}
        ).json()
    return view


# ---------------------------------------------------------------- item 11: Prolific


def test_a_per_session_code_is_never_sent_to_prolific(svc):
    c = _client(svc, limits=ApiLimits())
    per_session = _finish(c, "percode", "p1")
    assert per_session["completion_code"] and per_session["completion_url"] == ""  # shown, not sent to Prolific
    fixed = _finish(c, "fixed", "p2")
    assert fixed["completion_url"] == "https://app.prolific.com/submissions/complete?cc=C0DE99"
    own = _finish(c, "own", "p3")  # the organizer's own page can take a per-session code
    assert own["completion_url"] == f"https://example.org/done?c={own['completion_code']}"


def test_create_warns_without_a_completion_code_and_prints_a_full_prolific_link(tmp_path, monkeypatch, capsys):
    from user_study.__main__ import main

    monkeypatch.setenv("BOKEH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BOKEH_RATER_SECRET", "s")
    run = make_fake_run(tmp_path / "run", methods=("a", "b"), scenes=("1", "2"))
    url = f"sqlite:///{tmp_path / 'study.db'}"
    assert main(["--db", url, "create", str(run), "--study-id", "p", "--completion-url", PROLIFIC_URL]) == 0
    out, err = capsys.readouterr()
    assert "warning: no --completion-code" in err and "Prolific cannot know" in err
    link = next(line for line in out.splitlines() if line.startswith("Prolific study URL:"))
    for name in ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID"):
        assert f"{name}={{{{%{name}%}}}}" in link, link
    assert "study=p" in link
    assert main(["--db", url, "create", str(run), "--study-id", "q", "--completion-code", "ABC123"]) == 0
    assert "warning" not in capsys.readouterr().err
