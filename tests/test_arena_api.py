"""The arena's JSON API and integrity rules (``/arena-api/v1``), its Bradley-Terry board against an independent
fit (``choix``), durability across a restart, and the organizer CLI."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import random
import stat
from pathlib import Path

import numpy as np
import pytest
from _hub_testing import StandInHfApi
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from bokeh_model.registry import Method, registered_methods
from user_study.arena.api import ARENA_API, build_arena_router
from user_study.arena.config import ArenaConfig
from user_study.arena.pairing import available_methods, draw_pair
from user_study.arena.render import BasicRenderer
from user_study.arena.service import ArenaRefused, ArenaService
from user_study.rater_limits import ApiLimits

MIN_LOOK = 1.5  # long enough that "vote at once" stays too early on a loaded machine


class Dim(Method):
    """A stand-in method registered only inside a test: it must join the arena by name."""

    name, needs_depth, description = "test_dim", False, "darkens the photo (test only)"

    def render(self, image: np.ndarray, depth: np.ndarray | None) -> np.ndarray:
        return image * 0.5


class FastRenderer(BasicRenderer):
    """The stand-alone renderer limited to the quick methods (the lens and BokehMe's scatter compile Numba kernels for
    tens of seconds on a cold cache); a method registered by a test still joins through ``available_methods``."""

    def methods(self) -> list[str]:
        return [m for m in available_methods() if m in ("disk", "gaussian", "test_dim")]


def _photo_bytes(fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(0)
    arr = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    arr[12:36, 20:44] = 200
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def _service(tmp_path: Path, **cfg: object) -> ArenaService:
    config = ArenaConfig(min_look_s=MIN_LOOK, min_votes_for_rank=3, bootstrap_rounds=50, **cfg)
    return ArenaService(f"sqlite:///{tmp_path / 'study.db'}", secret="s", data_dir=tmp_path, config=config)


@pytest.fixture
def api(tmp_path: Path):
    svc = _service(tmp_path)
    app = FastAPI()
    app.include_router(
        build_arena_router(
            svc, FastRenderer(depth_model=str(tmp_path / "no-model")), limits=ApiLimits(trusted_proxy_hops=1)
        )
    )
    with TestClient(app) as client:
        yield client, svc, tmp_path
    svc.close()


def _as(ip: str) -> dict[str, str]:
    return {"X-Forwarded-For": ip}


def _battle(client: TestClient, ip: str, consent: bool = False) -> dict:
    data = {"x": "0.5", "y": "0.5", **({"consent": "1"} if consent else {})}
    r = client.post(
        f"{ARENA_API}/battles", files={"photo": ("p.png", _photo_bytes(), "image/png")}, data=data, headers=_as(ip)
    )
    assert r.status_code == 200, r.text
    return r.json()


def _show(client: TestClient, battle: dict) -> None:
    for side in ("a", "b"):
        r = client.get(battle[side]["src"])
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"


def test_a_genuine_visitor_votes_and_sees_the_names_only_afterwards(api) -> None:
    client, svc, tmp_path = api
    b = _battle(client, "10.0.0.1")
    assert set(b) == {"battle", "a", "b", "min_look_ms", "depth_source"}  # no names before the vote
    text = json.dumps(b)
    assert not any(m in text for m in ("disk", "gaussian"))
    vote = {"battle": b["battle"], "choice": "a"}
    r = client.post(f"{ARENA_API}/votes", json=vote, headers=_as("10.0.0.1"))
    assert (r.status_code, r.json()["error"]) == (409, "not_shown")  # images never fetched
    _show(client, b)
    r = client.post(f"{ARENA_API}/votes", json=vote, headers=_as("10.0.0.1"))
    assert (r.status_code, r.json()["error"]) == (409, "too_fast") and "Retry-After" in r.headers
    import time

    time.sleep(MIN_LOOK + 0.05)
    r = client.post(f"{ARENA_API}/votes", json=vote, headers=_as("10.0.0.1"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert {body["a"], body["b"]} <= {"disk", "gaussian", "test_dim"} and body["a"] != body["b"]
    assert body["seconds_shown"] >= MIN_LOOK
    # a double click is answered the same and stored once; another choice is refused
    again = client.post(f"{ARENA_API}/votes", json=vote, headers=_as("10.0.0.1"))
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    other = client.post(f"{ARENA_API}/votes", json={**vote, "choice": "b"}, headers=_as("10.0.0.1"))
    assert (other.status_code, other.json()["error"]) == (409, "already_voted")
    votes = svc.votes_frame()
    assert len(votes) == 1
    row = votes.iloc[0]
    assert row["photo_width"] == 64 and row["photo_height"] == 48 and len(row["photo_sha256"]) == 64
    assert row["focus_x"] == 0.5 and "APPROXIMATE" in row["depth_source"] and not row["consent"]
    # the photo was not kept anywhere without consent
    assert not (tmp_path / "arena" / "photos").exists()
    board = client.get(f"{ARENA_API}/leaderboard").json()
    assert board["votes"] == 1 and {r["method"] for r in board["rows"]} >= {body["a"], body["b"]}
    assert all(r["rank"] is None for r in board["rows"])  # below the minimum of votes


def test_200_votes_for_battles_never_shown_to_this_client_are_refused(api) -> None:
    client, svc, _ = api
    battles = [_battle(client, "10.0.0.1") for _ in range(3)]
    for b in battles:
        _show(client, b)
    import time

    time.sleep(MIN_LOOK + 0.05)
    statuses = []
    for i in range(200):
        target = battles[i % 3]["battle"] if i % 2 else f"{i:032x}"
        r = client.post(f"{ARENA_API}/votes", json={"battle": target, "choice": "a"}, headers=_as("10.6.6.6"))
        statuses.append(r.status_code)
        assert r.headers["content-type"] == "application/json" and "error" in r.json()
    assert set(statuses) <= {404, 429} and statuses[:30] == [404] * 30  # refused; then rate-limited
    assert len(svc.votes_frame()) == 0
    # the genuine visitor's votes still count
    for b in battles:
        assert (
            client.post(
                f"{ARENA_API}/votes", json={"battle": b["battle"], "choice": "tie"}, headers=_as("10.0.0.1")
            ).status_code
            == 200
        )
    assert len(svc.votes_frame()) == 3
    # each refusal is recorded until the client's bucket (30, refilling 0.5/s) is empty; then no database read
    logged = int(svc.refusals().query("code == 'unknown_battle'")["refused"].sum())
    assert 31 <= logged < 60


def test_bad_requests_get_the_rater_api_errors(api) -> None:
    client, _, tmp_path = api
    r = client.post(
        f"{ARENA_API}/votes", content=b"{" + b" " * 9000 + b"}", headers={"content-type": "application/json"}
    )
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    r = client.post(f"{ARENA_API}/votes", content=b"not json", headers={"content-type": "application/json"})
    assert (r.status_code, r.json()["error"]) == (400, "bad_json")
    r = client.post(f"{ARENA_API}/votes", json={"battle": "x", "choice": "left"})
    assert (r.status_code, r.json()["error"]) == (422, "bad_choice")
    r = client.post(
        f"{ARENA_API}/battles", files={"photo": ("a.txt", b"hello", "text/plain")}, data={"x": "0.5", "y": "0.5"}
    )
    assert (r.status_code, r.json()["error"]) == (422, "bad_photo") and "not an image" in r.json()["message"]
    r = client.post(f"{ARENA_API}/battles", files={"photo": ("p.png", _photo_bytes())}, data={"x": "2", "y": "0.5"})
    assert (r.status_code, r.json()["error"]) == (422, "bad_focus")
    r = client.post(f"{ARENA_API}/battles", data={"x": "0.5", "y": "0.5"})
    assert r.json()["error"] == "no_photo"
    assert client.get(f"{ARENA_API}/images/{'0' * 32}").status_code == 404


def test_consent_keeps_the_photo_owner_only(api) -> None:
    client, svc, tmp_path = api
    _battle(client, "10.0.0.2", consent=True)
    files = list((tmp_path / "arena" / "photos").iterdir())
    assert len(files) == 1 and stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert files[0].read_bytes() == _photo_bytes()


def test_a_newly_registered_method_joins_by_name(api) -> None:
    client, svc, _ = api
    with registered_methods(Dim):
        for i in range(3):  # three pairs among disk, gaussian, test_dim: least-voted first, so each appears
            _battle(client, f"10.1.0.{i}")
        counts = svc.pair_counts()
    assert {("disk", "test_dim"), ("gaussian", "test_dim"), ("disk", "gaussian")} == set(counts)


def test_draw_pair_prefers_the_least_voted_pair_and_randomises_sides() -> None:
    counts = {("a", "b"): 5, ("a", "c"): 5, ("b", "c"): 1}
    rng = random.Random(0)
    draws = [draw_pair(["a", "b", "c"], counts, rng) for _ in range(40)]
    assert all({x, y} == {"b", "c"} for x, y, _ in draws)
    assert 5 < sum(s for *_, s in draws) < 35
    with pytest.raises(ValueError, match="two available"):
        draw_pair(["a"], {}, rng)


def _store_votes(svc: ArenaService, votes: list[tuple[str, str, str, str]]) -> None:
    shown = dt.datetime(2026, 1, 1)
    img = np.zeros((4, 4, 3), np.uint8)
    for client, a, b, choice in votes:
        battle = svc.open_battle(
            client_hash=client, channel="api", methods=(a, b), swapped=False, focus=(0.5, 0.5), params={},
            depth_source="test", photo_sha256="0" * 64, photo_size=(4, 4), images=(img, img),
        )  # fmt: skip
        with svc.Session() as s, s.begin():
            from user_study.arena.storage import ArenaBattle

            s.get(ArenaBattle, battle.id).shown_at = shown
        svc.vote(battle.id, client, choice, now=shown + dt.timedelta(seconds=5))


def test_board_equals_an_independent_bradley_terry_fit_and_survives_a_restart(tmp_path: Path) -> None:
    choix = pytest.importorskip("choix")
    svc = _service(tmp_path)
    methods = ["disk", "gaussian", "lens", "pynet", "bokehme"]
    true = {"disk": 0.0, "gaussian": -0.7, "lens": 0.6, "pynet": 1.1, "bokehme": 0.3}
    rng = random.Random(1)
    votes = []
    for i in range(400):
        a, b = rng.sample(methods, 2)
        p = 1 / (1 + np.exp(true[b] - true[a]))
        u = rng.random()
        choice = "tie" if u < 0.08 else "bad" if u < 0.12 else ("a" if rng.random() < p else "b")
        votes.append((f"client{i % 37:02d}", a, b, choice))
    _store_votes(svc, votes)
    board, info = svc.leaderboard()
    assert info["votes"] == 400 and info["flagged_clients"] == 0
    # the independent fit: choix's iterative Luce spectral ranking on the same wins (ties half each way) and the
    # same 0.1 pseudo-wins per ordered pair that the study's fit adds
    names = sorted(methods)
    w = np.zeros((5, 5))
    for _, a, b, c in votes:
        i, j = names.index(a), names.index(b)
        wa = {"a": 1.0, "b": 0.0}.get(c, 0.5)
        w[i, j] += wa
        w[j, i] += 1 - wa
    theta = choix.ilsr_pairwise_dense(w + 0.1 * (1 - np.eye(5)), tol=1e-12, max_iter=10_000)
    expected = 1000 + 400 / np.log(10) * (theta - theta.mean())
    got = board.set_index("method").loc[names, "strength"].to_numpy(float)
    np.testing.assert_allclose(got, expected, atol=1e-3)
    assert (board["ci_low"] <= board["strength"]).all() and (board["strength"] <= board["ci_high"]).all()
    assert board.iloc[0]["method"] == "pynet" and board["rank"].notna().all()
    wins = board.set_index("method")
    assert int(wins["votes"].sum()) == 800
    # restart: a new process (service) on the same database has every vote and the same board
    svc.close()
    again = _service(tmp_path)
    assert len(again.votes_frame()) == 400
    board2, _ = again.leaderboard()
    np.testing.assert_allclose(board2["strength"], board["strength"], atol=1e-9)
    db = tmp_path / "study.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    again.close()


def test_a_client_who_always_picks_one_side_is_flagged_and_left_out(tmp_path: Path) -> None:
    svc = _service(tmp_path)
    votes = [("honest", "disk", "gaussian", "a" if i % 3 else "b") for i in range(12)]
    votes += [("lefty", "gaussian", "disk", "a") for _ in range(12)]
    _store_votes(svc, votes)
    board, info = svc.leaderboard()
    assert info["flagged_clients"] == 1 and info["votes"] == 12 and info["flagged_votes_left_out"] == 12
    full, info2 = svc.leaderboard(include_flagged=True)
    assert info2["votes"] == 24
    assert svc.exclude_client(svc.votes_frame()["client_hash"].iloc[-1], "always left") == 12
    assert len(svc.votes_frame()) == 12 and len(svc.votes_frame(include_excluded=True)) == 24
    svc.close()


def test_cli_report_matches_the_board(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from user_study.__main__ import main

    monkeypatch.setenv("BOKEH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BOKEH_RATER_SECRET", "s")
    svc = _service(tmp_path)
    _store_votes(svc, [(f"c{i}", "disk", "gaussian", "ab"[i % 2]) for i in range(6)] + [("c9", "lens", "disk", "tie")])
    board, _ = svc.leaderboard()
    svc.close()
    db = f"sqlite:///{tmp_path / 'study.db'}"
    monkeypatch.setenv("BOKEH_ARENA_ROUNDS", "50")
    monkeypatch.setenv("BOKEH_ARENA_MIN_VOTES", "3")
    assert main(["--db", db, "arena", "export", "--out", str(tmp_path / "out")]) == 0
    assert main(["--db", db, "arena", "report", "--out", str(tmp_path / "out")]) == 0
    out = tmp_path / "out"
    assert len((out / "arena_votes.jsonl").read_text().splitlines()) == 7
    rows = json.loads((out / "arena_leaderboard.json").read_text())["rows"]
    np.testing.assert_allclose([r["strength"] for r in rows], board["strength"], atol=1e-9)
    assert "plotly" in (out / "arena_heatmap.html").read_text()[:100000].lower()
    assert os.path.getsize(out / "arena_clients.csv") > 0


def test_votes_written_as_one_group_get_their_own_answers(tmp_path: Path) -> None:
    svc = _service(tmp_path)
    img = np.zeros((4, 4, 3), np.uint8)
    ids = []
    for _ in range(3):
        b = svc.open_battle(
            client_hash="c", channel="api", methods=("disk", "gaussian"), swapped=True, focus=(0.1, 0.9), params={},
            depth_source="test", photo_sha256="0" * 64, photo_size=(4, 4), images=(img, img),
        )  # fmt: skip
        svc.mark_shown(b.id)
        ids.append(b.id)
    later = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(seconds=5)
    answers = svc.vote_many(
        [(ids[0], "c", "a"), (ids[0], "c", "a"), (ids[1], "c", "b"), (ids[1], "c", "tie"), (ids[2], "x", "a")],
        now=later,
    )
    kinds = [a.code if isinstance(a, ArenaRefused) else a.status for a in answers]
    assert kinds == ["recorded", "duplicate", "recorded", "already_voted", "unknown_battle"]
    assert len(svc.votes_frame()) == 2
    svc.close()


def test_counted_votes_go_to_the_hub_backup_as_json_lines(tmp_path: Path) -> None:
    """Like the study's ratings: one JSON line per counted vote (none for a double click), pushed by the
    CommitScheduler under ``arena/`` (a stand-in HfApi here), owner-only file."""
    from user_study.arena.hub import ArenaVoteSink

    api = StandInHfApi()
    sink = ArenaVoteSink("org/study", tmp_path / "hub", token="x", every=60, hf_api=api)
    svc = _service(tmp_path)
    svc.sink = sink
    _store_votes(svc, [("c1", "disk", "gaussian", "a"), ("c2", "lens", "disk", "bad")])
    votes = svc.votes_frame()
    battle = votes.loc[votes["client_hash"] == "c1", "battle_id"].iloc[0]
    svc.vote(battle, "c1", "a")  # a double click: answered, not written again
    lines = [json.loads(line) for line in sink.path.read_text().splitlines()]
    assert sorted((r["method_a"], r["choice"]) for r in lines) == [("disk", "a"), ("lens", "bad")]
    assert {"battle_id", "photo_sha256", "seconds_shown", "client_hash", "depth_source", "focus_x"} <= set(lines[0])
    assert stat.S_IMODE(sink.path.stat().st_mode) == 0o600
    sink.scheduler.trigger().result()
    sink.stop()
    pushed = [op.path_in_repo for _, ops in api.commits for op in ops]
    assert pushed and all(p.startswith("arena/votes-") and p.endswith(".jsonl") for p in pushed)
    svc.close()
