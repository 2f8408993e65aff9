"""Database schema (SQLAlchemy 2) and engine/session factory for the user study.

SQLite is the default (a file in the data directory, WAL journal, ``synchronous=FULL``, every write
transaction taken with ``BEGIN IMMEDIATE`` so concurrent writers queue instead of failing). PostgreSQL works
through its URL (``postgresql+psycopg://...``) for deployments with several replicas.

Integrity rules enforced by the schema, not only by code:

- a rating is unique per (rater, item); ratings are never deleted, only excluded with a reason;
- a slot (session position) is unique per session, and a rater's n-th session in a study is unique, so two
  racing requests cannot open two sessions or rate one slot twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

__all__ = [
    "Assignment",
    "Base",
    "Event",
    "Item",
    "ITEM_KINDS",
    "Method",
    "QcDecision",
    "Rater",
    "Rating",
    "Scene",
    "Slot",
    "SlotImage",
    "Study",
    "hash_rater",
    "make_engine",
    "make_sessionmaker",
    "new_id",
    "utcnow",
]

#: Item kinds: rendered image vs target, target vs itself, another scene's target, instruction item, pair.
ITEM_KINDS = ("test", "hidden_ref", "gold", "trap", "pair")


def utcnow() -> dt.datetime:
    """Current UTC time without tzinfo (stored the same way on SQLite and PostgreSQL)."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def new_id() -> str:
    """A random uuid4 hex string (primary keys that never collide across replicas)."""
    return uuid.uuid4().hex


# Longest rater id accepted (Prolific ids are 24 characters, MTurk worker ids about 14, invite codes ours).
MAX_RATER_ID_CHARS = 200


def hash_rater(secret: str, source: str, external_id: str) -> str:
    """Keyed hash (HMAC-SHA256, 32 hex chars) of ``source:external_id``; the raw id is never stored.

    Args:
        secret: The ``BOKEH_RATER_SECRET`` key.
        source: Where the id came from (``link``, ``prolific``, ``mturk``, ``invite``, ``hf_oauth``, ``import``).
        external_id: The platform id, invite code or username.
    """
    external_id = external_id.strip()
    if not external_id:
        raise ValueError("empty rater id: the link needs ?rater=<id> (or PROLIFIC_PID / workerId / code)")
    if len(external_id) > MAX_RATER_ID_CHARS:  # platform ids are short; a huge one is a probe, not a rater
        raise ValueError(f"rater id of {len(external_id)} characters; at most {MAX_RATER_ID_CHARS} are accepted")
    msg = f"{source}:{external_id}".encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()[:32]


class Base(DeclarativeBase):
    """Declarative base of the study tables."""

    type_annotation_map = {dict[str, Any]: JSON}


class Study(Base):
    """One study: its config (and hash), where its media live, and its mode."""

    __tablename__ = "study"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    config_sha256: Mapped[str] = mapped_column(String(64))
    media_dir: Mapped[str] = mapped_column(Text)
    source_run: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="open")


class Method(Base):
    """A rendering method; raters only ever see its images, never its name or alias."""

    __tablename__ = "method"
    __table_args__ = (UniqueConstraint("study_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_id: Mapped[str] = mapped_column(ForeignKey("study.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    alias: Mapped[str] = mapped_column(String(32))
    role: Mapped[str] = mapped_column(String(16), default="test")


class Scene(Base):
    """A scene (one EBB! image id) with its DSLR target."""

    __tablename__ = "scene"
    __table_args__ = (UniqueConstraint("study_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_id: Mapped[str] = mapped_column(ForeignKey("study.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    target_path: Mapped[str] = mapped_column(Text)
    target_sha256: Mapped[str] = mapped_column(String(64))


class Item(Base):
    """One stimulus: an image compared with the scene's target (or a pair of renderings in pairwise mode)."""

    __tablename__ = "item"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    study_id: Mapped[str] = mapped_column(ForeignKey("study.id"), index=True)
    scene_id: Mapped[int] = mapped_column(ForeignKey("scene.id"))
    method_id: Mapped[int | None] = mapped_column(ForeignKey("method.id"), nullable=True)
    method_b_id: Mapped[int | None] = mapped_column(ForeignKey("method.id"), nullable=True)
    kind: Mapped[str] = mapped_column(String(16))
    image_path: Mapped[str] = mapped_column(Text)
    image_b_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    sha256: Mapped[str] = mapped_column(String(64))
    expected_score: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tolerance: Mapped[int | None] = mapped_column(Integer, nullable=True)
    instruction: Mapped[str] = mapped_column(Text, default="")


class Rater(Base):
    """A pseudonymous rater: only the keyed hash of the external id is kept."""

    __tablename__ = "rater"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(16))
    first_seen: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    blocked: Mapped[bool] = mapped_column(Boolean, default=False)
    notes: Mapped[str] = mapped_column(Text, default="")


class Assignment(Base):
    """A rating session (assignment) of one rater: an ordered list of slots with a lease."""

    __tablename__ = "assignment"
    __table_args__ = (UniqueConstraint("study_id", "rater_id", "seq"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    study_id: Mapped[str] = mapped_column(ForeignKey("study.id"), index=True)
    rater_id: Mapped[str] = mapped_column(ForeignKey("rater.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open, completed, expired
    seed: Mapped[int] = mapped_column(Integer)
    completion_code: Mapped[str] = mapped_column(String(64), default="")
    app_version: Mapped[str] = mapped_column(String(32), default="")
    # Until when the session reserves its unrated items (renewed by each rating). Separate from ``expires_at``
    # (until when the session accepts ratings), so an abandoned session frees its items within minutes.
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class Slot(Base):
    """Position ``position`` of a session: which item, which side the target is on, when it was shown."""

    __tablename__ = "slot"
    __table_args__ = (UniqueConstraint("assignment_id", "position"), UniqueConstraint("assignment_id", "item_id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    assignment_id: Mapped[str] = mapped_column(ForeignKey("assignment.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    item_id: Mapped[str] = mapped_column(ForeignKey("item.id"), index=True)
    swap: Mapped[bool] = mapped_column(Boolean)  # True: target (or method B) on the left
    shown_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class SlotImage(Base):
    """An opaque image URL token of one side of one slot (random, so it says nothing about the item kind)."""

    __tablename__ = "slot_image"
    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    assignment_id: Mapped[str] = mapped_column(ForeignKey("assignment.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    side: Mapped[str] = mapped_column(String(8))  # left, right
    path: Mapped[str] = mapped_column(Text)


class Rating(Base):
    """One vote. Unique per (rater, item): the first write wins; resubmits become ``event`` rows."""

    __tablename__ = "rating"
    __table_args__ = (UniqueConstraint("rater_id", "item_id", name="uq_rating_rater_item"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    study_id: Mapped[str] = mapped_column(ForeignKey("study.id"), index=True)
    rater_id: Mapped[str] = mapped_column(ForeignKey("rater.id"), index=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("item.id"), index=True)
    assignment_id: Mapped[str | None] = mapped_column(ForeignKey("assignment.id"), nullable=True, index=True)
    position: Mapped[int | None] = mapped_column(Integer, nullable=True)
    score: Mapped[int] = mapped_column(Integer)
    swap: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    shown_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    submitted_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    view_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    source: Mapped[str] = mapped_column(String(16), default="app")
    excluded: Mapped[bool] = mapped_column(Boolean, default=False)
    exclusion_reason: Mapped[str] = mapped_column(Text, default="")


class Event(Base):
    """Audit trail: session start/resume/expiry, rejected or repeated submits, exclusions, imports."""

    __tablename__ = "event"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    rater_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    assignment_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class QcDecision(Base):
    """One quality-control decision of an aggregation run (what was checked, the value, the verdict)."""

    __tablename__ = "qc_decision"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_id: Mapped[str] = mapped_column(String(64), index=True)
    run_id: Mapped[str] = mapped_column(String(64), index=True)
    level: Mapped[str] = mapped_column(String(16))  # rating, session, rater
    target_id: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(32))
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    threshold: Mapped[float | None] = mapped_column(Float, nullable=True)
    excluded: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # the driver must not open transactions itself; see _on_begin
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=60000")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


#: Columns added after the first release: ``create_all`` does not add columns to existing tables.
_ADDED_COLUMNS = {"assignment": {"lease_until": "TIMESTAMP"}}


def _add_missing_columns(engine: Engine) -> None:
    from sqlalchemy import inspect, text

    insp = inspect(engine)
    for table, columns in _ADDED_COLUMNS.items():
        have = {c["name"] for c in insp.get_columns(table)}
        for name, sql_type in columns.items():
            if name not in have:
                try:
                    with engine.begin() as conn:
                        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {name} {sql_type}"))
                except Exception:  # another process (a second worker) added it at the same moment
                    if name not in {c["name"] for c in inspect(engine).get_columns(table)}:
                        raise


def _private_file(path: Path) -> None:
    """Create ``path`` readable by its owner only (mode 0600), or tighten an existing one.

    SQLite creates its ``-wal`` and ``-shm`` files with the database file's mode, so they follow.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)
    for extra in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if extra.exists():
            os.chmod(extra, 0o600)


def make_engine(url: str, *, create: bool = True, pool_size: int = 20) -> Engine:
    """Create an engine for ``url`` (creating the SQLite file's folder and the tables when ``create``).

    Args:
        url: SQLAlchemy URL, e.g. ``sqlite:///data/study.db`` or ``postgresql+psycopg://u@127.0.0.1:5432/db``.
        create: Create missing tables (``CREATE TABLE IF NOT EXISTS``; existing data is kept).
        pool_size: Connections kept open (requests beyond it wait or overflow by the same number).

    Raises:
        ValueError: For a backend other than SQLite or PostgreSQL.
    """
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ValueError(f"database URL backend {backend!r} is not supported; use sqlite or postgresql")
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise ValueError("an in-memory SQLite database cannot be shared; give a file, e.g. sqlite:///data/study.db")
        _private_file(Path(parsed.database).expanduser().absolute())
        engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_timeout=60)
        _sqlite_pragmas(engine)
    else:
        engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, pool_timeout=60)
    if create:
        Base.metadata.create_all(engine)
        _add_missing_columns(engine)
    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker:
    """A session factory whose objects stay usable after commit."""
    return sessionmaker(engine, expire_on_commit=False)
