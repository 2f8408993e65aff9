"""Validating a submit against the rater's stored assignment and storing it exactly once."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import bindparam, select

from user_study.config import PAIRWISE_CHOICES, StudyConfig
from user_study.sessions import SessionAssignment
from user_study.storage import (
    Assignment,
    Event,
    Rating,
    new_id,
    utcnow,
)
from user_study.study_base import APP_VERSION, SubmitRejected, SubmitResult

__all__ = ["RatingSubmission"]


class RatingSubmission(SessionAssignment):
    """Submits (part of :class:`~user_study.service.StudyService`)."""

    def submit(
        self,
        rater_id: str | None,
        slot_token: str,
        score: int | str | None,
        *,
        now: dt.datetime | None = None,
        client: dict[str, Any] | None = None,
    ) -> SubmitResult:
        """Validate a rating against the rater's assignment and store it exactly once.

        Args:
            rater_id: Hashed rater id (from the server-side state, never from the client); ``None`` when the
                caller has already proven it holds the session (the rater API's signed session token).
            slot_token: ``<assignment_id>:<position>`` of the slot being rated (from the page).
            score: 0-4 (MOS mode) or 0 = left, 1 = right, 2 = no preference (pairwise mode).
            now: Server time override (tests).
            client: Optional non-personal client info to keep in the audit trail.

        Returns:
            ``recorded`` with the next view, or ``duplicate`` when this slot was already rated (nothing written).

        Raises:
            SubmitRejected: Wrong session or slot, expired session, out-of-order slot, too fast, bad score.
        """
        now = now or utcnow()
        try:
            aid, pos_s = str(slot_token).rsplit(":", 1)
            position = int(pos_s)
        except ValueError:
            raise SubmitRejected(
                "bad_slot", f"malformed slot {slot_token!r}; expected '<session>:<position>'"
            ) from None
        try:
            result = self._submit(rater_id, aid, position, score, now, client)
        except SubmitRejected as exc:
            if exc.code != "too_fast":  # rejected submits are rolled back; log them in their own transaction
                with self._tx() as s:
                    s.add(
                        Event(
                            rater_id=rater_id,
                            assignment_id=aid,
                            kind="submit_rejected",
                            detail={"code": exc.code, "slot": slot_token},
                        )
                    )
            raise
        if self.sink is not None and result.status == "recorded":
            self.sink.append(result.record)
        return result

    def _rating_insert(self) -> Any:
        # built once: composing the statement on every submit cost more CPU than running it
        stmt = getattr(self, "_rating_insert_stmt", None)
        if stmt is None:
            cols = [c.name for c in Rating.__table__.columns]
            stmt = self._rating_insert_stmt = (
                self._insert(Rating.__table__)
                .values({c: bindparam(c) for c in cols})
                .on_conflict_do_nothing()
                .returning(Rating.__table__.c.id)
            )
        return stmt

    def _submit(
        self, rater_id: str | None, aid: str, position: int, score: Any, now: dt.datetime, client: dict[str, Any] | None
    ) -> SubmitResult:
        with self._tx() as s:
            a = s.get(Assignment, aid, with_for_update=True)  # serialises submits of one session (PostgreSQL)
            if a is None or (rater_id is not None and a.rater_id != rater_id):
                raise SubmitRejected("wrong_session", "this session does not belong to you; reload the page")
            rater_id = a.rater_id
            study, cfg = self._study_cached(s, a.study_id)
            rows = self._slot_rows(s, aid, rater_id)
            row = next((r for r in rows if r.Slot.position == position), None)
            if row is None:
                raise SubmitRejected("bad_slot", f"session has no position {position}")
            slot = row.Slot
            n_done = None  # counted only when this submit completes the session
            if row.rating_id is not None:
                s.add(
                    Event(
                        study_id=a.study_id,
                        rater_id=rater_id,
                        assignment_id=aid,
                        kind="duplicate_submit",
                        detail={"position": position, "score": str(score), "stored": row.stored_score},
                    )
                )
                view = self._view(s, study, cfg, a, rater_id, now, n_done, rows)
                return SubmitResult("duplicate", row.rating_id, view)
            value = self._parse_score(cfg, score)
            if a.status != "open" or a.expires_at <= now:
                raise SubmitRejected("expired", "this session has expired; reload the page to get a new one")
            first_pending = next((r.Slot.position for r in rows if r.rating_id is None), None)
            if first_pending != position:
                raise SubmitRejected("out_of_order", f"item {position + 1} is not the current one; reload the page")
            if slot.shown_at is None:
                raise SubmitRejected("not_shown", "this item has not been shown yet; reload the page")
            view_ms = (now - slot.shown_at).total_seconds() * 1000.0
            if view_ms < cfg.min_view_ms:
                left = max(0.1, (cfg.min_view_ms - view_ms) / 1000.0)
                exc = SubmitRejected("too_fast", f"Please look at both images a little longer ({left:.1f} s).")
                exc.retry_after_s = left
                raise exc
            if cfg.mode == "pairwise" and value in (0, 1) and slot.swap:
                value = 1 - value  # left/right on screen -> A/B
            rating_id = new_id()
            params = {
                "id": rating_id,
                "study_id": a.study_id,
                "rater_id": rater_id,
                "item_id": slot.item_id,
                "assignment_id": aid,
                "position": position,
                "score": value,
                "swap": slot.swap,
                "shown_at": slot.shown_at,
                "submitted_at": now,
                "view_ms": view_ms,
                "source": "app",
                "excluded": False,
                "exclusion_reason": "",
            }
            res = s.execute(self._rating_insert(), params).scalar()
            if res is None:  # lost a race with an identical submit: first write wins
                stored = s.scalar(select(Rating).where(Rating.rater_id == rater_id, Rating.item_id == slot.item_id))
                return SubmitResult("duplicate", stored.id, self._view(s, study, cfg, a, rater_id, now, n_done))
            ttl = dt.timedelta(minutes=cfg.session_ttl_min)
            if a.expires_at - now < ttl / 2:  # keep an active session alive (written only now and then)
                a.expires_at = now + ttl
            a.lease_until = now + dt.timedelta(minutes=cfg.lease_min)  # each rating renews the reservation
            record = {
                "rating_id": rating_id,
                "study_id": a.study_id,
                "rater_id": rater_id,
                "item_id": slot.item_id,
                "session_id": aid,
                "position": position,
                "score": value,
                "swap": slot.swap,
                "shown_at": slot.shown_at.isoformat(),
                "submitted_at": now.isoformat(),
                "view_ms": view_ms,
                "study_config_sha256": study.config_sha256,
                "app_version": APP_VERSION,
            }
            if client:
                record["client"] = client
            view = self._view(s, study, cfg, a, rater_id, now, n_done, rows, just_rated=position)
        return SubmitResult("recorded", rating_id, view, record)

    @staticmethod
    def _parse_score(cfg: StudyConfig, score: int | str | None) -> int:
        allowed = list(PAIRWISE_CHOICES) if cfg.mode == "pairwise" else list(range(5))
        try:
            value = int(score)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):  # OverflowError: Infinity / -Infinity
            value = None
        if value is None or value not in allowed or (isinstance(score, float) and not float(score).is_integer()):
            raise SubmitRejected("bad_score", f"score {score!r} is not allowed; choose one of {allowed}")
        return value
