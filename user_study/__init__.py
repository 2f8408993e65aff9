"""Crowd user study for bokeh renderings: 0-4 ratings against the DSLR target, MOS leaderboards.

Modules: :mod:`~user_study.config` (settings, study config), :mod:`~user_study.storage` (SQLAlchemy schema),
:mod:`~user_study.service` (the :class:`StudyService` facade over :mod:`~user_study.creation`,
:mod:`~user_study.sessions`, :mod:`~user_study.submission`, :mod:`~user_study.transfer` and
:mod:`~user_study.reporting`), :mod:`~user_study.assignment` (session planning), :mod:`~user_study.qc` (quality
control), :mod:`~user_study.aggregate` (MOS, CIs, ranks, alpha, correlations), :mod:`~user_study.pairwise`
(preference tests, Bradley-Terry), :mod:`~user_study.report` (files, leaderboard), :mod:`~user_study.hub` (Hub
JSONL durability), :mod:`~user_study.rater_api` (the rater page ``/rate`` and its JSON API, with
:mod:`~user_study.rater_http` and :mod:`~user_study.rater_limits`). CLI: ``python -m user_study``.

No Gradio here: the Study tab of the app (organizer views, link builder, export form) is
:mod:`space.study_tab`, which imports this package, never the reverse. Heavy imports (plotly) happen only in
the modules that need them.
"""

from __future__ import annotations

__all__: list[str] = []
