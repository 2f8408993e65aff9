"""Reading a study back for organizers: ratings and items as tables, progress, exclusions, audit trail."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

import pandas as pd
from sqlalchemy import select, update

from user_study.storage import (
    Assignment,
    Event,
    Item,
    Method,
    Rater,
    Rating,
    Scene,
    utcnow,
)
from user_study.study_base import StudyError, StudyStore

__all__ = ["StudyReporting"]


class StudyReporting(StudyStore):
    """Organizer reads and moderation (part of :class:`~user_study.service.StudyService`)."""

    def ratings_frame(self, study_id: str) -> pd.DataFrame:
        """Every rating of a study joined with item, method, scene and session (one row per rating)."""
        from sqlalchemy.orm import aliased

        mb = aliased(Method)
        with self.Session() as s:
            self._config(s, study_id)
            rows = s.execute(
                select(
                    Rating.id.label("rating_id"),
                    Rating.rater_id,
                    Rating.item_id,
                    Rating.assignment_id.label("session_id"),
                    Rating.position,
                    Rating.score,
                    Rating.swap,
                    Rating.shown_at,
                    Rating.submitted_at,
                    Rating.view_ms,
                    Rating.source,
                    Rating.excluded,
                    Rating.exclusion_reason,
                    Item.kind,
                    Item.expected_score,
                    Item.tolerance,
                    Method.name.label("method"),
                    mb.name.label("method_b"),
                    Scene.name.label("scene"),
                )
                .join(Item, Item.id == Rating.item_id)
                .join(Scene, Scene.id == Item.scene_id)
                .outerjoin(Method, Method.id == Item.method_id)
                .outerjoin(mb, mb.id == Item.method_b_id)
                .where(Rating.study_id == study_id)
                .order_by(Rating.submitted_at, Rating.id)
            ).all()
        cols = [
            "rating_id",
            "rater_id",
            "item_id",
            "session_id",
            "position",
            "score",
            "swap",
            "shown_at",
            "submitted_at",
            "view_ms",
            "source",
            "excluded",
            "exclusion_reason",
            "kind",
            "expected_score",
            "tolerance",
            "method",
            "method_b",
            "scene",
        ]
        return pd.DataFrame([tuple(r) for r in rows], columns=cols)

    def items_frame(self, study_id: str) -> pd.DataFrame:
        """Every item with its method, scene and kind."""
        with self.Session() as s:
            self._config(s, study_id)
            rows = s.execute(
                select(Item.id, Item.kind, Method.name, Scene.name, Item.expected_score)
                .join(Scene, Scene.id == Item.scene_id)
                .outerjoin(Method, Method.id == Item.method_id)
                .where(Item.study_id == study_id)
            ).all()
        return pd.DataFrame([tuple(r) for r in rows], columns=["item_id", "kind", "method", "scene", "expected_score"])

    def status(self, study_id: str, *, now: dt.datetime | None = None) -> dict[str, Any]:
        """Progress per method and item kind, sessions, raters and exclusions."""
        now = now or utcnow()
        cfg = self.study_config(study_id)
        items = self.items_frame(study_id)
        ratings = self.ratings_frame(study_id)
        counts = ratings.groupby("item_id").size() if len(ratings) else pd.Series(dtype=int)
        items["n_ratings"] = items["item_id"].map(counts).fillna(0).astype(int)
        tests = items[items["kind"].isin(["test", "pair"])]
        per_method = (
            tests.groupby(tests["method"].fillna("-"))
            .agg(items=("item_id", "size"), ratings=("n_ratings", "sum"), min_votes=("n_ratings", "min"))
            .reset_index()
        )
        per_method["target_votes"] = cfg.target_votes_per_item
        per_method["done_pct"] = (
            100.0
            * tests.assign(c=tests["n_ratings"].clip(upper=cfg.target_votes_per_item))
            .groupby(tests["method"].fillna("-"))["c"]
            .sum()
            .values
            / (per_method["items"] * cfg.target_votes_per_item)
        ).round(1)
        with self.Session() as s:
            sess = s.execute(
                select(Assignment.status, Assignment.expires_at).where(Assignment.study_id == study_id)
            ).all()
        n_open = sum(st == "open" and exp > now for st, exp in sess)
        return {
            "study_id": study_id,
            "mode": cfg.mode,
            "per_method": per_method,
            "per_kind": items.groupby("kind")["n_ratings"]
            .agg(["size", "sum"])
            .reset_index()
            .rename(columns={"size": "items", "sum": "ratings"}),
            "per_item": items,
            "n_ratings": int(len(ratings)),
            "n_raters": int(ratings["rater_id"].nunique()) if len(ratings) else 0,
            "sessions": {
                "open": n_open,
                "completed": sum(st == "completed" for st, _ in sess),
                "expired": sum(st == "expired" or (st == "open" and exp <= now) for st, exp in sess),
            },
            "excluded_manual": int(ratings["excluded"].sum()) if len(ratings) else 0,
        }

    def exclude(
        self, study_id: str, *, reason: str, rating_ids: Iterable[str] = (), rater_ids: Iterable[str] = ()
    ) -> int:
        """Exclude ratings (by id, or all of given raters) with a reason; nothing is deleted. Returns the count."""
        if not reason.strip():
            raise StudyError("an exclusion needs a reason")
        rating_ids, rater_ids = list(rating_ids), list(rater_ids)
        with self.Session() as s, s.begin():
            self._config(s, study_id)
            cond = Rating.id.in_(rating_ids) if rating_ids else Rating.rater_id.in_(rater_ids)
            n = s.execute(
                update(Rating).where(Rating.study_id == study_id, cond).values(excluded=True, exclusion_reason=reason)
            ).rowcount
            s.add(
                Event(
                    study_id=study_id,
                    kind="excluded",
                    detail={"reason": reason, "ratings": rating_ids, "raters": rater_ids, "n": n},
                )
            )
        return int(n)

    def block_rater(self, rater_id: str, blocked: bool = True, note: str = "") -> None:
        """Block (or unblock) a hashed rater id from starting sessions."""
        with self.Session() as s, s.begin():
            r = s.get(Rater, rater_id)
            if r is None:
                raise StudyError(f"unknown rater {rater_id!r}")
            r.blocked, r.notes = blocked, note
            s.add(Event(rater_id=rater_id, kind="blocked" if blocked else "unblocked", detail={"note": note}))

    def events_frame(self, study_id: str) -> pd.DataFrame:
        """The audit trail of a study."""
        with self.Session() as s:
            rows = s.execute(
                select(Event.created_at, Event.kind, Event.rater_id, Event.assignment_id, Event.detail)
                .where(Event.study_id == study_id)
                .order_by(Event.id)
            ).all()
        return pd.DataFrame(
            [(c, k, r, a, json.dumps(d, default=str)) for c, k, r, a, d in rows],
            columns=["created_at", "kind", "rater_id", "session_id", "detail"],
        )
