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


# ---------------------------------------------------------------- item 15: client identity


def _behind_uvicorn_defaults(svc: StudyService, **limits) -> TestClient:
    """The router as uvicorn serves it by default: its proxy-headers middleware trusts X-Forwarded-For from the
    local peer (here TestClient's peer name stands for 127.0.0.1)."""
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    app = FastAPI()
    app.include_router(
        build_rater_router(svc, organizer_token="org", cache_dir=svc.root / "served", limits=ApiLimits(**limits))
    )
    return TestClient(ProxyHeadersMiddleware(app, trusted_hosts="testclient"))


def test_a_same_host_client_cannot_name_itself_with_x_forwarded_for(svc):
    c = _behind_uvicorn_defaults(svc, trusted_proxy_hops=0)
    codes = [
        c.post(
            f"{API}/begin", json={"study": "qc", "rater": f"flood-{k}"}, headers={"X-Forwarded-For": f"198.51.100.{k}"}
        ).status_code
        for k in range(60)
    ]
    assert codes.count(200) <= ApiLimits.begin_burst and codes.count(429) >= 60 - ApiLimits.begin_burst
    tries = [
        c.post(
            f"{API}/organizer/export",
            json={"token": f"wrong-{k}", "study": "qc"},
            headers={"X-Forwarded-For": f"192.0.2.{k}"},
        ).status_code
        for k in range(20)
    ]
    assert tries.count(429) >= 20 - ApiLimits.token_burst, tries


def test_client_key_trusts_only_the_configured_hops():
    from user_study.rater_limits import UNTRUSTED_FORWARDED, client_key

    class Req:
        def __init__(self, peer, xff):
            self.client = type("C", (), {"host": peer})()
            self.headers = {"x-forwarded-for": xff} if xff else {}

    assert client_key(Req("10.0.0.1", "1.1.1.1"), 0) == "10.0.0.1"
    # the server replaced the peer with the header's entry: never the client's own choice of key
    assert client_key(Req("1.1.1.1", "1.1.1.1"), 0) == UNTRUSTED_FORWARDED
    assert client_key(Req("2.2.2.2", "9.9.9.9, 2.2.2.2"), 0) == UNTRUSTED_FORWARDED
    assert client_key(Req("10.0.0.1", "9.9.9.9, 2.2.2.2"), 1) == "2.2.2.2"
    assert client_key(Req("2.2.2.2", "2.2.2.2"), 2) == UNTRUSTED_FORWARDED  # fewer hops than configured


def test_serve_turns_off_uvicorn_proxy_headers(tmp_path, monkeypatch):
    import uvicorn

    from user_study.__main__ import main

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(kwargs))
    monkeypatch.setenv("BOKEH_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("BOKEH_RATER_SECRET", "s")
    assert main(["--db", f"sqlite:///{tmp_path / 's.db'}", "serve"]) == 0
    assert seen.get("proxy_headers") is False


# ---------------------------------------------------------------- item 16: bad input to the JSON API


def test_non_finite_scores_surrogates_and_huge_ids_get_clean_4xx_answers(svc):
    c = TestClient(_client(svc, limits=ApiLimits()).app, raise_server_exceptions=False)
    view = c.post(f"{API}/begin", json={"study": "qc", "rater": "bad-input"}).json()
    url = f"{API}/sessions/{view['session']}/submit"
    for literal in ("Infinity", "-Infinity", "NaN", "1e400"):
        res = c.post(url, content=f'{{"position":0,"score":{literal}}}', headers={"content-type": "application/json"})
        assert res.status_code == 422, (literal, res.text)
        assert res.json()["error"] in ("bad_number", "bad_score")
    surrogate = c.post(url, content=b'{"position":0,"score":"\\ud800"}', headers={"content-type": "application/json"})
    begin = c.post(
        f"{API}/begin", content=b'{"study":"qc","rater":"\\udfff"}', headers={"content-type": "application/json"}
    )
    for res in (surrogate, begin):
        assert 400 <= res.status_code < 500 and "codec" not in res.text and "surrogate" not in res.text
        assert res.json()["error"] in ("bad_text", "bad_score")
    long_rater = c.post(f"{API}/begin", json={"study": "qc", "rater": "x" * 7000})
    assert long_rater.status_code == 422 and "at most 200" in long_rater.json()["message"]
    for res in (
        c.post(f"{API}/begin", json={"study": "s" * 5000, "rater": "y"}),
        c.get(f"{API}/studies/{'s' * 5000}"),
    ):
        assert res.status_code == 404 and len(res.text) < 300, res.text[:100]
    assert c.post(f"{API}/begin", json={"study": "qc", "rater": "r" * 200}).status_code == 200


# ---------------------------------------------------------------- item 17: CSV cells


def _spreadsheet_rows(text: str) -> list[list[str]]:
    """Rows as a spreadsheet splits them: a quoted field may hold line breaks; outside quotes CR, LF and CRLF
    each end a row (which is what spreadsheets do with a bare CR)."""
    rows, row, field, quoted, i = [], [], "", False, 0
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == '"' and text[i + 1 : i + 2] == '"':
                field, i = field + '"', i + 1
            elif ch == '"':
                quoted = False
            else:
                field += ch
        elif ch == '"':
            quoted = True
        elif ch == ",":
            row, field = [*row, field], ""
        elif ch in "\r\n":
            rows.append([*row, field])
            row, field = [], ""
            if ch == "\r" and text[i + 1 : i + 2] == "\n":
                i += 1
        else:
            field += ch
        i += 1
    if field or row:
        rows.append([*row, field])
    return rows


def test_csv_values_with_line_breaks_or_formulas_stay_in_their_cell():
    import pandas as pd

    from bokeh_model.files import spreadsheet_csv

    frame = pd.DataFrame({"method": ["\r=5", "a\nb", "=HYPERLINK(1)", "+1", "-2", "@x", "fine"], "n": range(7)})
    rows = _spreadsheet_rows(spreadsheet_csv(frame))
    assert len(rows) == 8 and all(len(row) == 2 for row in rows), rows
    cells = [row[0] for row in rows[1:]]
    assert cells == ["'\r=5", "a\nb", "'=HYPERLINK(1)", "'+1", "'-2", "'@x", "fine"]
    assert [row[1] for row in rows[1:]] == [str(i) for i in range(7)]


def test_study_csv_files_keep_a_bare_cr_inside_its_cell(svc, tmp_path):
    import pandas as pd

    from user_study.report import _write_csv, export_ratings

    _finish(_client(svc, limits=ApiLimits()), "qc", "csv-rater")
    text = export_ratings(svc, "qc", tmp_path / "ratings.csv").read_bytes().decode()
    rows = _spreadsheet_rows(text)
    assert len(rows) > 1 and len({len(row) for row in rows}) == 1 and text.endswith("\r\n")
    _write_csv(pd.DataFrame({"method": ["\r=5"], "mos": [1.0]}), tmp_path / "mos.csv")
    rows = _spreadsheet_rows((tmp_path / "mos.csv").read_bytes().decode())
    assert rows == [["method", "mos"], ["\r=5", "1.0"]]
    assert pd.read_csv(tmp_path / "mos.csv")["method"].tolist() == ["\r=5"]  # read back as written


# ---------------------------------------------------------------- item 18: quality-control items by content


def _pixels(data: bytes):
    import io

    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float64)


def _psnr(a, b) -> float:
    import numpy as np

    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_no_two_served_images_are_byte_identical(svc):
    """Hidden references show their target twice and gold items a target seen before: every served file has
    its own bytes (an invisible change, PSNR >= 50 dB against the source image)."""
    from pathlib import Path

    c = _client(svc, limits=ApiLimits(begin_burst=100, max_new_sessions=100))
    served: dict[str, bytes] = {}
    paths: dict[str, str] = {}
    for rater in ("qc-a", "qc-b", "qc-c"):
        view = c.post(f"{API}/begin", json={"study": "qc", "rater": rater}).json()
        while not view["done"]:
            for side in ("left", "right"):
                token = view[side]["src"].rsplit("/", 1)[1]
                res = c.get(view[side]["src"])
                assert res.status_code == 200 and res.headers["content-type"] == "image/png"
                assert c.get(view[side]["src"]).content == res.content  # the same slot side: the same file
                served[token], paths[token] = res.content, svc.image_path(token)
            view = c.post(
                f"{API}/sessions/{view['session']}/submit", json={"position": view["position"], "score": 1}
            ).json()
    assert len(served) >= 2 * 3 * 5
    assert len(set(served.values())) == len(served)  # no two files alike, whatever they show
    by_path: dict[str, list[str]] = {}
    for token, path in paths.items():
        by_path.setdefault(path, []).append(token)
    assert any(len(tokens) >= 2 for tokens in by_path.values())  # the same picture was served several times
    for token, data in served.items():
        assert _psnr(_pixels(data), _pixels(Path(paths[token]).read_bytes())) >= 50.0


def test_hidden_reference_sides_differ_in_bytes(svc):
    """The two sides of a hidden reference (the target twice) come as two different files."""
    c = _client(svc, limits=ApiLimits(begin_burst=100, max_new_sessions=100))
    view = c.post(f"{API}/begin", json={"study": "qc", "rater": "qc-hidden"}).json()
    found = 0
    while not view["done"]:
        tokens = [view[side]["src"].rsplit("/", 1)[1] for side in ("left", "right")]
        if svc.image_path(tokens[0]) == svc.image_path(tokens[1]):
            found += 1
            left, right = (c.get(view[side]["src"]).content for side in ("left", "right"))
            assert left != right and _psnr(_pixels(left), _pixels(right)) >= 50.0
        view = c.post(
            f"{API}/sessions/{view['session']}/submit", json={"position": view["position"], "score": 0}
        ).json()
    assert found >= 1


def test_traps_do_not_share_one_look(tmp_path):
    """Each trap has its own panel colour, position and wording, not one white band across the middle."""
    import numpy as np

    run = make_fake_run(tmp_path / "run", methods=("a", "b"), scenes=("1", "2", "3", "4", "5", "6"), size=(200, 150))
    service = StudyService(f"sqlite:///{tmp_path / 'study.db'}", rater_secret="t", data_dir=tmp_path / "data")
    try:
        service.create_study(run, StudyConfig(items_per_session=2, min_view_ms=0), study_id="traps")
    finally:
        service.close()
    traps = sorted((tmp_path / "data").rglob("traps/trap*.png"))
    assert len(traps) == 6
    tops, colours = set(), set()
    for trap in traps:
        scene = trap.stem.split("_", 1)[1]
        image = _pixels(trap.read_bytes())
        sources = [_pixels((run / "predictions" / m / f"{scene}.png").read_bytes()) for m in ("a", "b")]
        source = min(sources, key=lambda s: np.count_nonzero(np.any(s != image, axis=2)))
        changed = np.any(source != image, axis=2)
        tops.add(int(np.flatnonzero(changed.any(axis=1))[0]))
        values, counts = np.unique(image[changed].reshape(-1, 3), axis=0, return_counts=True)
        colours.add(tuple(int(v) for v in values[np.argmax(counts)]))
    assert len(tops) >= 3 and len(colours) >= 2, (tops, colours)
