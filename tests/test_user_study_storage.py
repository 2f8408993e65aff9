"""Storage and session logic of the user study against SQLite and a real PostgreSQL server.

Reliability: concurrent submits from many raters, double submits, racing session starts and a writer
process killed with SIGKILL mid-stream: no rating may be lost or duplicated.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
from _hub_testing import StandInHfApi
from _postgres import PostgresServer, find_pg_bin
from sqlalchemy import func, select, text

from user_study.config import StudyConfig
from user_study.service import StudyError, StudyService, SubmitRejected
from user_study.storage import Assignment, Event, Rating, Slot, hash_rater, utcnow
from user_study.testing import make_fake_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pg_server():
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL binaries not found (install the Debian 'postgresql' package)")
    server = PostgresServer()
    try:
        server.start()
    except RuntimeError as exc:
        server.stop()
        pytest.skip(f"could not start PostgreSQL: {exc}")
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    server = request.getfixturevalue("pg_server")
    return server.new_database("t" + uuid.uuid4().hex[:10])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_fake_run(tmp_path_factory.mktemp("run") / "run", methods=("a", "b", "c"), scenes=("1", "2", "3", "4"))


def _service(db_url: str, tmp_path: Path, sink=None) -> StudyService:
    return StudyService(db_url, rater_secret="test-secret", data_dir=tmp_path / "data", sink=sink)


def _study(svc: StudyService, run_dir: Path, **cfg) -> str:
    base = {"items_per_session": 4, "min_view_ms": 0, "target_votes_per_item": 50}
    base.update(cfg)
    return svc.create_study(run_dir, StudyConfig(**base), study_id="s" + uuid.uuid4().hex[:6])


def _rate_session(svc: StudyService, sid: str, rater: str, score: int = 2) -> list[str]:
    view = svc.begin(sid, rater)
    ids = []
    while not view.done and not view.finished:
        res = svc.submit(view.rater_id, view.slot_token, score)
        assert res.status == "recorded"
        ids.append(res.rating_id)
        view = res.view
    return ids


def _no_duplicates(svc: StudyService) -> None:
    with svc.Session() as s:
        dup = s.execute(
            select(Rating.rater_id, Rating.item_id, func.count())
            .group_by(Rating.rater_id, Rating.item_id)
            .having(func.count() > 1)
        ).all()
    assert dup == []


def test_create_and_full_session(db_url, tmp_path, run_dir):
    svc = _service(db_url, tmp_path)
    sid = _study(svc, run_dir)
    items = svc.items_frame(sid)
    assert items["kind"].value_counts().to_dict() == {"test": 12, "hidden_ref": 4, "gold": 4, "trap": 4}
    view = svc.begin(sid, "alice")
    assert view.n_slots == 4 + 3 and view.position == 0
    assert {view.left_label, view.right_label} == {"Rendered image", "Target (DSLR photo)"}
    ids = _rate_session(svc, sid, "alice")
    assert len(ids) == 7
    done = svc.begin(sid, "alice")  # completed session -> a new one with unseen items
    assert not done.done and done.assignment_id != view.assignment_id
    frame = svc.ratings_frame(sid)
    assert len(frame) == 7 and frame["rater_id"].nunique() == 1
    # methods balanced (4 test items over 3 methods -> 2/1/1) and no scene twice among the test items
    tests = frame[frame["kind"] == "test"]
    assert sorted(tests["method"].value_counts().tolist()) == [1, 1, 2]
    assert tests["scene"].is_unique
    # raw rater id is never stored
    assert "alice" not in frame.to_csv()
    assert frame["rater_id"].iloc[0] == hash_rater("test-secret", "link", "alice")
    svc.close()


def test_submit_validation(db_url, tmp_path, run_dir):
    svc = _service(db_url, tmp_path)
    sid = _study(svc, run_dir, min_view_ms=2000, session_ttl_min=1)
    t0 = utcnow()
    v = svc.begin(sid, "bob", now=t0)
    other = svc.begin(sid, "carol", now=t0)
    with pytest.raises(SubmitRejected) as e:
        svc.submit(v.rater_id, v.slot_token, 2, now=t0 + dt.timedelta(milliseconds=500))
    assert e.value.code == "too_fast"
    with pytest.raises(SubmitRejected) as e:
        svc.submit(other.rater_id, v.slot_token, 2, now=t0 + dt.timedelta(seconds=3))
    assert e.value.code == "wrong_session"
    with pytest.raises(SubmitRejected) as e:
        svc.submit(v.rater_id, f"{v.assignment_id}:3", 2, now=t0 + dt.timedelta(seconds=3))
    assert e.value.code == "out_of_order"
    for bad in (5, -1, "x", None, 2.5):
        with pytest.raises(SubmitRejected) as e:
            svc.submit(v.rater_id, v.slot_token, bad, now=t0 + dt.timedelta(seconds=3))
        assert e.value.code == "bad_score"
    with pytest.raises(SubmitRejected) as e:
        svc.submit(v.rater_id, "garbage", 2)
    assert e.value.code == "bad_slot"
    ok = svc.submit(v.rater_id, v.slot_token, "3", now=t0 + dt.timedelta(seconds=3))
    assert ok.status == "recorded" and ok.view.position == 1
    # double submit of the same slot: nothing new is written, the stored score stays
    again = svc.submit(v.rater_id, v.slot_token, 1, now=t0 + dt.timedelta(seconds=4))
    assert again.status == "duplicate" and again.rating_id == ok.rating_id
    # the lease expires: further submits are refused and the next begin opens a fresh session
    late = t0 + dt.timedelta(minutes=10)
    with pytest.raises(SubmitRejected) as e:
        svc.submit(v.rater_id, ok.view.slot_token, 2, now=late)
    assert e.value.code == "expired"
    fresh = svc.begin(sid, "bob", now=late)
    assert fresh.assignment_id != v.assignment_id
    with pytest.raises(StudyError):
        svc.begin("nope", "bob")
    with pytest.raises(StudyError):
        svc.begin(sid, "   ")
    frame = svc.ratings_frame(sid)
    assert len(frame) == 1 and frame["score"].iloc[0] == 3
    events = svc.events_frame(sid)
    assert {"duplicate_submit", "session_expired", "session_started"} <= set(events["kind"])
    svc.close()


def _session_items(svc: StudyService, assignment_id: str) -> set[str]:
    with svc.Session() as s:
        return set(s.scalars(select(Slot.item_id).where(Slot.assignment_id == assignment_id)))


def test_leases_and_vote_target(db_url, tmp_path, run_dir):
    """Unrated sessions hold their items only for ``lease_min``; each rating renews the lease; when every
    item is leased the least-served ones are served anyway instead of turning the rater away."""
    svc = _service(db_url, tmp_path)
    sid = _study(
        svc,
        run_dir,
        items_per_session=6,
        target_votes_per_item=1,
        gold_per_session=0,
        trap_per_session=0,
        hidden_ref_per_session=0,
        session_ttl_min=60,
        lease_min=5,
        pairing="balanced_block",  # whole scenes: which items a session gets depends only on the leases
    )
    t0 = utcnow()
    minutes = lambda m: t0 + dt.timedelta(minutes=m)  # noqa: E731
    r1 = svc.begin(sid, "r1", now=t0)
    a_items = _session_items(svc, r1.assignment_id)
    r2 = svc.begin(sid, "r2", now=minutes(4))  # the other six, not r1's leased ones
    b_items = _session_items(svc, r2.assignment_id)
    assert len(a_items) == len(b_items) == 6 and not a_items & b_items
    r4 = svc.begin(sid, "r4", now=minutes(6.5))  # r1 never rated: its lease ran out after 5 min
    assert _session_items(svc, r4.assignment_id) == a_items
    r3 = svc.begin(sid, "r3", now=minutes(7))  # everything is leased at its target: served anyway
    assert r3.n_slots == 6 and not r3.finished
    # r1 still may rate (the session is valid for 60 min); the rating renews r1's lease
    res = svc.submit(r1.rater_id, r1.slot_token, 2, now=minutes(7))
    assert res.status == "recorded"
    with svc.Session() as s:
        lease = s.get(Assignment, r1.assignment_id).lease_until
    assert abs((lease - minutes(12)).total_seconds()) < 1
    # an item rated up to its target is not served again, leased or not
    with svc.Session() as s:
        rated_item = s.scalar(select(Rating.item_id).where(Rating.rater_id == r1.rater_id))
    r5 = svc.begin(sid, "r5", now=minutes(8))
    assert rated_item not in _session_items(svc, r5.assignment_id)
    svc.close()


def test_fake_begins_do_not_lock_out_a_rater(db_url, tmp_path, run_dir):
    """200 sessions opened with made-up ids (and never rated) leave a genuine rater a full session."""
    svc = _service(db_url, tmp_path)
    sid = _study(svc, run_dir, items_per_session=4, target_votes_per_item=2, gold_per_session=0, trap_per_session=0)
    t0 = utcnow()
    for k in range(200):
        svc.begin(sid, f"fake-{k}", now=t0)
    genuine = svc.begin(sid, "genuine", now=t0)
    assert genuine.n_slots == 4 + 1 and not genuine.finished  # 4 test items + 1 hidden reference
    res = svc.submit(genuine.rater_id, genuine.slot_token, 1, now=t0 + dt.timedelta(seconds=1))
    assert res.status == "recorded"
    svc.close()


def test_blocked_rater_and_exclusions(db_url, tmp_path, run_dir):
    svc = _service(db_url, tmp_path)
    sid = _study(svc, run_dir)
    ids = _rate_session(svc, sid, "dave")
    rid = svc.rater_id("dave")
    assert svc.exclude(sid, reason="test exclusion", rating_ids=ids[:2]) == 2
    with pytest.raises(StudyError):
        svc.exclude(sid, reason=" ", rating_ids=ids)
    frame = svc.ratings_frame(sid)
    assert len(frame) == len(ids)  # never deleted
    assert frame["excluded"].sum() == 2 and set(frame.loc[frame["excluded"], "exclusion_reason"]) == {"test exclusion"}
    svc.block_rater(rid)
    with pytest.raises(StudyError, match="blocked"):
        svc.begin(sid, "dave")
    svc.close()


def test_import_ratings(db_url, tmp_path, run_dir):
    svc = _service(db_url, tmp_path)
    sid = _study(svc, run_dir)
    frame = pd.DataFrame(
        {
            "rater": ["w1", "w1", "w2", "w1"],
            "method": ["a", "b", "a", "a"],
            "scene": ["1", "1", "1", "1"],
            "score": [1, 3, 2, 4],
        }
    )
    assert svc.import_ratings(sid, frame, source="mturk") == {"imported": 3, "duplicates": 1}
    assert svc.import_ratings(sid, frame, source="mturk") == {"imported": 0, "duplicates": 4}
    with pytest.raises(StudyError, match="no item"):
        svc.import_ratings(sid, frame.assign(method="zzz"))
    with pytest.raises(StudyError, match="columns"):
        svc.import_ratings(sid, frame.drop(columns=["score"]))
    got = svc.ratings_frame(sid)
    assert len(got) == 3 and set(got["source"]) == {"mturk"}
    svc.close()


@pytest.mark.slow
def test_concurrent_and_double_submits(db_url, tmp_path, run_dir):
    """16 raters in parallel threads; every slot is submitted twice at the same moment."""
    svc = _service(db_url, tmp_path)
    sid = _study(svc, run_dir, items_per_session=4)
    recorded: list[str] = []
    duplicates: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def rater(i: int) -> None:
        try:
            view = svc.begin(sid, f"rater{i}")
            while not view.done:
                barrier = threading.Barrier(2)
                results = []

                def fire(v=view, barrier=barrier, results=results):
                    barrier.wait()
                    results.append(svc.submit(v.rater_id, v.slot_token, i % 5))

                ts = [threading.Thread(target=fire) for _ in range(2)]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join()
                statuses = sorted(r.status for r in results)
                with lock:
                    if statuses != ["duplicate", "recorded"]:
                        errors.append(AssertionError(f"double submit gave {statuses}"))
                        return
                    recorded.extend(r.rating_id for r in results if r.status == "recorded")
                    duplicates.extend(r.rating_id for r in results if r.status == "duplicate")
                view = next(r for r in results if r.status == "recorded").view
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=rater, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]
    assert len(recorded) == 16 * 7
    assert set(duplicates) <= set(recorded)
    frame = svc.ratings_frame(sid)
    assert len(frame) == len(recorded) and set(frame["rating_id"]) == set(recorded)
    _no_duplicates(svc)
    svc.close()


def test_racing_session_start(db_url, tmp_path, run_dir):
    """Eight simultaneous begin() calls of one rater open exactly one session."""
    svc = _service(db_url, tmp_path)
    sid = _study(svc, run_dir)
    barrier = threading.Barrier(8)
    views, errors = [], []

    def go():
        barrier.wait()
        try:
            views.append(svc.begin(sid, "same-rater"))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    ts = [threading.Thread(target=go) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[:2]
    assert len({v.assignment_id for v in views}) == 1
    with svc.Session() as s:
        assert s.scalar(select(func.count()).select_from(Assignment).where(Assignment.study_id == sid)) == 1
    svc.close()


_WRITER = textwrap.dedent(
    """
    import sys, threading
    from user_study.service import StudyService
    url, sid, data = sys.argv[1:4]
    svc = StudyService(url, rater_secret="test-secret", data_dir=data)
    lock = threading.Lock()
    def work(k):
        for n in range(1000):
            view = svc.begin(sid, f"w{k}-{n}")
            while not view.done and not view.finished:
                res = svc.submit(view.rater_id, view.slot_token, (n + k) % 5)
                with lock:
                    print("ACK", res.status, res.rating_id, flush=True)
                view = res.view
    ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in ts: t.start()
    for t in ts: t.join()
    """
)


@pytest.mark.slow
def test_killed_writer_loses_nothing(db_url, tmp_path, run_dir):
    """SIGKILL a process that writes ratings from four threads; every acknowledged rating survives once."""
    svc = _service(db_url, tmp_path)
    sid = _study(svc, run_dir, target_votes_per_item=10_000)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, db_url, sid, str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    acked: list[str] = []
    deadline = time.time() + 60
    while len(acked) < 40 and time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        parts = line.split()
        if parts[:1] == ["ACK"] and parts[1] == "recorded":
            acked.append(parts[2])
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    err = proc.stderr.read()
    assert len(acked) >= 40, f"writer produced too little before the kill: {err[-800:]}"
    # a fresh engine (as after a restart) sees every acknowledged rating exactly once
    svc.close()
    svc2 = _service(db_url, tmp_path)
    frame = svc2.ratings_frame(sid)
    assert set(acked) <= set(frame["rating_id"])
    assert frame["rating_id"].is_unique
    _no_duplicates(svc2)
    if db_url.startswith("sqlite"):
        with svc2.engine.connect() as c:
            assert c.execute(text("PRAGMA integrity_check")).scalar() == "ok"
    # the interrupted raters resume where they stopped; their stored slots are not rated twice
    resumed = svc2.begin(sid, "w0-0")
    assert resumed.finished or resumed.position >= 0
    svc2.close()


def test_hub_sink_with_stand_in_api(tmp_path, run_dir):
    """Every stored rating is appended as a JSON line and pushed by the CommitScheduler (stand-in HfApi)."""
    from user_study.hub import HubRatingSink

    api = StandInHfApi()
    sink = HubRatingSink("org/ratings", tmp_path / "hub", token="x", every=60, hf_api=api)
    svc = StudyService(f"sqlite:///{tmp_path / 's.db'}", rater_secret="k", data_dir=tmp_path / "d", sink=sink)
    sid = _study(svc, run_dir)
    ids = _rate_session(svc, sid, "erin")
    svc.submit(svc.rater_id("erin"), f"{svc.ratings_frame(sid)['session_id'].iloc[0]}:0", 1)  # duplicate
    lines = sink.path.read_text().splitlines()
    assert len(lines) == len(ids)
    assert "erin" not in sink.path.read_text()
    sink.push_now().result()
    sink.stop()
    assert api.repos == [("org/ratings", True, "dataset")]
    pushed = [op.path_in_repo for _, ops in api.commits for op in ops]
    assert pushed and all(p.startswith("ratings/ratings-") and p.endswith(".jsonl") for p in pushed)
    with svc.Session() as s:
        assert s.scalar(select(func.count()).select_from(Event).where(Event.kind == "duplicate_submit")) == 1
    before = svc.ratings_frame(sid)
    svc.close()

    # restart on an empty disk: re-create the study, restore the backup through the CLI
    from user_study.__main__ import main

    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    svc2 = StudyService(fresh, rater_secret="k", data_dir=tmp_path / "d2")
    svc2.create_study(run_dir, StudyConfig(items_per_session=4, min_view_ms=0, target_votes_per_item=50), study_id=sid)
    with open(sink.path, "a") as fh:
        fh.write('{"rating_id": "cut-off')  # a line torn by a crash mid-append is ignored
    assert main(["--db", fresh, "import", sid, str(tmp_path / "hub"), "--format", "hub-jsonl"]) == 0
    assert main(["--db", fresh, "import", sid, str(tmp_path / "hub"), "--format", "hub-jsonl"]) == 0
    after = svc2.ratings_frame(sid)
    cols = ["rating_id", "rater_id", "item_id", "session_id", "score", "kind", "method", "scene"]
    pd.testing.assert_frame_equal(
        before[cols].sort_values("rating_id").reset_index(drop=True),
        after[cols].sort_values("rating_id").reset_index(drop=True),
    )
    svc2.close()
