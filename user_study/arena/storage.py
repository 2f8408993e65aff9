"""Tables of the Bokeh Arena, in the study's database (same engine: SQLite WAL + 0600 file, or PostgreSQL).

- ``arena_battle``: one pair shown to one client: which method is A and which B, the focus, the parameters, the
  depth source, the photo's hash and size (the photo itself only with recorded consent), when both images were
  on screen.
- ``arena_vote``: at most one per battle (a unique constraint, not only code): the first vote wins.
- ``arena_event``: refused votes and other audit events (why, which client, which battle).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from user_study.storage import make_engine, utcnow

__all__ = ["ArenaBase", "ArenaBattle", "ArenaEvent", "ArenaVote", "make_arena_engine"]


class ArenaBase(DeclarativeBase):
    """Declarative base of the arena tables (kept apart from the study's so neither schema edits the other)."""

    type_annotation_map = {dict[str, Any]: JSON}


class ArenaBattle(ArenaBase):
    """One battle: two methods rendered on one photo with one depth map, shown as A (left) and B (right)."""

    __tablename__ = "arena_battle"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    client_hash: Mapped[str] = mapped_column(String(32), index=True)
    channel: Mapped[str] = mapped_column(String(8))  # space, api
    method_a: Mapped[str] = mapped_column(String(64))
    method_b: Mapped[str] = mapped_column(String(64))
    swapped: Mapped[bool] = mapped_column(Boolean)  # True: the drawn pair's second method was put on side A
    focus_x: Mapped[float] = mapped_column(Float)  # in [0, 1] of the photo's width
    focus_y: Mapped[float] = mapped_column(Float)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # {method: {param: value}}
    depth_source: Mapped[str] = mapped_column(Text)
    photo_sha256: Mapped[str] = mapped_column(String(64), index=True)
    photo_width: Mapped[int] = mapped_column(Integer)
    photo_height: Mapped[int] = mapped_column(Integer)
    photo_path: Mapped[str] = mapped_column(Text, default="")  # only with consent
    consent: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    shown_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class ArenaVote(ArenaBase):
    """The vote of a battle; unique per battle."""

    __tablename__ = "arena_vote"
    __table_args__ = (UniqueConstraint("battle_id", name="uq_arena_vote_battle"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    battle_id: Mapped[str] = mapped_column(ForeignKey("arena_battle.id"))
    client_hash: Mapped[str] = mapped_column(String(32), index=True)
    method_a: Mapped[str] = mapped_column(String(64))
    method_b: Mapped[str] = mapped_column(String(64))
    choice: Mapped[str] = mapped_column(String(8))  # a, b, tie, bad
    seconds_shown: Mapped[float] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    excluded: Mapped[bool] = mapped_column(Boolean, default=False)
    exclusion_reason: Mapped[str] = mapped_column(Text, default="")


class ArenaEvent(ArenaBase):
    """Audit trail: refused votes (with the reason), exclusions."""

    __tablename__ = "arena_event"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    client_hash: Mapped[str] = mapped_column(String(32), default="", index=True)
    battle_id: Mapped[str] = mapped_column(String(64), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


def make_arena_engine(url: str) -> Engine:
    """The study's engine for ``url`` (WAL, owner-only file, pool) with the arena tables created if missing."""
    engine = make_engine(url)
    ArenaBase.metadata.create_all(engine)
    return engine
