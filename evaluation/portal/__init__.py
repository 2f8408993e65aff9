"""The evaluation portal: researchers submit Val294 predictions, the portal checks and scores them under both
metric profiles with :mod:`evaluation.runner`, publishes the results to a Hub dataset and lists them.

Modules: :mod:`.checks` (zip and folder checks), :mod:`.scoring` (the one adapter to the evaluation runner),
:mod:`.queue` (the persisted scoring queue), :mod:`.store` (results, audit log, Hub publishing),
:mod:`.board` (leaderboard frames), :mod:`.study` (submissions as a user-study run folder),
:mod:`.models` (settings, submission metadata, submitter, refusals), :mod:`.service` (the :class:`Portal` tying
them together). Command line: ``python -m evaluation.submit``.
"""

from __future__ import annotations

from .checks import CheckLimits, CheckReport, SubmissionRefused, check_submission
from .models import PROFILES, DuplicateSubmission, PortalError, PortalSettings, SubmissionMeta, Submitter
from .service import Portal

__all__ = [
    "PROFILES",
    "CheckLimits",
    "CheckReport",
    "DuplicateSubmission",
    "Portal",
    "PortalError",
    "PortalSettings",
    "SubmissionMeta",
    "SubmissionRefused",
    "Submitter",
    "check_submission",
]
