"""Crowd user study for bokeh renderings: 0-4 ratings against the DSLR target, MOS leaderboards.

Modules: :mod:`~user_study.config` (settings, study config), :mod:`~user_study.storage` (SQLAlchemy schema),
:mod:`~user_study.service` (the :class:`StudyService` facade over :mod:`~user_study.creation`,
:mod:`~user_study.sessions`, :mod:`~user_study.submission`, :mod:`~user_study.transfer` and
:mod:`~user_study.reporting`), :mod:`~user_study.assignment` (session planning), :mod:`~user_study.qc` (quality
control), :mod:`~user_study.aggregate` (MOS, CIs, ranks, alpha, correlations), :mod:`~user_study.pairwise`
(preference tests, Bradley-Terry), :mod:`~user_study.report` (files, leaderboard), :mod:`~user_study.hub` (Hub
JSONL durability), :mod:`~user_study.rater_api` (the rater page ``/rate`` and its JSON API) and
:mod:`~user_study.ui` (the Gradio Study tab). CLI: ``python -m user_study``.
Heavy imports (gradio, plotly) happen only in the modules that need them.
"""

from __future__ import annotations

__all__ = ["build_demo", "build_study_ui"]


def build_study_ui(db_url: str | None = None, organizer_token: str | None = None) -> None:
    """See :func:`user_study.ui.build_study_ui` (imported lazily so the CLI does not load Gradio)."""
    from user_study.ui import build_study_ui as _build

    _build(db_url, organizer_token)


def build_demo(db_url: str | None = None, organizer_token: str | None = None):  # noqa: ANN201 - gr.Blocks
    """See :func:`user_study.ui.build_demo`."""
    from user_study.ui import build_demo as _build

    return _build(db_url, organizer_token)
