"""Ratings from elsewhere: importing crowd-platform batches and restoring Hub backups, validated alike."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import func, select

from user_study.config import StudyConfig
from user_study.storage import (
    Assignment,
    Event,
    Item,
    Rating,
    new_id,
    utcnow,
)
from user_study.study_base import StudyError
from user_study.submission import RatingSubmission

__all__ = ["RatingTransfer", "read_jsonl_records"]


class RatingTransfer(RatingSubmission):
    """Import and restore (part of :class:`~user_study.service.StudyService`)."""

    def import_ratings(self, study_id: str, frame: pd.DataFrame, *, source: str = "import") -> dict[str, int]:
        """Import ratings collected elsewhere.

        ``frame`` needs columns ``rater`` (external id, hashed here), ``score`` and either ``item_id`` or
        ``method`` + ``scene``; optional ``submitted_at``. Rows for an existing (rater, item) are skipped.

        Returns:
            ``{"imported": n, "duplicates": n}``.
        """
        needed = {"rater", "score"}
        if not needed <= set(frame.columns) or not (
            {"item_id"} <= set(frame.columns) or {"method", "scene"} <= set(frame.columns)
        ):
            raise StudyError(
                f"import needs columns rater, score and item_id or method+scene; got {list(frame.columns)}"
            )
        items = self.items_frame(study_id)
        cfg = self.study_config(study_id)
        lookup = {
            (m, sc): i
            for i, k, m, sc in items[["item_id", "kind", "method", "scene"]].itertuples(index=False)
            if k in ("test", "pair")
        }
        valid_ids = set(items["item_id"])
        imported = dupes = 0
        with self.Session() as s, s.begin():
            for n_row, row in enumerate(frame.to_dict("records"), start=1):
                if "item_id" in row and isinstance(row.get("item_id"), str) and row["item_id"]:
                    item_id = row["item_id"]
                    if item_id not in valid_ids:
                        raise StudyError(f"item_id {item_id!r} is not in study {study_id!r}")
                else:
                    key = (str(row["method"]), str(row["scene"]))
                    if key not in lookup:
                        raise StudyError(f"no item for method={key[0]!r}, scene={key[1]!r} in study {study_id!r}")
                    item_id = lookup[key]
                value = self._checked_score(cfg, row["score"], f"row {n_row}")
                rid = self.rater_id(str(row["rater"]), source)
                self._ensure_rater(s, rid, source)
                when = pd.to_datetime(row.get("submitted_at"), utc=True, errors="coerce")
                when = utcnow() if pd.isna(when) else when.tz_convert(None).to_pydatetime()
                stored = self._add_rating(
                    s,
                    id=new_id(),
                    study_id=study_id,
                    rater_id=rid,
                    item_id=item_id,
                    score=value,
                    submitted_at=when,
                    source=source,
                )
                imported += stored
                dupes += not stored
            s.add(Event(study_id=study_id, kind="imported", detail={"source": source, "n": imported, "dupes": dupes}))
        return {"imported": imported, "duplicates": dupes}

    def _add_rating(self, s: Any, **values: Any) -> bool:
        """Insert one rating (not excluded) unless an identical one exists; True when it was stored."""
        stmt = (
            self._insert(Rating)
            .values(excluded=False, exclusion_reason="", **values)
            .on_conflict_do_nothing()
            .returning(Rating.id)
        )
        return s.execute(stmt).scalar() is not None

    def _checked_score(self, cfg: StudyConfig, score: Any, where: str) -> int:
        # the same rule as a live submit (0-4, or a pairwise choice), so no path stores what the page could not
        try:
            return self._parse_score(cfg, score)
        except StudyError as exc:
            raise StudyError(f"{where}: {exc}") from None

    @staticmethod
    def _checked_time(value: Any, where: str, name: str) -> dt.datetime:
        try:
            when = dt.datetime.fromisoformat(str(value))
        except (TypeError, ValueError):
            raise StudyError(f"{where}: {name}={value!r} is not an ISO date-time") from None
        if when.tzinfo is not None:
            when = when.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return when

    def restore_records(self, study_id: str, records: Iterable[dict[str, Any]]) -> dict[str, int]:
        """Insert rating records written by the Hub sink (JSON lines) into this database.

        For a fresh database after a restart: re-create the study with the same id from the same run (item ids
        are deterministic), then restore. Rater ids are already hashed and are kept; sessions come back as
        ``restored`` sessions so that session-level QC still applies. Records already present are skipped.

        Returns:
            ``{"restored": n, "skipped": n}``.
        """
        restored = skipped = 0
        with self.Session() as s, s.begin():
            _, cfg = self._config(s, study_id)
            items = set(s.scalars(select(Item.id).where(Item.study_id == study_id)))
            known_sessions = set(s.scalars(select(Assignment.id).where(Assignment.study_id == study_id)))
            for n_rec, rec in enumerate(records, start=1):
                if rec.get("study_id") != study_id:
                    skipped += 1
                    continue
                if rec["item_id"] not in items:
                    raise StudyError(
                        f"item {rec['item_id']!r} is not in study {study_id!r}: re-create the study with the same "
                        "id from the same evaluation run before restoring"
                    )
                where = f"record {n_rec}"
                value = self._checked_score(cfg, rec.get("score"), where)
                rid = str(rec.get("rater_id") or "").strip()
                if not rid:
                    raise StudyError(f"{where}: no rater_id")
                submitted = self._checked_time(rec.get("submitted_at"), where, "submitted_at")
                shown = self._checked_time(rec.get("shown_at"), where, "shown_at") if rec.get("shown_at") else None
                self._ensure_rater(s, rid, "restore")
                aid = rec.get("session_id")
                if aid and aid not in known_sessions:
                    seq = -1 - int(
                        s.scalar(
                            select(func.count())
                            .select_from(Assignment)
                            .where(Assignment.study_id == study_id, Assignment.rater_id == rid, Assignment.seq < 0)
                        )
                    )
                    when = submitted
                    s.add(
                        Assignment(
                            id=aid,
                            study_id=study_id,
                            rater_id=rid,
                            seq=seq,
                            created_at=when,
                            expires_at=when,
                            status="restored",
                            seed=0,
                            app_version=rec.get("app_version", ""),
                        )
                    )
                    s.flush()
                    known_sessions.add(aid)
                stored = self._add_rating(
                    s,
                    id=rec["rating_id"],
                    study_id=study_id,
                    rater_id=rid,
                    item_id=rec["item_id"],
                    assignment_id=aid or None,
                    position=rec.get("position"),
                    score=value,
                    swap=rec.get("swap"),
                    shown_at=shown,
                    submitted_at=submitted,
                    view_ms=rec.get("view_ms"),
                    source="restore",
                )
                restored += stored
                skipped += not stored
            s.add(Event(study_id=study_id, kind="restored", detail={"restored": restored, "skipped": skipped}))
        return {"restored": restored, "skipped": skipped}


def read_jsonl_records(path: Path) -> list[dict]:
    """Every JSON line of ``path`` (a .jsonl file, or every .jsonl file under a folder, in name order).

    A last line cut off by a crash mid-append is skipped; any other line that is not JSON raises ``ValueError``
    naming the file and line.
    """
    files = sorted(path.rglob("*.jsonl")) if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"no .jsonl files under {path}")
    records = []
    for f in files:
        lines = f.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                if n == len(lines):
                    continue  # a last line cut off by a crash mid-append
                raise ValueError(f"{f}:{n}: not JSON ({exc})") from exc
    return records
