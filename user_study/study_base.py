"""Shared core of the study service: errors, what a rater sees, the database handle and study lookups."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bokeh_model.errors import InputError
from user_study.config import Settings, StudyConfig
from user_study.storage import (
    Rater,
    Study,
    hash_rater,
    make_engine,
    make_sessionmaker,
    utcnow,
)

__all__ = [
    "APP_VERSION",
    "IMAGE_EXTS",
    "RaterView",
    "StudyError",
    "SessionCapReached",
    "StudyStore",
    "SubmitRejected",
    "SubmitResult",
]

APP_VERSION = "1"
_HOT_TTL_S = 30.0
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")


class StudyError(InputError):
    """A request the study cannot serve (unknown study, blocked rater, bad input); the message says why.

    An :class:`~bokeh_model.errors.InputError` (hence a ``ValueError``): command lines exit 2 on it.
    """


class SubmitRejected(StudyError):
    """A submit that does not match the rater's assignment. ``code`` is a short machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after_s: float | None = None  # set for ``too_fast``: seconds until a submit is accepted


class SessionCapReached(StudyError):
    """Starting another session was refused (too many open sessions from one client)."""


@dataclass
class RaterView:
    """What the rater should see now (also the per-rater state kept by the UI).

    Attributes:
        study_id: Study id.
        rater_id: Keyed hash of the rater's external id.
        assignment_id: Current session id ("" when none).
        position: Current slot (0-based); equals ``n_slots`` when the session is complete.
        n_slots: Slots in the session.
        left_path / right_path: Images to show on the left and right.
        left_label / right_label: Their labels (the target is always labelled, the method never named).
        instruction: Extra line for trap items ("" otherwise), drawn into the image too.
        done: The session is complete.
        finished: The rater can get no further session (cap reached or nothing left).
        completion_code: Code to paste back into the crowd platform, when ``done``.
        message: Text for the rater.
        mode: ``"mos"`` or ``"pairwise"``.
        sessions_done: Completed sessions of this rater in this study.
        started: This call opened a new session (``False`` when it resumed one or opened none).
        left_image / right_image: Opaque tokens of the two images of the current slot (see
            :meth:`~user_study.sessions.SessionAssignment.image_path`); they name the slot side, never the item.
        next_images: Tokens of the next slot's two images (for preloading), empty on the last slot.
    """

    study_id: str
    rater_id: str
    assignment_id: str = ""
    position: int = 0
    n_slots: int = 0
    left_path: str | None = None
    right_path: str | None = None
    left_label: str = ""
    right_label: str = ""
    instruction: str = ""
    done: bool = False
    finished: bool = False
    completion_code: str = ""
    message: str = ""
    mode: str = "mos"
    sessions_done: int = 0
    started: bool = False
    left_image: str = ""
    right_image: str = ""
    next_images: list[str] = field(default_factory=list)

    @property
    def slot_token(self) -> str:
        """``<assignment_id>:<position>``: names the slot a submit refers to (makes double clicks harmless)."""
        return f"{self.assignment_id}:{self.position}" if self.assignment_id else ""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for ``gr.State`` and JSON)."""
        return asdict(self)


@dataclass
class SubmitResult:
    """Outcome of a submit: ``status`` is ``recorded`` or ``duplicate`` (already stored, nothing written)."""

    status: str
    rating_id: str
    view: RaterView
    record: dict[str, Any] = field(default_factory=dict)


class StudyStore:
    """Database handle and lookups every part of the service needs (configs, rater ids, completion codes).

    Args:
        db_url: SQLAlchemy URL.
        rater_secret: Key of the rater-id hash.
        data_dir: Where study media are copied (``<data_dir>/studies/<study_id>/``).
        sink: Optional object with ``append(record: dict)`` that receives every stored rating (Hub JSONL).
    """

    def __init__(self, db_url: str, *, rater_secret: str, data_dir: str | Path, sink: Any = None) -> None:
        self.db_url = db_url
        self.engine = make_engine(db_url)
        self.Session = make_sessionmaker(self.engine)
        self.secret = rater_secret
        self.data_dir = Path(data_dir)
        self.sink = sink
        self._dialect = self.engine.dialect.name
        self._configs: dict[str, tuple[str, StudyConfig]] = {}  # parsed configs by study id, checked by hash
        self._hot: dict[str, tuple[float, Any, StudyConfig]] = {}  # see _study_cached
        # SQLite has one writer at a time and every transaction here starts with BEGIN IMMEDIATE. Threads of
        # this process queue on a Python lock (woken as soon as it is free) instead of in SQLite's busy
        # handler, which sleeps in steps of up to 100 ms and made latencies jump under load.
        self._tx_lock: Any = threading.Lock() if self._dialect == "sqlite" else contextlib.nullcontext()

    @classmethod
    def from_settings(cls, settings: Settings, sink: Any = None):  # noqa: ANN206 - returns cls
        """Build from :class:`~user_study.config.Settings`."""
        return cls(settings.db_url, rater_secret=settings.rater_secret, data_dir=settings.data_dir, sink=sink)

    def close(self) -> None:
        """Dispose of the connection pool."""
        self.engine.dispose()

    def _insert(self, table: Any) -> Any:
        return (pg_insert if self._dialect == "postgresql" else sqlite_insert)(table)

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Session]:
        """A session inside one transaction, for the per-request paths (see ``_tx_lock``)."""
        with self._tx_lock, self.Session() as s, s.begin():
            yield s

    def study_config(self, study_id: str) -> StudyConfig:
        """The stored config of a study (raises :class:`StudyError` for an unknown id)."""
        hit = self._hot.get(study_id)
        if hit is not None and time.monotonic() - hit[0] < _HOT_TTL_S:
            return hit[2]
        with self.Session() as s:
            return self._study_cached(s, study_id)[1]

    def _study_cached(self, s: Session, study_id: str) -> tuple[Any, StudyConfig]:
        """Like :meth:`_config` for the per-request paths, without a query while the entry is fresh.

        A study row never changes after creation (no code updates it), so a copy of the few fields the rater
        flow reads is safe to keep; the short lifetime only bounds memory for deleted or re-created studies.
        """
        hit = self._hot.get(study_id)
        now = time.monotonic()
        if hit is not None and now - hit[0] < _HOT_TTL_S:
            return hit[1], hit[2]
        study, cfg = self._config(s, study_id)
        snap = SimpleNamespace(id=study.id, status=study.status, config_sha256=study.config_sha256)
        self._hot[study_id] = (now, snap, cfg)
        return snap, cfg

    def _config(self, s: Session, study_id: str) -> tuple[Study, StudyConfig]:
        study = s.get(Study, study_id) if study_id else None
        if study is None:
            known = s.scalars(select(Study.id).order_by(Study.created_at).limit(20)).all()
            # plain words, not Python reprs: the message is shown to people (the Study tab, the CLI)
            listed = ", ".join(known) if known else "none yet"
            raise StudyError(f'unknown study "{study_id}"; known studies: {listed}')
        cached = self._configs.get(study.id)
        if cached is None or cached[0] != study.config_sha256:
            cached = self._configs[study.id] = (study.config_sha256, StudyConfig.from_dict(study.config))
        return study, cached[1]

    def list_studies(self) -> list[dict[str, Any]]:
        """Id, title, mode and creation time of every study."""
        with self.Session() as s:
            return [
                {"id": st.id, "title": st.title, "mode": st.config.get("mode", "mos"), "created_at": st.created_at}
                for st in s.scalars(select(Study).order_by(Study.created_at))
            ]

    def rater_id(self, external_id: str, source: str = "link") -> str:
        """Keyed hash of an external rater id."""
        return hash_rater(self.secret, source, external_id)

    def _ensure_rater(self, s: Session, rid: str, source: str) -> Rater:
        s.execute(self._insert(Rater).values(id=rid, source=source, first_seen=utcnow()).on_conflict_do_nothing())
        return s.get(Rater, rid)

    def image_token(self, assignment_id: str, position: int, side: str) -> str:
        """Opaque URL token of one image of one slot: a keyed hash, so it looks random and cannot be guessed."""
        msg = f"img:{assignment_id}:{position}:{side}".encode()
        return hmac.new(self.secret.encode(), msg, hashlib.sha256).hexdigest()[:32]

    def _completion_code(self, cfg: StudyConfig, assignment_id: str) -> str:
        if cfg.completion_code:
            return cfg.completion_code
        return hmac.new(self.secret.encode(), f"code:{assignment_id}".encode(), hashlib.sha256).hexdigest()[:10].upper()
