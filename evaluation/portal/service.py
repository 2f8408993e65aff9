"""The evaluation portal: submit predictions, check them, score them in the background, publish the results.

>>> # portal = Portal(PortalSettings(root="data/portal", dataset="data/ebb_hf"))
>>> # sub_id = portal.submit("preds.zip", SubmissionMeta(method="MyNet", authors="A. B.", license="MIT"),
>>> #                        Submitter("alice", via="oauth"))
>>> # portal.process_next()          # or portal.start_worker() in a server
>>> # portal.leaderboard("pynet")
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import shutil
import threading
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from bokeh_model.errors import BokehError
from evaluation.run_layout import INPUTS, PREDICTIONS, TARGETS, targets_dir

from .checks import check_submission
from .models import PROFILES, DuplicateSubmission, PortalError, PortalSettings, SubmissionMeta, Submitter
from .queue import JobQueue, QueueRefused
from .scoring import SUBMISSION_LABEL, count_scored, dataset_targets, score_with_evaluation
from .store import HubPublisher, ResultsStore

__all__ = [
    "PROFILES",
    "DuplicateSubmission",
    "Portal",
    "PortalError",
    "PortalSettings",
    "SubmissionMeta",
    "Submitter",
]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _check_scorable(targets: dict[str, tuple[int, int]], split: str) -> None:
    """Refuse a split whose targets are too small for a profile's border crop and SSIM window: found at check time,
    not after the submission was accepted and scoring failed half way.

    Raises:
        PortalError: the smallest target and the size each profile needs.
    """
    from evaluation.metrics import PROFILES as METRIC_PROFILES

    need = max((METRIC_PROFILES[name] for name in PROFILES), key=lambda profile: profile.min_side)
    small = {i: size for i, size in targets.items() if min(size) < need.min_side}
    if small:
        first = min(small, key=lambda i: min(small[i]))
        width, height = small[first]
        raise PortalError(
            f"the portal's dataset cannot be scored: {len(small)} target(s) of split {split!r} are smaller than "
            f"{need.min_side}x{need.min_side} pixels (e.g. id {first}, {width}x{height}), which profile "
            f"{need.name!r} needs ({need.border}-px border crop and a {need.ssim_window}-px SSIM window); "
            "an organizer must set a dataset of full-size images"
        )


def _file_sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:32] or "method"


class Portal:
    """Submissions, their checks, the scoring queue and the published results (see the module docstring)."""

    def __init__(self, settings: PortalSettings, *, hf_api: Any = None) -> None:
        self.settings = settings
        self.root = Path(settings.root)
        self.root.mkdir(parents=True, exist_ok=True)
        publisher = None
        if settings.hub_repo and (settings.hf_token or hf_api is not None):
            publisher = HubPublisher(settings.hub_repo, token=settings.hf_token, hf_api=hf_api)
        self.store = ResultsStore(self.root / "results", publisher)
        self.queue = JobQueue(self.root / "queue.db")
        self.pull_error: str | None = None
        try:
            self.store.pull()
        except Exception as exc:  # noqa: BLE001 - the portal still serves what it has locally
            self.pull_error = f"could not read the results repo {settings.hub_repo}: {type(exc).__name__}: {exc}"
        self._targets: dict[tuple[str, str], dict[str, tuple[int, int]]] = {}
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()

    # ------------------------------------------------------------------ configuration

    @property
    def configured(self) -> bool:
        return bool(self.settings.dataset)

    def not_configured_reason(self) -> str:
        return (
            "The portal has no dataset to score against: set BOKEH_PORTAL_DATASET (or pass --dataset) to a folder "
            "built with `python -m evaluation.ebb build` (or a hub id), then restart the app."
        )

    def targets(self, split: str) -> dict[str, tuple[int, int]]:
        """id -> (width, height) of the split's targets (read once)."""
        if not self.configured:
            raise PortalError(self.not_configured_reason())
        if split not in self.settings.splits:
            raise PortalError(f"split {split!r} is not open for submissions; open splits: {list(self.settings.splits)}")
        key = (str(self.settings.dataset), split)
        if key not in self._targets:
            targets = dataset_targets(str(self.settings.dataset), split)
            _check_scorable(targets, split)
            self._targets[key] = targets
        return self._targets[key]

    def check_organizer(self, token: str | None) -> None:
        expected = self.settings.organizer_token
        if not expected:
            raise PortalError(
                "organizer actions are disabled: no organizer token is configured (BOKEH_ORGANIZER_TOKEN)"
            )
        import hmac

        if not token or not hmac.compare_digest(str(token), expected):
            raise PortalError("wrong organizer token")

    # ------------------------------------------------------------------ submitting

    def submit(
        self, source: str | os.PathLike, meta: SubmissionMeta, submitter: Submitter, *, split: str | None = None
    ) -> str:
        """Check ``source`` (zip or folder) and queue it for scoring; returns the submission id.

        Raises:
            SubmissionRefused: the files failed their checks (``.report`` names every problem; nothing is kept).
            PortalError: bad metadata, unknown split, one submission already pending, rate limit.
        """
        meta = meta.validated()
        split = split or self.settings.splits[0]
        if not submitter.username:
            raise PortalError("sign in with Hugging Face first")
        expected = self.targets(split)
        if not submitter.is_organizer:
            try:
                self.queue.check_user(submitter.username, per_day=self.settings.per_day)
            except QueueRefused as exc:
                pending = exc.pending
                same = pending is not None and pending.archive_sha256 and Path(source).is_file()
                if same and pending.archive_sha256 == _file_sha256(Path(source)):
                    raise DuplicateSubmission(pending.id) from None
                raise PortalError(str(exc)) from None
        staged = check_submission(source, expected, staging_root=self.root / "staging", limits=self.settings.limits)
        sub_id = f"{_dt.datetime.now(_dt.timezone.utc):%Y%m%d}-{_slug(meta.method)}-{uuid.uuid4().hex[:6]}"
        folder = self.root / "predictions" / sub_id
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            staged.folder.rename(folder)
            self.queue.add(
                sub_id,
                submitter.username,
                per_day=self.settings.per_day,
                exempt=submitter.is_organizer,
                sha256=staged.sha256,
                archive_sha256=staged.archive_sha256 or "",
            )
        except QueueRefused as exc:
            shutil.rmtree(folder, ignore_errors=True)
            if exc.pending is not None and exc.pending.sha256 == staged.sha256:
                raise DuplicateSubmission(exc.pending.id) from None  # two requests raced with the same files
            raise PortalError(str(exc)) from None
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            staged.discard()
            raise
        record = {
            "id": sub_id,
            "submitted_at": _now(),
            "submitter": asdict(submitter),
            "meta": asdict(meta),
            "dataset": str(self.settings.dataset),
            "split": split,
            "n_images": len(staged.file_sha256),
            "sha256": staged.sha256,
            "archive_sha256": staged.archive_sha256,
            "file_sha256": staged.file_sha256,
            "status": "queued",
            "visibility": "public",
            "profiles": {},
        }
        self.store.save_submission(record)
        self.store.audit("submitted", sub_id, submitter.username, sha256=staged.sha256, split=split)
        self.store.publish(f"Submission {sub_id} queued")
        self._wake.set()
        return sub_id

    # ------------------------------------------------------------------ scoring

    def process_next(self) -> str | None:
        """Score the oldest queued submission under every profile; returns its id (None when none waits)."""
        job = self.queue.claim()
        if job is None:
            return None
        record = self.store.submission(job.id)
        if record is None:  # queued but never recorded (a crash between the two): nothing to score
            self.queue.update(job.id, status="failed", message="submission record missing")
            return job.id
        record["status"] = "scoring"
        self.store.save_submission(record)
        predictions = self.root / "predictions" / job.id
        try:
            # Every profile in one pass, in this process: each image is decoded once and scored under both.
            self.queue.update(job.id, stage="scoring:" + ",".join(PROFILES))
            out = self.root / "work" / job.id
            shutil.rmtree(out, ignore_errors=True)
            keep = self.root / "targets" / record["split"]
            scored_all = score_with_evaluation(
                str(record["dataset"]),
                record["split"],
                predictions,
                PROFILES,
                out,
                lpips=self.settings.lpips,
                allow_unofficial_lpips=self.settings.allow_unofficial_lpips,
                device=self.settings.device,
                pair_files=not keep.is_dir(),  # the split's targets are kept once, not copied per submission
            )
            self.queue.update(job.id, stage="scored:" + ",".join(PROFILES))
            for profile in PROFILES:
                scored = scored_all[profile]
                run = scored["run"]
                summary = run["methods"][SUBMISSION_LABEL]
                result = {
                    "submission": job.id,
                    "profile": profile,
                    "submission_sha256": record["sha256"],
                    "dataset_fingerprint": run["dataset"]["fingerprint"]["sha256"],
                    "scored_at": _now(),
                    "summary": summary,
                    "run": run,
                }
                self.store.save_result(job.id, profile, result, scored["per_image_csv"])
                record["profiles"][profile] = {
                    "psnr": summary["metrics"]["psnr"]["mean"],
                    "ssim": summary["metrics"]["ssim"]["mean"],
                    "lpips": summary["metrics"]["lpips"]["mean"] if summary["metrics"]["lpips"]["n"] else None,
                    "dataset_fingerprint": result["dataset_fingerprint"],
                    "lpips_reason": "" if run["lpips"].get("available") else run["lpips"].get("reason", ""),
                }
            self._keep_targets(out, record["split"])
            record["status"] = "scored"
            self.queue.update(job.id, status="scored", stage="scored")
            self.store.save_submission(record)
            self.store.audit("scored", job.id, "portal", profiles=sorted(record["profiles"]))
        except Exception as exc:  # noqa: BLE001 - one bad submission must not stop the queue
            reason = str(exc) if isinstance(exc, BokehError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, BokehError):
                traceback.print_exc()
            record["status"] = "failed"
            record["failure"] = reason
            self.queue.update(job.id, status="failed", stage="failed", message=reason)
            self.store.save_submission(record)
            self.store.audit("failed", job.id, "portal", reason=reason)
        self.store.publish(f"Submission {job.id}: {record['status']}")
        return job.id

    def _keep_targets(self, out: Path, split: str) -> None:
        """Keep one copy of the split's targets (for the study bridge) and drop the run's bulky copies."""
        keep = self.root / "targets" / split
        if not keep.is_dir() and targets_dir(out).is_dir():
            keep.parent.mkdir(parents=True, exist_ok=True)
            targets_dir(out).rename(keep)
        for bulky in (TARGETS, INPUTS, PREDICTIONS):
            shutil.rmtree(out / bulky, ignore_errors=True)

    def start_worker(self, poll_s: float = 2.0) -> threading.Thread:
        """Score queued submissions in a background thread (one at a time) until :meth:`stop_worker`."""
        if self._worker is not None and self._worker.is_alive():
            return self._worker

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    if self.process_next() is None:
                        self._wake.wait(poll_s)
                        self._wake.clear()
                except Exception:  # noqa: BLE001 - keep serving; the traceback goes to the log
                    traceback.print_exc()
                    self._stop.wait(poll_s)

        self._stop.clear()
        self._worker = threading.Thread(target=loop, name="portal-scoring", daemon=True)
        self._worker.start()
        return self._worker

    def stop_worker(self, timeout: float = 30) -> None:
        self._stop.set()
        self._wake.set()
        if self._worker is not None:
            self._worker.join(timeout)

    # ------------------------------------------------------------------ status

    def status(self, sub_id: str) -> dict[str, Any]:
        """State, stage and progress (0..1) of a submission, with the queue position while it waits."""
        record = self.store.submission(sub_id)
        job = self.queue.get(sub_id)
        if record is None and job is None:
            raise PortalError(f"no submission {sub_id!r}")
        state = job.status if job is not None else (record or {}).get("status", "unknown")
        progress = {"queued": 0.0, "scored": 1.0}.get(state, 0.0)
        stage = job.stage if job is not None else ""
        if state == "running" and stage.startswith("scoring:"):
            profiles = stage.split(":", 1)[1].replace(",", ", ")
            n = max(1, int((record or {}).get("n_images") or 1))
            done = min(n, count_scored(self.root / "work" / sub_id))
            progress = 0.98 * done / n  # the tables and results are saved after the last image
            stage = f"scoring under profiles {profiles}: {done}/{n} images"
        elif state == "running" and stage.startswith("scored:"):
            progress = 0.99
            stage = f"scored under profiles {stage.split(':', 1)[1].replace(',', ', ')}, saving"
        return {
            "id": sub_id,
            "status": state,
            "stage": stage,
            "progress": progress,
            "queue_position": self.queue.position(sub_id) if state == "queued" else 0,
            "message": job.message if job is not None else (record or {}).get("failure", ""),
            "visibility": (record or {}).get("visibility", ""),
            "method": ((record or {}).get("meta") or {}).get("method", ""),
            "submitted_at": (record or {}).get("submitted_at", ""),
            "profiles": (record or {}).get("profiles", {}),
        }

    def my_submissions(self, username: str) -> list[dict[str, Any]]:
        return [self.status(r["id"]) for r in self.store.submissions() if r["submitter"]["username"] == username]

    # ------------------------------------------------------------------ withdraw / hide

    def withdraw(self, sub_id: str, submitter: Submitter) -> None:
        """The submitter takes their row off the leaderboard (kept in the repo and the audit log)."""
        record = self.store.submission(sub_id)
        if record is None:
            raise PortalError(f"no submission {sub_id!r}")
        if record["submitter"]["username"] != submitter.username and not submitter.is_organizer:
            raise PortalError(f"submission {sub_id} was made by another user; only they can withdraw it")
        if record["visibility"] == "withdrawn":
            return
        cancelled = self.queue.cancel(sub_id)
        record["visibility"] = "withdrawn"
        if cancelled:
            record["status"] = "cancelled"
        self.store.save_submission(record)
        self.store.audit("withdrawn", sub_id, submitter.username, cancelled_before_scoring=cancelled)
        self.store.publish(f"Submission {sub_id} withdrawn by its submitter")

    def hide(self, sub_id: str, reason: str, organizer_token: str | None, *, actor: str = "organizer") -> None:
        """An organizer hides a row with a reason (never deleted; :meth:`unhide` restores it)."""
        self.check_organizer(organizer_token)
        reason = " ".join(str(reason or "").split())
        if not reason:
            raise PortalError("give a reason for hiding a submission (it goes into the audit log)")
        record = self.store.submission(sub_id)
        if record is None:
            raise PortalError(f"no submission {sub_id!r}")
        record["visibility"] = "hidden"
        record["hidden_reason"] = reason
        self.store.save_submission(record)
        self.store.audit("hidden", sub_id, actor, reason=reason)
        self.store.publish(f"Submission {sub_id} hidden by an organizer")

    def unhide(self, sub_id: str, reason: str, organizer_token: str | None, *, actor: str = "organizer") -> None:
        self.check_organizer(organizer_token)
        record = self.store.submission(sub_id)
        if record is None:
            raise PortalError(f"no submission {sub_id!r}")
        if record["visibility"] != "hidden":
            raise PortalError(f"submission {sub_id} is {record['visibility']}, not hidden")
        record["visibility"] = "public"
        record.pop("hidden_reason", None)
        self.store.save_submission(record)
        self.store.audit("unhidden", sub_id, actor, reason=" ".join(str(reason or "").split()))
        self.store.publish(f"Submission {sub_id} shown again")

    # ------------------------------------------------------------------ leaderboard

    def leaderboard(
        self,
        profile: str = "pynet",
        *,
        sort_by: str = "psnr",
        uses_depth: str = "any",
        hardware: str = "",
        include_measured: bool = True,
    ) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
        """(submitted and measured rows, the paper's reported rows, notes) for one profile.

        Args:
            profile: ``pynet`` or ``dmshn``; numbers of the two are never mixed.
            sort_by: ``psnr``, ``ssim`` (higher first), ``lpips`` or ``runtime`` (lower first).
            uses_depth: ``any``, ``yes`` or ``no``.
            hardware: keep rows whose hardware contains this text (case-insensitive).
        """
        from .board import leaderboard_frames

        return leaderboard_frames(
            self, profile, sort_by=sort_by, uses_depth=uses_depth, hardware=hardware, include_measured=include_measured
        )

    # ------------------------------------------------------------------ study bridge

    def study_run_folder(
        self, sub_ids: Sequence[str], out: str | os.PathLike, *, with_measured: Sequence[str] = ()
    ) -> Path:
        from .study import build_study_run

        return build_study_run(self, sub_ids, out, with_measured=with_measured)
