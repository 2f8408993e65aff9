"""Handing out sessions: resume or plan a rater's session, leases, and the view of the current slot."""

from __future__ import annotations

import datetime as dt
import functools
import random
from types import SimpleNamespace
from typing import Any

from sqlalchemy import and_, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from user_study.assignment import Candidate, plan_session
from user_study.config import StudyConfig
from user_study.storage import (
    Assignment,
    Event,
    Item,
    Rating,
    Scene,
    Slot,
    SlotImage,
    Study,
    new_id,
    utcnow,
)
from user_study.study_base import APP_VERSION, RaterView, SessionCapReached, StudyError, StudyStore

__all__ = ["SessionAssignment"]


@functools.cache
def _SLOT_ROWS() -> Any:  # noqa: N802 - a constant, built on first use
    return (
        select(
            Slot.position,
            Slot.item_id,
            Slot.swap,
            Slot.shown_at,
            Rating.id.label("rating_id"),
            Rating.score.label("stored_score"),
            Item.image_path,
            Item.image_b_path,
            Item.instruction,
            Scene.target_path,
        )
        .join(Item, Item.id == Slot.item_id)
        .join(Scene, Scene.id == Item.scene_id)
        .outerjoin(Rating, and_(Rating.rater_id == bindparam("rid"), Rating.item_id == Slot.item_id))
        .where(Slot.assignment_id == bindparam("aid"))
        .order_by(Slot.position)
    )


class SessionAssignment(StudyStore):
    """Session start/resume and planning (part of :class:`~user_study.service.StudyService`)."""

    def begin(
        self,
        study_id: str,
        external_id: str,
        source: str = "link",
        *,
        now: dt.datetime | None = None,
        allow_new: bool = True,
    ) -> RaterView:
        """Resume the rater's open session or start a new one; returns what to show.

        Args:
            study_id: Study id (from ``?study=``).
            external_id: Platform id / invite code / username (hashed at once, never stored).
            source: Origin of the id (``link``, ``prolific``, ``mturk``, ``invite``, ``hf_oauth``).
            now: Server time override (tests).
            allow_new: ``False``: only resume an open session; starting a new one raises
                :class:`~user_study.study_base.SessionCapReached` (the caller's per-client cap is reached).
        """
        try:
            rid = self.rater_id(external_id, source)
        except ValueError as exc:
            raise StudyError(str(exc)) from exc
        for attempt in range(3):
            try:
                return self._begin(study_id, rid, source, now or utcnow(), allow_new)
            except IntegrityError:  # a parallel request opened the same session number: resume that one
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _begin(self, study_id: str, rid: str, source: str, now: dt.datetime, allow_new: bool) -> RaterView:
        with self._tx() as s:
            study, cfg = self._config(s, study_id)
            rater = self._ensure_rater(s, rid, source)
            if rater.blocked:
                raise StudyError("this rater link is blocked for this study; contact the organizer")
            if study.status != "open":
                raise StudyError(f"study {study_id!r} is {study.status}, not open for ratings")
            sessions = s.scalars(
                select(Assignment).where(Assignment.study_id == study_id, Assignment.rater_id == rid)
            ).all()
            n_done = sum(a.status == "completed" for a in sessions)
            for a in sessions:
                if a.status == "open" and a.expires_at <= now:
                    a.status = "expired"
                    s.add(Event(study_id=study_id, rater_id=rid, assignment_id=a.id, kind="session_expired"))
            current = next((a for a in sessions if a.status == "open"), None)
            if current is not None:
                s.add(Event(study_id=study_id, rater_id=rid, assignment_id=current.id, kind="session_resumed"))
                rows = self._slot_rows(s, current.id, rid)
                if s.scalar(select(SlotImage.token).where(SlotImage.assignment_id == current.id).limit(1)) is None:
                    self._add_slot_images(s, cfg, current.id, rows)  # a session opened before image tokens existed
                return self._view(s, study, cfg, current, rid, now, n_done, rows)
            if len(sessions) >= cfg.max_sessions_per_rater:
                return RaterView(
                    study_id,
                    rid,
                    finished=True,
                    mode=cfg.mode,
                    sessions_done=n_done,
                    message=f"You have done the maximum of {cfg.max_sessions_per_rater} sessions. Thank you!",
                )
            if not allow_new:
                raise SessionCapReached(
                    "too many sessions were started from your network in the last minutes; try again later"
                )
            slots = self._plan(s, study_id, rid, cfg, now)
            if not slots:
                return RaterView(
                    study_id,
                    rid,
                    finished=True,
                    mode=cfg.mode,
                    sessions_done=n_done,
                    message="There is nothing left for you to rate in this study. Thank you!",
                )
            seq = max((a.seq for a in sessions), default=0) + 1
            a = Assignment(
                id=new_id(),
                study_id=study_id,
                rater_id=rid,
                seq=seq,
                created_at=now,
                expires_at=now + dt.timedelta(minutes=cfg.session_ttl_min),
                lease_until=now + dt.timedelta(minutes=cfg.lease_min),
                status="open",
                seed=random.getrandbits(31),
                app_version=APP_VERSION,
            )
            a.completion_code = self._completion_code(cfg, a.id)
            s.add(a)
            s.flush()  # the assignment row first (the slots refer to it)
            # plain multi-row inserts: a session has dozens of slots and twice as many image tokens, and
            # building them as ORM objects was most of the CPU cost of starting a session
            s.execute(
                insert(Slot.__table__),
                [
                    {"assignment_id": a.id, "position": i, "item_id": p.item_id, "swap": p.swap}
                    for i, p in enumerate(slots)
                ],
            )
            s.add(
                Event(
                    study_id=study_id,
                    rater_id=rid,
                    assignment_id=a.id,
                    kind="session_started",
                    detail={"slots": len(slots)},
                )
            )
            s.flush()
            rows = self._slot_rows(s, a.id, rid)
            self._add_slot_images(s, cfg, a.id, rows)
            view = self._view(s, study, cfg, a, rid, now, n_done, rows)
            view.started = True
            return view

    def _add_slot_images(self, s: Session, cfg: StudyConfig, aid: str, rows: list[Any]) -> None:
        s.execute(
            insert(SlotImage.__table__),
            [
                {
                    "token": self.image_token(aid, r.Slot.position, side),
                    "assignment_id": aid,
                    "position": r.Slot.position,
                    "side": side,
                    "path": path,
                }
                for r in rows
                for side, path in zip(("left", "right"), self._sides(cfg, r)[:2], strict=True)
            ],
        )

    def session_view(self, assignment_id: str, *, now: dt.datetime | None = None) -> RaterView:
        """What the holder of a session should see now (the rater API's "current item").

        Raises:
            StudyError: Unknown session.
        """
        now = now or utcnow()
        with self._tx() as s:
            a = s.get(Assignment, assignment_id)
            if a is None:
                raise StudyError("unknown session; open your study link again")
            study, cfg = self._study_cached(s, a.study_id)
            if a.status in ("open", "expired") and a.expires_at <= now:
                if a.status == "open":
                    a.status = "expired"
                    s.add(Event(study_id=a.study_id, rater_id=a.rater_id, assignment_id=a.id, kind="session_expired"))
                return RaterView(
                    study.id,
                    a.rater_id,
                    assignment_id=a.id,
                    mode=cfg.mode,
                    message="This session has expired. Start again to get a new one; your ratings are kept.",
                )
            return self._view(s, study, cfg, a, a.rater_id, now, None)

    def image_path(self, token: str) -> str | None:
        """File behind an image token of a slot (``None`` for an unknown token)."""
        with self._tx() as s:
            return s.scalar(select(SlotImage.path).where(SlotImage.token == token))

    @staticmethod
    def _sides(cfg: StudyConfig, row: Any) -> tuple[str, str, str, str]:
        """``(left_path, right_path, left_label, right_label)`` of a slot row."""
        if cfg.mode == "pairwise":
            a_path, b_path = row.image_path, row.image_b_path
            left, right = (b_path, a_path) if row.Slot.swap else (a_path, b_path)
            return left, right, "Left image", "Right image"
        target, shown = row.target_path, row.image_path
        if row.Slot.swap:
            return target, shown, "Target (DSLR photo)", "Rendered image"
        return shown, target, "Rendered image", "Target (DSLR photo)"

    def _plan(self, s: Session, study_id: str, rid: str, cfg: StudyConfig, now: dt.datetime) -> list:
        items = s.execute(
            select(Item.id, Item.kind, Item.scene_id, Item.method_id, Item.method_b_id).where(Item.study_id == study_id)
        ).all()
        rated = dict(
            s.execute(
                select(Rating.item_id, func.count())
                .where(Rating.study_id == study_id, ~Rating.excluded)
                .group_by(Rating.item_id)
            ).all()
        )
        # open leases: slots of open sessions still within their lease (short until the first rating, renewed by
        # each rating) whose item the session's rater has not rated yet
        leases = dict(
            s.execute(
                select(Slot.item_id, func.count())
                .join(Assignment, Assignment.id == Slot.assignment_id)
                .outerjoin(Rating, and_(Rating.rater_id == Assignment.rater_id, Rating.item_id == Slot.item_id))
                .where(
                    Assignment.study_id == study_id,
                    Assignment.status == "open",
                    Assignment.expires_at > now,
                    func.coalesce(Assignment.lease_until, Assignment.expires_at) > now,
                    Rating.id.is_(None),
                )
                .group_by(Slot.item_id)
            ).all()
        )
        seen = set(s.scalars(select(Rating.item_id).where(Rating.rater_id == rid, Rating.study_id == study_id)))
        seen |= set(
            s.scalars(
                select(Slot.item_id)
                .join(Assignment, Assignment.id == Slot.assignment_id)
                .where(Assignment.rater_id == rid, Assignment.study_id == study_id)
            )
        )
        cands = [
            Candidate(
                i.id,
                i.kind,
                i.scene_id,
                (i.method_id, i.method_b_id),
                served=rated.get(i.id, 0) + leases.get(i.id, 0),
                rated=rated.get(i.id, 0),
            )
            for i in items
        ]
        n_controls = {}
        if cfg.mode == "mos":
            n_controls = {
                "hidden_ref": cfg.hidden_ref_per_session,
                "gold": cfg.gold_per_session,
                "trap": cfg.trap_per_session,
            }
        return plan_session(
            cands,
            seen=seen,
            n_test=cfg.items_per_session,
            n_controls=n_controls,
            target_votes=cfg.target_votes_per_item,
            pairing=cfg.pairing,
            rng=random.Random(),
        )

    @staticmethod
    def _slot_rows(s: Session, aid: str, rid: str) -> list[Any]:
        """All slots of a session with the rater's rating (if any), the item and the target: one query.

        Plain rows (``row.Slot`` is a small record, not a mapped object): loading a session's slots as ORM
        objects on every submit was the largest CPU cost of a submit. ``_view`` writes ``shown_at`` itself.
        """
        rows = s.execute(_SLOT_ROWS(), {"aid": aid, "rid": rid}).all()
        return [
            SimpleNamespace(
                Slot=SimpleNamespace(position=r.position, item_id=r.item_id, swap=r.swap, shown_at=r.shown_at),
                rating_id=r.rating_id,
                stored_score=r.stored_score,
                image_path=r.image_path,
                image_b_path=r.image_b_path,
                instruction=r.instruction,
                target_path=r.target_path,
            )
            for r in rows
        ]

    def _view(
        self,
        s: Session,
        study: Study,
        cfg: StudyConfig,
        a: Assignment,
        rid: str,
        now: dt.datetime,
        n_done: int | None,
        rows: list[Any] | None = None,
        just_rated: int | None = None,
    ) -> RaterView:
        rows = self._slot_rows(s, a.id, rid) if rows is None else rows
        n = len(rows)
        pending = [r for r in rows if r.rating_id is None and r.Slot.position != just_rated]
        view = RaterView(study.id, rid, assignment_id=a.id, n_slots=n, mode=cfg.mode, sessions_done=n_done or 0)
        if not pending:
            if n_done is None:
                n_done = s.scalar(
                    select(func.count())
                    .select_from(Assignment)
                    .where(
                        Assignment.study_id == study.id, Assignment.rater_id == rid, Assignment.status == "completed"
                    )
                )
                view.sessions_done = n_done
            if a.status != "completed":
                a.status, a.completed_at = "completed", now
                s.add(Event(study_id=study.id, rater_id=rid, assignment_id=a.id, kind="session_completed"))
                view.sessions_done = n_done + 1
            view.position, view.done = n, True
            view.completion_code = a.completion_code
            more = view.sessions_done < cfg.max_sessions_per_rater
            # the page's title says "Thank you!": the message does not repeat it
            view.message = "Session complete: your ratings are saved." + (
                " You may start another session." if more else ""
            )
            view.finished = not more
            return view
        row = pending[0]
        slot = row.Slot
        if slot.shown_at is None:
            slot.shown_at = now
            s.execute(
                update(Slot)
                .where(Slot.assignment_id == a.id, Slot.position == slot.position, Slot.shown_at.is_(None))
                .values(shown_at=now)
            )
        view.position = slot.position
        view.instruction = row.instruction
        view.left_path, view.right_path, view.left_label, view.right_label = self._sides(cfg, row)
        view.left_image = self.image_token(a.id, slot.position, "left")
        view.right_image = self.image_token(a.id, slot.position, "right")
        if len(pending) > 1:
            nxt = pending[1].Slot.position
            view.next_images = [self.image_token(a.id, nxt, "left"), self.image_token(a.id, nxt, "right")]
        return view
