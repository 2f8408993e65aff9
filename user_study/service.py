"""Study service: create studies, hand out sessions, validate and store ratings, read tables back.

Every method opens its own short transaction, so one :class:`StudyService` can be shared by all request
threads of the app (rater state lives in the caller, e.g. ``gr.State``). All validation of a submit happens
here, on the server, against the rater's stored assignment.

The implementation is split by concern; :class:`StudyService` only puts the parts together:

- :mod:`user_study.study_base`: errors, :class:`RaterView`, the database handle and study lookups;
- :mod:`user_study.creation`: building a study from an evaluation run;
- :mod:`user_study.sessions`: assignment (start/resume, leases, planning, the current slot);
- :mod:`user_study.submission`: validating and storing a submit;
- :mod:`user_study.transfer`: import of outside ratings and restore of Hub backups;
- :mod:`user_study.reporting`: tables, progress, exclusions and the audit trail for organizers.

:func:`get_service` hands out one shared service per database and process (the web apps use it).
"""

from __future__ import annotations

from user_study.config import Settings
from user_study.creation import StudyCreation, discover_run
from user_study.hub import sink_from_env
from user_study.reporting import StudyReporting
from user_study.study_base import (
    APP_VERSION,
    IMAGE_EXTS,
    RaterView,
    SessionCapReached,
    StudyError,
    SubmitRejected,
    SubmitResult,
)
from user_study.transfer import RatingTransfer

__all__ = [
    "APP_VERSION",
    "IMAGE_EXTS",
    "RaterView",
    "SessionCapReached",
    "StudyError",
    "StudyService",
    "SubmitRejected",
    "SubmitResult",
    "discover_run",
    "get_service",
]


class StudyService(StudyCreation, RatingTransfer, StudyReporting):
    """Database-backed study logic shared by the UI, the rater API, the CLI and the tests.

    Args:
        db_url: SQLAlchemy URL.
        rater_secret: Key of the rater-id hash.
        data_dir: Where study media are copied (``<data_dir>/studies/<study_id>/``).
        sink: Optional object with ``append(record: dict)`` that receives every stored rating (Hub JSONL).
    """


_SERVICES: dict[str, StudyService] = {}


def get_service(db_url: str | None = None) -> StudyService:
    """The shared :class:`StudyService` of this process for ``db_url`` (settings from the environment).

    One engine (connection pool) per database per process; it holds no per-rater data.
    """
    settings = Settings.from_env(db_url)
    svc = _SERVICES.get(settings.db_url)
    if svc is None:
        sink = sink_from_env(settings.data_dir, settings.hub_repo, settings.hf_token)
        svc = _SERVICES[settings.db_url] = StudyService.from_settings(settings, sink=sink)
    return svc
