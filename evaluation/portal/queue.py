"""The scoring queue: one SQLite table of jobs, so queued work survives a restart of the app.

States: ``queued`` -> ``running`` -> ``scored`` | ``failed``; ``cancelled`` when the submitter withdraws a job
before it ran. A job left ``running`` by a crash is queued again when the queue is opened. "One pending
submission per user" and the rate limit are checked and the job inserted in one ``BEGIN IMMEDIATE``
transaction, so two quick clicks cannot both get through.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Job", "JobQueue", "QueueRefused"]

PENDING = ("queued", "running")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    stage TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL DEFAULT '',
    sha256 TEXT NOT NULL DEFAULT '',
    archive_sha256 TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS jobs_user ON jobs (user, created_at);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, created_at);
"""


class QueueRefused(Exception):
    """A submission the queue does not take now (one already pending, or the rate limit); the text says why.

    ``pending`` is the user's waiting job when that is the reason (to recognise a double click).
    """

    def __init__(self, message: str, pending: Job | None = None) -> None:
        super().__init__(message)
        self.pending = pending


@dataclass(frozen=True)
class Job:
    id: str
    user: str
    status: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    stage: str
    message: str
    sha256: str = ""
    archive_sha256: str = ""


class JobQueue:
    """Jobs in ``<path>`` (SQLite, WAL). A connection per call keeps it usable from any thread."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            # A job that was running when the process died is scored again from the start.
            db.execute("UPDATE jobs SET status='queued', stage='requeued after a restart' WHERE status='running'")

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            yield db
        finally:
            db.close()

    @staticmethod
    def _job(row: tuple) -> Job:
        return Job(*row)

    def add(
        self,
        job_id: str,
        user: str,
        *,
        per_day: int,
        exempt: bool = False,
        sha256: str = "",
        archive_sha256: str = "",
    ) -> None:
        """Queue a job for ``user`` unless one is pending or ``per_day`` jobs were queued in the last 24 h.

        Raises:
            QueueRefused: with the reason (and when the next submission is possible).
        """
        now = time.time()
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                if not exempt:
                    pending = db.execute(
                        f"SELECT * FROM jobs WHERE user=? AND status IN {PENDING} ORDER BY created_at", (user,)
                    ).fetchone()
                    if pending:
                        raise QueueRefused(
                            f"you already have a submission waiting to be scored ({pending[0]}); "
                            "wait until it is scored or withdraw it",
                            self._job(pending),
                        )
                    recent = db.execute(
                        "SELECT created_at FROM jobs WHERE user=? AND created_at>? AND status!='cancelled' "
                        "ORDER BY created_at",
                        (user, now - 86400),
                    ).fetchall()
                    if len(recent) >= per_day:
                        wait_h = (recent[0][0] + 86400 - now) / 3600
                        raise QueueRefused(
                            f"rate limit: {per_day} submissions per 24 hours; the next one is possible in "
                            f"{wait_h:.1f} h"
                        )
                db.execute(
                    "INSERT INTO jobs (id, user, status, created_at, stage, sha256, archive_sha256) "
                    "VALUES (?, ?, 'queued', ?, 'queued', ?, ?)",
                    (job_id, user, now, sha256, archive_sha256 or ""),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def check_user(self, user: str, *, per_day: int) -> None:
        """The same limits as :meth:`add`, without adding (to refuse before an upload is even unpacked)."""
        now = time.time()
        with self._connect() as db:
            pending = db.execute(f"SELECT * FROM jobs WHERE user=? AND status IN {PENDING}", (user,)).fetchone()
            if pending:
                raise QueueRefused(
                    f"you already have a submission waiting to be scored ({pending[0]}); "
                    "wait until it is scored or withdraw it",
                    self._job(pending),
                )
            count = db.execute(
                "SELECT COUNT(*) FROM jobs WHERE user=? AND created_at>? AND status!='cancelled'",
                (user, now - 86400),
            ).fetchone()[0]
            if count >= per_day:
                raise QueueRefused(f"rate limit: {per_day} submissions per 24 hours")

    def claim(self) -> Job | None:
        """The oldest queued job, now marked running (None when the queue is empty)."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT id FROM jobs WHERE status='queued' ORDER BY created_at LIMIT 1").fetchone()
            if row is None:
                db.execute("COMMIT")
                return None
            db.execute(
                "UPDATE jobs SET status='running', started_at=?, stage='starting' WHERE id=?", (time.time(), row[0])
            )
            db.execute("COMMIT")
        return self.get(row[0])

    def update(
        self, job_id: str, *, stage: str | None = None, status: str | None = None, message: str | None = None
    ) -> None:
        sets, values = [], []
        if stage is not None:
            sets.append("stage=?")
            values.append(stage)
        if message is not None:
            sets.append("message=?")
            values.append(message)
        if status is not None:
            sets.append("status=?")
            values.append(status)
            if status in ("scored", "failed", "cancelled"):
                sets.append("finished_at=?")
                values.append(time.time())
        with self._connect() as db:
            db.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id=?", (*values, job_id))

    def cancel(self, job_id: str) -> bool:
        """Cancel a job that has not started; False when it is running or finished."""
        with self._connect() as db:
            cursor = db.execute(
                "UPDATE jobs SET status='cancelled', finished_at=?, stage='withdrawn before scoring' "
                "WHERE id=? AND status='queued'",
                (time.time(), job_id),
            )
            return cursor.rowcount == 1

    def get(self, job_id: str) -> Job | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return None if row is None else self._job(row)

    def jobs(self, user: str | None = None) -> list[Job]:
        with self._connect() as db:
            if user is None:
                rows = db.execute("SELECT * FROM jobs ORDER BY created_at").fetchall()
            else:
                rows = db.execute("SELECT * FROM jobs WHERE user=? ORDER BY created_at", (user,)).fetchall()
        return [self._job(r) for r in rows]

    def position(self, job_id: str) -> int:
        """How many queued jobs are ahead of this one (0 = next)."""
        job = self.get(job_id)
        if job is None or job.status != "queued":
            return 0
        with self._connect() as db:
            return int(
                db.execute(
                    "SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running') AND created_at<?",
                    (job.created_at,),
                ).fetchone()[0]
            )
