"""Arena settings from the environment (all optional; the defaults follow the arena practice noted below).

- ``BOKEH_ARENA_MIN_LOOK_S`` (2.0): seconds both images must have been on screen before a vote counts
  (TTS Arena refuses votes under 3 s apart; a photo pair needs a moment to compare).
- ``BOKEH_ARENA_MIN_VOTES`` (20): votes a method needs before the leaderboard shows its rank (arenas use 5 to
  100; below it the strength is shown as preliminary without a rank).
- ``BOKEH_ARENA_ROUNDS`` (200): bootstrap rounds of the 95 % intervals.
- ``BOKEH_ARENA_BATTLES_PER_MIN`` (6) / ``BOKEH_ARENA_VOTES_PER_HOUR`` (120): per-client limits (rendering costs
  CPU; a person comparing photos does not vote more than every half minute on average).
- ``BOKEH_ARENA_MAX_PHOTO_MB`` (16): largest photo accepted by ``POST /arena-api/v1/battles``.
- ``BOKEH_ARENA_VOTE_GROUP`` (16): votes written in one transaction when they arrive together (group commit:
  one disk sync for the group; 1 = one transaction per vote).
- ``BOKEH_ARENA_SAME_SIDE_MIN`` (10) / ``BOKEH_ARENA_SAME_SIDE_SHARE`` (0.9): a client with at least this many
  A/B votes of which this share or more are on one side is flagged (and left out of the leaderboard by default).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..rater_limits import env_number

__all__ = ["ArenaConfig", "CHOICES"]

#: What a vote may say. ``tie`` and ``bad`` (both bad) count half a win to each side in Bradley-Terry, as
#: Chatbot Arena counts its "tie" and "both bad".
CHOICES = ("a", "b", "tie", "bad")


@dataclass(frozen=True)
class ArenaConfig:
    """Integrity and leaderboard settings (see the module docstring for the environment variables)."""

    min_look_s: float = 2.0
    min_votes_for_rank: int = 20
    bootstrap_rounds: int = 200
    battles_per_min: float = 6.0
    battles_burst: int = 6
    votes_per_hour: int = 120
    refused_per_min: float = 30.0
    refused_burst: int = 30
    max_photo_bytes: int = 16 * 1024 * 1024
    max_side: int = 768
    same_side_min_votes: int = 10
    same_side_share: float = 0.9
    image_cache_battles: int = 512
    vote_group: int = 16

    @classmethod
    def from_env(cls) -> ArenaConfig:
        """Defaults overridden by the environment."""
        return cls(
            min_look_s=env_number("BOKEH_ARENA_MIN_LOOK_S", cls.min_look_s),
            min_votes_for_rank=int(env_number("BOKEH_ARENA_MIN_VOTES", cls.min_votes_for_rank)),
            bootstrap_rounds=max(10, int(env_number("BOKEH_ARENA_ROUNDS", cls.bootstrap_rounds))),
            battles_per_min=env_number("BOKEH_ARENA_BATTLES_PER_MIN", cls.battles_per_min),
            votes_per_hour=int(env_number("BOKEH_ARENA_VOTES_PER_HOUR", cls.votes_per_hour)),
            max_photo_bytes=int(env_number("BOKEH_ARENA_MAX_PHOTO_MB", 16) * 1024 * 1024),
            same_side_min_votes=int(env_number("BOKEH_ARENA_SAME_SIDE_MIN", cls.same_side_min_votes)),
            same_side_share=env_number("BOKEH_ARENA_SAME_SIDE_SHARE", cls.same_side_share),
            vote_group=max(1, int(env_number("BOKEH_ARENA_VOTE_GROUP", cls.vote_group))),
        )
