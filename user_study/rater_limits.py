"""Abuse limits of the rater API: who is calling, token buckets, and a sliding-window cap on new sessions.

Kept per process (several app processes each keep their own). :class:`ApiLimits` holds the numbers (from the
environment), :func:`client_key` names the caller (the peer address, or the ``X-Forwarded-For`` hop set by a
trusted proxy), :class:`RateLimiter` paces ``begin`` calls and wrong organizer tokens, and
:class:`WindowCounter` caps the new sessions one client starts.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.requests import Request

__all__ = ["UNTRUSTED_FORWARDED", "ApiLimits", "RateLimiter", "WindowCounter", "client_key", "env_number"]


def env_number(name: str, default: float) -> float:
    """A non-negative number from the environment variable ``name`` (empty or unset: ``default``).

    Raises:
        ValueError: the value is not a number or is negative, naming the variable.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if value < 0:
        raise ValueError(f"{name}={raw!r} must be >= 0")
    return value


@dataclass
class ApiLimits:
    """Abuse limits of the rater API (environment variables in brackets).

    Attributes:
        max_body_bytes: Largest accepted request body (``BOKEH_STUDY_MAX_BODY``).
        begin_per_min / begin_burst: ``begin`` calls per client and minute, and the burst allowed
            (``BOKEH_STUDY_BEGIN_PER_MIN``, ``BOKEH_STUDY_BEGIN_BURST``).
        token_tries_per_min / token_burst: Wrong organizer tokens per client and minute, and the burst.
        max_new_sessions: New sessions one client may start within ``new_session_window_s``
            (``BOKEH_STUDY_MAX_NEW_SESSIONS``); resuming is never limited by it.
        new_session_window_s: The window of that cap (default: 5 min, the default lease of an unrated session).
        trusted_proxy_hops: Proxies in front of the app that append to ``X-Forwarded-For`` (``0``: use the
            peer address; default ``1`` on a Hugging Face Space) (``BOKEH_TRUSTED_PROXY_HOPS``).
    """

    max_body_bytes: int = 8 * 1024
    begin_per_min: float = 20.0
    begin_burst: int = 20
    token_tries_per_min: float = 5.0
    token_burst: int = 5
    max_new_sessions: int = 20
    new_session_window_s: float = 300.0
    trusted_proxy_hops: int = 0

    @classmethod
    def from_env(cls) -> ApiLimits:
        """Defaults overridden by the environment variables named in the class docstring."""

        num = env_number
        return cls(
            max_body_bytes=int(num("BOKEH_STUDY_MAX_BODY", cls.max_body_bytes)),
            begin_per_min=num("BOKEH_STUDY_BEGIN_PER_MIN", cls.begin_per_min),
            begin_burst=int(num("BOKEH_STUDY_BEGIN_BURST", cls.begin_burst)),
            max_new_sessions=int(num("BOKEH_STUDY_MAX_NEW_SESSIONS", cls.max_new_sessions)),
            # on a Hugging Face Space (SYSTEM=spaces) every request comes through the Space's proxy: without
            # this, all raters would share one client address and one budget
            trusted_proxy_hops=int(num("BOKEH_TRUSTED_PROXY_HOPS", 1 if os.environ.get("SYSTEM") == "spaces" else 0)),
        )


# The one client key of requests whose address came from an untrusted X-Forwarded-For entry (see client_key).
UNTRUSTED_FORWARDED = "forwarded-untrusted"


class RateLimiter:
    """Token buckets per key (``rate`` tokens per second, up to ``burst``); thread-safe, bounded in size.

    Args:
        rate: Tokens added per second.
        burst: Bucket size (calls allowed at once).
        max_keys: Buckets kept; the least recently used are dropped beyond it (a full bucket is the default).
    """

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate, self.burst, self.max_keys = rate, max(1, burst), max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """Take one token; returns 0.0 when allowed, else the seconds until a token is available."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate if self.rate > 0 else 3600.0
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return wait


class WindowCounter:
    """Events per key within a sliding window (new sessions per client)."""

    def __init__(self, window_s: float, max_keys: int = 100_000) -> None:
        self.window_s, self.max_keys = window_s, max_keys
        self._events: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def count(self, key: str, now: float | None = None) -> int:
        """Events of ``key`` within the window ending ``now``."""
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._events.get(key)
            if not q:
                return 0
            while q and q[0] <= now - self.window_s:
                q.popleft()
            return len(q)

    def add(self, key: str, now: float | None = None) -> None:
        """Record one event of ``key`` at ``now``."""
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._events.pop(key, None) or deque()
            q.append(now)
            self._events[key] = q
            while len(self._events) > self.max_keys:
                self._events.popitem(last=False)


def client_key(request: Request, trusted_proxy_hops: int = 0) -> str:
    """Who is calling, for the abuse limits: the peer address, or the address a trusted proxy recorded.

    With ``n`` trusted proxies each appending the address it saw to ``X-Forwarded-For``, the client is the
    ``n``-th entry from the right; entries further left can be forged by the client and are ignored.

    Only those ``n`` hops are trusted, whatever the server in front does: uvicorn (and so Gradio) by default
    replaces the peer address with an ``X-Forwarded-For`` entry when the peer is 127.0.0.1, so a client on the
    same host could name itself anew on every request. A peer address that appears in the header it would
    otherwise be judged by is such a replacement (or the client's own claim): those requests share one key.
    """
    peer = request.client.host if request.client else "unknown"
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    if trusted_proxy_hops > 0 and len(hops) >= trusted_proxy_hops:
        return hops[-trusted_proxy_hops]
    if peer in hops:
        return UNTRUSTED_FORWARDED
    return peer
