"""What the portal is told: its settings, a submission's metadata, who submits, and the requests it refuses.

:class:`PortalSettings` (from the environment with :meth:`PortalSettings.from_env`), :class:`SubmissionMeta`
(checked and cleaned by :meth:`SubmissionMeta.validated`), :class:`Submitter`, :class:`PortalError` and
:class:`DuplicateSubmission`. :class:`~evaluation.portal.service.Portal` acts on them.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bokeh_model.errors import InputError

from .checks import CheckLimits

if TYPE_CHECKING:
    from .store import ResultsStore

__all__ = [
    "PROFILES",
    "DuplicateSubmission",
    "PortalError",
    "PortalSettings",
    "PortalState",
    "SubmissionMeta",
    "Submitter",
]

PROFILES = ("pynet", "dmshn")
_URL = re.compile(r"^https?://[^\s<>\"']+$")


class PortalError(InputError):
    """A request the portal refuses (not signed in, not yours, rate limit, bad metadata); the text says why."""


class PortalState(Protocol):
    """What the board and the study bridge read of a :class:`~evaluation.portal.service.Portal` (so that they need
    not import the service, which calls them)."""

    root: Path
    settings: PortalSettings
    store: ResultsStore


class DuplicateSubmission(PortalError):
    """The same archive again while the user's first copy still waits (a double click): ``sub_id`` is that one."""

    def __init__(self, sub_id: str) -> None:
        super().__init__(f"this archive is already queued as {sub_id}")
        self.sub_id = sub_id


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None


@dataclass(frozen=True)
class PortalSettings:
    """Where the portal keeps its files and what it scores against.

    Attributes:
        root: local folder (queue database, staged and accepted predictions, work folders, results mirror).
        dataset: the dataset submissions are scored on (a folder built by ``python -m evaluation.ebb build``, a
            hub id ...); ``None`` = the portal is not configured and refuses submissions, saying so.
        splits: splits a submission may target (the first is the default).
        hub_repo / hf_token: results dataset repo and a token that may write it (both or no publishing).
        organizer_token: unlocks organizer actions and, off a Space, submitting.
        per_day: submissions per user per 24 hours.
        limits: archive limits (size, count, ratio).
        measured_dir: an ``evaluation/run.py`` output folder whose rows are shown beside the submissions.
        lpips: compute LPIPS when the AlexNet trunk is present.
        allow_unofficial_lpips: accept an AlexNet trunk that is not torchvision's published file (its SHA-256
            does not match the official name); off by default, as in ``evaluation/run.py``.
        device: device for the evaluation (``auto``, ``cpu``, ``cuda``).
    """

    root: Path = Path("data/portal")
    dataset: str | None = None
    splits: tuple[str, ...] = ("val294",)
    hub_repo: str | None = None
    hf_token: str | None = None
    organizer_token: str | None = None
    per_day: int = 3
    limits: CheckLimits = field(default_factory=CheckLimits)
    measured_dir: Path | None = None
    lpips: bool = True
    allow_unofficial_lpips: bool = False
    device: str = "auto"

    @classmethod
    def from_env(cls) -> PortalSettings:
        """``BOKEH_PORTAL_DIR`` (default ``<BOKEH_DATA_DIR>/portal``), ``BOKEH_PORTAL_DATASET``,
        ``BOKEH_PORTAL_SPLITS`` (comma separated), ``BOKEH_PORTAL_HUB_REPO`` + ``HF_TOKEN``,
        ``BOKEH_ORGANIZER_TOKEN``, ``BOKEH_PORTAL_PER_DAY``, ``BOKEH_PORTAL_MAX_MB``, ``BOKEH_RESULTS_DIR``."""
        data_dir = Path(os.environ.get("BOKEH_DATA_DIR", "./data")).expanduser()
        max_mb = _env_int("BOKEH_PORTAL_MAX_MB", CheckLimits.max_archive_bytes >> 20)
        limits = CheckLimits(max_archive_bytes=max_mb << 20, max_total_bytes=max(max_mb << 20, 2048 << 20))
        splits = tuple(s.strip() for s in os.environ.get("BOKEH_PORTAL_SPLITS", "val294").split(",") if s.strip())
        results = os.environ.get("BOKEH_RESULTS_DIR")
        return cls(
            root=Path(os.environ.get("BOKEH_PORTAL_DIR") or data_dir / "portal").expanduser(),
            dataset=os.environ.get("BOKEH_PORTAL_DATASET") or None,
            splits=splits or ("val294",),
            hub_repo=os.environ.get("BOKEH_PORTAL_HUB_REPO") or None,
            hf_token=os.environ.get("HF_TOKEN") or None,
            organizer_token=os.environ.get("BOKEH_ORGANIZER_TOKEN") or None,
            per_day=_env_int("BOKEH_PORTAL_PER_DAY", 3),
            limits=limits,
            measured_dir=Path(results) if results else Path("runs/latest"),
        )


@dataclass
class SubmissionMeta:
    """What the submitter tells about the method (shown on the leaderboard as *reported by the submitter*)."""

    method: str
    authors: str
    license: str
    link: str = ""
    hardware: str = ""
    runtime_s: float | None = None
    uses_depth: bool = False
    extra_data: bool = False
    extra_data_note: str = ""
    description: str = ""

    def validated(self) -> SubmissionMeta:
        """A cleaned copy.

        Raises:
            PortalError: naming each field that is missing or malformed.
        """
        errors = []
        clean = replace(
            self,
            method=" ".join(str(self.method or "").split()),
            authors=" ".join(str(self.authors or "").split()),
            license=" ".join(str(self.license or "").split()),
            link=str(self.link or "").strip(),
            hardware=" ".join(str(self.hardware or "").split()),
            extra_data_note=" ".join(str(self.extra_data_note or "").split()),
            description=str(self.description or "").strip(),
            uses_depth=bool(self.uses_depth),
            extra_data=bool(self.extra_data),
        )
        for name, limit in (("method", 80), ("authors", 300), ("license", 80)):
            value = getattr(clean, name)
            if not value:
                errors.append(f"{name} is required")
            elif len(value) > limit:
                errors.append(f"{name} is longer than {limit} characters")
        if clean.link and (not _URL.match(clean.link) or len(clean.link) > 300):
            errors.append(f"link {clean.link[:60]!r} must be an http(s) URL")
        if len(clean.hardware) > 120:
            errors.append("hardware is longer than 120 characters")
        if len(clean.description) > 2000 or len(clean.extra_data_note) > 300:
            errors.append("description (2000) or extra-data note (300 characters) is too long")
        runtime = self.runtime_s
        if runtime in ("", None):
            runtime = None
        else:
            try:
                runtime = float(runtime)
            except (TypeError, ValueError):
                errors.append(f"runtime {self.runtime_s!r} must be a number of seconds")
                runtime = None
            if runtime is not None and (not math.isfinite(runtime) or runtime < 0):
                errors.append("runtime must be a non-negative number of seconds")
                runtime = None
        if errors:
            raise PortalError("; ".join(errors))
        return replace(clean, runtime_s=runtime)


@dataclass(frozen=True)
class Submitter:
    """Who submits: a Hugging Face username (signed in with OAuth) or a name vouched for by an organizer."""

    username: str
    name: str = ""
    via: str = "oauth"  # "oauth" or "organizer"

    @property
    def is_organizer(self) -> bool:
        return self.via == "organizer"
