"""The Space's side of the arena: both renders share one depth map, the board the tab shows, and the Arena column
of the Leaderboard tab computed from the stored votes at each call."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from space.config import SpaceSettings


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("BOKEH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BOKEH_RATER_SECRET", "s")
    monkeypatch.setenv("BOKEH_ARENA_MIN_VOTES", "4")
    monkeypatch.setenv("BOKEH_ARENA_ROUNDS", "20")
    return f"sqlite:///{tmp_path / 'arena.db'}"


def _vote(svc, a: str, b: str, choice: str) -> None:
    img = np.zeros((4, 4, 3), np.uint8)
    battle = svc.open_battle(
        client_hash="c", channel="space", methods=(a, b), swapped=False, focus=(0.5, 0.5), params={},
        depth_source="test", photo_sha256="0" * 64, photo_size=(4, 4), images=(img, img),
    )  # fmt: skip
    svc.mark_shown(battle.id)
    svc.vote(
        battle.id, "c", choice, now=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(seconds=9)
    )


def test_both_renders_share_one_depth_map(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import space.arena_tab as tab

    calls = []
    real = tab.compute_depth

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(tab, "compute_depth", counting)
    settings = SpaceSettings(depth_model=str(tmp_path / "no-model"), results_dir=tmp_path, max_render_side=128)
    renderer = tab.SpaceRenderer(settings)
    photo = np.random.default_rng(0).random((48, 64, 3)).astype(np.float32)
    pair = renderer.render(photo, (32, 24), ("disk", "gaussian"))
    assert len(calls) == 1  # one depth map for both methods
    assert pair.images[0].shape == pair.images[1].shape == (48, 64, 3) and pair.images[0].dtype == np.uint8
    assert "APPROXIMATE" in pair.depth_source
    assert "focus_disparity" in pair.params["disk"]
    assert set(renderer.methods()) >= {"disk", "gaussian"} and "pynet" not in renderer.methods()


def test_leaderboard_tab_gets_an_arena_column_from_the_votes_now(db: str) -> None:
    from space.arena_tab import add_arena_column, arena_board_frame
    from user_study.arena.service import get_arena_service

    table = pd.DataFrame(
        {"Method": ["disk", "gaussian", "lens", "PyNET (paper)"], "MOS ↓": ["", "", "", ""], "Source": "x"}
    )
    before = add_arena_column(table, db)
    assert list(before.columns) == ["Method", "MOS ↓", "Arena", "Source"] and set(before["Arena"]) == {""}
    svc = get_arena_service(db)
    for choice in ["a", "a", "a", "b", "tie"]:
        _vote(svc, "disk", "gaussian", choice)
    _vote(svc, "lens", "disk", "b")
    after = add_arena_column(table, db).set_index("Method")["Arena"]  # no restart, no refresh: read at each call
    board, _ = svc.leaderboard()
    disk = board.set_index("method").loc["disk"]
    assert after["disk"] == f"{disk['strength']:.0f} [{disk['ci_low']:.0f}, {disk['ci_high']:.0f}]"
    assert after["lens"] == "1 votes (needs 4)" and after["PyNET (paper)"] == ""
    frame, note = arena_board_frame(svc)
    assert frame.iloc[0]["Method"] == "disk" and frame.iloc[0]["Rank"] == 1 and "6 vote(s)" in note
