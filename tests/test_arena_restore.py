"""Arena votes come back from their backup: ``python -m user_study arena restore`` reads the Hub JSONL lines (or
``arena export``'s), recreates battles and votes in a new database with the same board, skips what is present,
and refuses a bad line by position without writing anything."""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

import numpy as np
import pytest
from _hub_testing import StandInHfApi

from user_study.arena.config import ArenaConfig
from user_study.arena.hub import ArenaVoteSink
from user_study.arena.service import ArenaService

COLUMNS = ["vote_id", "battle_id", "client_hash", "method_a", "method_b", "choice", "seconds_shown", "swapped",
           "focus_x", "focus_y", "params", "depth_source", "photo_sha256", "photo_width", "photo_height", "channel",
           "excluded", "exclusion_reason"]  # fmt: skip


def _service(folder: Path) -> ArenaService:
    folder.mkdir(parents=True, exist_ok=True)
    config = ArenaConfig(min_look_s=1.0, min_votes_for_rank=3, bootstrap_rounds=50)
    return ArenaService(f"sqlite:///{folder / 'study.db'}", secret="s", data_dir=folder, config=config)


def _vote_through_the_service(svc: ArenaService, count: int) -> None:
    """Votes as the API casts them: a battle opened, shown, voted a few seconds later."""
    rng = random.Random(3)
    img = np.zeros((4, 4, 3), np.uint8)
    methods = ["disk", "gaussian", "lens", "pynet"]
    for i in range(count):
        a, b = rng.sample(methods, 2)
        client = f"client{i % 5}"
        battle = svc.open_battle(
            client_hash=client, channel="api", methods=(a, b), swapped=bool(i % 2), focus=(0.25, 0.75),
            params={a: {"strength": 12}}, depth_source="test", photo_sha256=f"{i:064x}", photo_size=(640, 480),
            images=(img, img),
        )  # fmt: skip
        svc.mark_shown(battle.id)
        later = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(seconds=3 + i % 4)
        svc.vote(battle.id, client, rng.choice(["a", "b", "a", "tie", "bad"]), now=later)


def _table(svc: ArenaService) -> list[tuple]:
    frame = svc.votes_frame(include_excluded=True)
    return sorted(tuple(json.dumps(v, sort_keys=True) if isinstance(v, dict) else v for v in row)
                  for row in frame[COLUMNS].itertuples(index=False))  # fmt: skip


def test_restore_from_the_hub_backup_gives_the_same_votes_and_board(tmp_path: Path, monkeypatch) -> None:
    from user_study.__main__ import main

    sink = ArenaVoteSink("org/study", tmp_path / "hub", token="x", every=60, hf_api=StandInHfApi())
    original = _service(tmp_path / "before")
    original.sink = sink
    _vote_through_the_service(original, 24)
    sink.stop()
    board, _ = original.leaderboard()

    monkeypatch.setenv("BOKEH_DATA_DIR", str(tmp_path / "after"))
    monkeypatch.setenv("BOKEH_RATER_SECRET", "s")
    monkeypatch.setenv("BOKEH_ARENA_ROUNDS", "50")
    monkeypatch.setenv("BOKEH_ARENA_MIN_VOTES", "3")
    db = f"sqlite:///{tmp_path / 'after' / 'study.db'}"
    (tmp_path / "after").mkdir()
    assert main(["--db", db, "arena", "restore", str(tmp_path / "hub")]) == 0  # the folder: every .jsonl under it
    restored = _service(tmp_path / "after")
    assert _table(restored) == _table(original) and len(_table(restored)) == 24
    again, _ = restored.leaderboard()
    np.testing.assert_allclose(again["strength"], board["strength"], atol=1e-9)
    assert list(again["method"]) == list(board["method"])
    # repeatable: everything is present now
    assert restored.restore_records([json.loads(x) for x in sink.path.read_text().splitlines()]) == {
        "restored": 0,
        "skipped": 24,
    }
    original.close()
    restored.close()


def test_an_export_with_exclusions_restores_them(tmp_path: Path) -> None:
    from user_study.__main__ import main

    original = _service(tmp_path / "before")
    _vote_through_the_service(original, 8)
    client = original.votes_frame()["client_hash"].iloc[0]
    excluded = original.exclude_client(client, "always left")
    out = tmp_path / "out"
    db = f"sqlite:///{tmp_path / 'before' / 'study.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BOKEH_RATER_SECRET", "s")
        mp.setenv("BOKEH_DATA_DIR", str(tmp_path / "before"))
        assert main(["--db", db, "arena", "export", "--out", str(out), "--include-excluded"]) == 0
    restored = _service(tmp_path / "after")
    records = [json.loads(line) for line in (out / "arena_votes.jsonl").read_text().splitlines()]
    assert restored.restore_records(records) == {"restored": 8, "skipped": 0}
    assert _table(restored) == _table(original)
    assert len(restored.votes_frame()) == 8 - excluded
    original.close()
    restored.close()


def test_a_bad_line_is_named_and_nothing_is_written(tmp_path: Path, monkeypatch, capsys) -> None:
    from user_study.__main__ import main

    sink = ArenaVoteSink("org/study", tmp_path / "hub", token="x", every=60, hf_api=StandInHfApi())
    original = _service(tmp_path / "before")
    original.sink = sink
    _vote_through_the_service(original, 4)
    sink.stop()
    lines = sink.path.read_text().splitlines()
    broken = json.loads(lines[2])
    broken["choice"] = "left"
    backup = tmp_path / "votes.jsonl"
    backup.write_text("\n".join([*lines[:2], json.dumps(broken), lines[3]]) + "\n")
    monkeypatch.setenv("BOKEH_DATA_DIR", str(tmp_path / "after"))
    monkeypatch.setenv("BOKEH_RATER_SECRET", "s")
    (tmp_path / "after").mkdir()
    db = f"sqlite:///{tmp_path / 'after' / 'study.db'}"
    assert main(["--db", db, "arena", "restore", str(backup)]) == 2
    err = capsys.readouterr().err
    assert "record 3" in err and "choice" in err and "nothing restored" in err
    restored = _service(tmp_path / "after")
    assert len(restored.votes_frame()) == 0
    for bad, message in [({"kind": "rating"}, "not an arena vote"), ({**broken, "vote_id": "x" * 40}, "vote_id")]:
        with pytest.raises(ValueError, match=message):
            restored.restore_records([bad])
    original.close()
    restored.close()
