"""Settings from the environment and the per-study configuration (scale, sessions, quality control).

Environment variables:

- ``BOKEH_DATA_DIR``: data directory (default ``./data``).
- ``BOKEH_STUDY_DB``: SQLAlchemy URL of the study database (default ``sqlite:///<BOKEH_DATA_DIR>/study.db``;
  PostgreSQL through e.g. ``postgresql+psycopg://user:pw@host/db`` for several replicas).
- ``BOKEH_ORGANIZER_TOKEN``: token that unlocks the organizer view (no token = organizer view disabled).
- ``BOKEH_RATER_SECRET``: key for the keyed hash of rater ids. When unset a random key is created once and
  kept in ``<BOKEH_DATA_DIR>/.rater_secret`` so that ids stay stable across restarts.
- ``BOKEH_STUDY_HUB_REPO`` + ``HF_TOKEN``: optional Hub dataset that receives every rating as JSON lines.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_SCALE_LABELS",
    "PAIRWISE_CHOICES",
    "Settings",
    "StudyConfig",
    "ensure_rater_secret",
]

#: 0 and 4 are the paper's labels; 1-3 are ours (the paper states only the two ends).
DEFAULT_SCALE_LABELS: dict[int, str] = {
    0: "almost identical",
    1: "small differences",
    2: "clearly visible differences",
    3: "large differences",
    4: "mostly different",
}

#: Stored value of a pairwise choice: 0 = first method (A) preferred, 1 = second (B), 2 = no preference.
PAIRWISE_CHOICES: dict[int, str] = {0: "A", 1: "B", 2: "tie"}

_MODES = ("mos", "pairwise")
_PAIRINGS = ("spread", "balanced_block")


@dataclass
class StudyConfig:
    """Everything that defines how a study is run and scored. Its SHA-256 is stored with the study.

    Attributes:
        title: Title shown to raters.
        mode: ``"mos"`` (0-4 rating against the DSLR target) or ``"pairwise"`` (two renderings, pick one).
        scale_labels: Labels of the 0-4 scale (0 and 4 as in the paper; 1-3 configurable).
        target_votes_per_item: Votes after which an item is no longer served.
        items_per_session: Test items per rating session.
        gold_per_session: Gold items (another scene's target, expected 4 within +-1) per session.
        trap_per_session: Trap items (image with an instruction to pick a given score) per session.
        hidden_ref_per_session: Hidden references (target against itself, expected <= 1) per session.
        min_view_ms: Minimum time between showing an item and accepting its rating (checked on the server).
        session_ttl_min: How long a session accepts ratings (renewed while the rater keeps rating).
        lease_min: How long a session reserves its unrated items: from its start, and again from each rating.
            A rater who opens a link and leaves frees the items after this many minutes.
        max_sessions_per_rater: Sessions one rater may do in this study.
        pairing: ``"spread"`` (at most one method per scene in a session) or ``"balanced_block"``.
        completion_code: Fixed completion code (e.g. the Prolific study code); empty = one code per session.
        completion_url: Optional link shown at the end, ``{code}`` is replaced by the completion code.
        instructions_md: Extra instructions (Markdown) shown before the first item.
        qc: Quality-control thresholds (see :mod:`user_study.qc`).
        bootstrap_rounds: Rounds of the rater x scene cluster bootstrap for method CIs.
        seed: Seed of every random choice in aggregation.
    """

    title: str = "Bokeh rendering study"
    mode: str = "mos"
    scale_labels: dict[int, str] = field(default_factory=lambda: dict(DEFAULT_SCALE_LABELS))
    target_votes_per_item: int = 10
    items_per_session: int = 10
    gold_per_session: int = 1
    trap_per_session: int = 1
    hidden_ref_per_session: int = 1
    min_view_ms: int = 3000
    session_ttl_min: float = 60.0
    lease_min: float = 5.0
    max_sessions_per_rater: int = 60
    pairing: str = "spread"
    completion_code: str = ""
    completion_url: str = ""
    instructions_md: str = ""
    qc: dict[str, Any] = field(
        default_factory=lambda: {
            "hidden_ref_max": 1,
            "gold_tolerance": 1,
            "trap_exact": True,
            "min_session_variance": 0.1,
            "min_rater_corr": 0.7,
            "min_items_for_corr": 3,
            "min_other_votes_for_corr": 2,
            "bt500": False,
            "min_median_view_ms": 0,
        }
    )
    bootstrap_rounds: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        self.scale_labels = {int(k): str(v) for k, v in self.scale_labels.items()}
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad value and the allowed ones."""
        if self.mode not in _MODES:
            raise ValueError(f"mode={self.mode!r} is not allowed; use one of {_MODES}")
        if self.pairing not in _PAIRINGS:
            raise ValueError(f"pairing={self.pairing!r} is not allowed; use one of {_PAIRINGS}")
        if sorted(self.scale_labels) != [0, 1, 2, 3, 4]:
            raise ValueError(f"scale_labels must have the keys 0..4, got {sorted(self.scale_labels)}")
        for name in ("target_votes_per_item", "items_per_session", "max_sessions_per_rater"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} must be >= 1")
        for name in ("gold_per_session", "trap_per_session", "hidden_ref_per_session", "min_view_ms"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be >= 0")
        if self.session_ttl_min <= 0:
            raise ValueError(f"session_ttl_min={self.session_ttl_min!r} must be > 0")
        if self.lease_min <= 0:
            raise ValueError(f"lease_min={self.lease_min!r} must be > 0")
        if self.bootstrap_rounds < 10:
            raise ValueError(f"bootstrap_rounds={self.bootstrap_rounds!r} must be >= 10")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (scale label keys become strings)."""
        data = dataclasses.asdict(self)
        data["scale_labels"] = {str(k): v for k, v in self.scale_labels.items()}
        return data

    def to_json(self) -> str:
        """Canonical JSON (sorted keys), the input of :meth:`sha256`."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def sha256(self) -> str:
        """SHA-256 of the canonical JSON; a changed config gives a new hash."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudyConfig:
        """Build from a dict, rejecting unknown keys; missing QC keys keep their defaults."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown study config keys {unknown}; allowed: {sorted(names)}")
        data = dict(data)
        if "qc" in data:
            qc = cls().qc
            qc.update(data["qc"])
            data["qc"] = qc
        return cls(**data)


def ensure_rater_secret(data_dir: Path) -> str:
    """Read (or create once, mode 600) the key used to hash rater ids when none is configured."""
    path = Path(data_dir) / ".rater_secret"
    if path.exists():
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)  # written by an older version with the default mode
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    logging.getLogger(__name__).warning(
        "BOKEH_RATER_SECRET is not set: created a random key in %s. Set BOKEH_RATER_SECRET (a Space secret) so "
        "rater ids stay the same when this disk is lost.",
        path,
    )
    value = secrets.token_hex(32)
    tmp = path.with_name(f".rater_secret.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    try:
        os.link(tmp, path)  # fails if another process created it first: then use theirs
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_text().strip()


@dataclass
class Settings:
    """Deployment settings read from the environment (see the module docstring)."""

    data_dir: Path
    db_url: str
    organizer_token: str | None
    rater_secret: str
    hub_repo: str | None
    hf_token: str | None

    @classmethod
    def from_env(cls, db_url: str | None = None, organizer_token: str | None = None) -> Settings:
        """Read the environment; explicit arguments win over it."""
        data_dir = Path(os.environ.get("BOKEH_DATA_DIR", "./data")).expanduser()
        url = db_url or os.environ.get("BOKEH_STUDY_DB") or f"sqlite:///{(data_dir / 'study.db').absolute()}"
        token = organizer_token if organizer_token is not None else os.environ.get("BOKEH_ORGANIZER_TOKEN")
        secret = os.environ.get("BOKEH_RATER_SECRET") or ensure_rater_secret(data_dir)
        return cls(
            data_dir=data_dir,
            db_url=url,
            organizer_token=token or None,
            rater_secret=secret,
            hub_repo=os.environ.get("BOKEH_STUDY_HUB_REPO") or None,
            hf_token=os.environ.get("HF_TOKEN") or None,
        )
