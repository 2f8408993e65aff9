"""Per-client limits of the arena, one set per process shared by the Space tab and the JSON API.

Built from the rater page's limiter (:mod:`user_study.rater_limits`: the same token buckets, sliding windows
and client key with its trusted-proxy rule), so a client is one client to both.
"""

from __future__ import annotations

import threading
import time

from user_study.arena.config import ArenaConfig
from user_study.arena.service import ArenaRefused
from user_study.rater_limits import RateLimiter, WindowCounter

__all__ = ["ArenaGuards", "guards_for"]


class ArenaGuards:
    """New pairs per minute, counted votes per hour, and refused votes per minute of one client.

    A client whose refused votes empty their bucket is refused without a database read until it refills.
    """

    def __init__(self, config: ArenaConfig) -> None:
        self.config = config
        self.battles = RateLimiter(config.battles_per_min / 60.0, config.battles_burst)
        self.refused = RateLimiter(config.refused_per_min / 60.0, config.refused_burst)
        self.votes = WindowCounter(3600.0)
        self._cooling: dict[str, float] = {}
        self._lock = threading.Lock()

    def before_battle(self, key: str) -> None:
        """Raise 429 when ``key`` asks for new pairs too often."""
        wait = self.battles.take(key)
        if wait > 0:
            raise ArenaRefused(429, "rate_limited", "too many new pairs from your network; wait", wait)

    def before_vote(self, key: str) -> None:
        """Raise 429 while ``key`` cools down after refused votes, or beyond its votes per hour."""
        with self._lock:
            until = self._cooling.get(key, 0.0)
        left = until - time.monotonic()
        if left > 0:
            raise ArenaRefused(429, "rate_limited", "too many refused votes; wait", left)
        if self.votes.count(key) >= self.config.votes_per_hour:
            raise ArenaRefused(429, "rate_limited", "too many votes from your network this hour", 600.0)

    def after_refusal(self, key: str) -> None:
        """Count a refused vote; raise 429 (and start cooling down) when the bucket is empty."""
        wait = self.refused.take(key)
        if wait > 0:
            with self._lock:
                if len(self._cooling) > 100_000:
                    self._cooling.clear()
                self._cooling[key] = time.monotonic() + wait
            raise ArenaRefused(429, "rate_limited", "too many refused votes; wait", wait)

    def after_vote(self, key: str) -> None:
        """Count a stored vote towards the hourly limit."""
        self.votes.add(key)


def guards_for(service: object, config: ArenaConfig) -> ArenaGuards:
    """The one :class:`ArenaGuards` of a service (the tab and the API of one process share it)."""
    guards = getattr(service, "_guards", None)
    if guards is None:
        guards = ArenaGuards(config)
        service._guards = guards  # type: ignore[attr-defined]
    return guards
