"""Published results: a folder mirrored to a Hugging Face Hub dataset repo (the results repo).

Layout (the same locally and in the repo)::

    submissions/<sub_id>.json              the submission: metadata, submitter, hashes, status, visibility
    results/<sub_id>/<profile>.json        everything run.json holds for that profile, plus the summary used
    results/<sub_id>/<profile>.per_image.csv
    audit/<YYYY-MM>/<time>-<event>-<sub_id>-<uuid8>.json   one file per event, never rewritten or deleted

Every change is written locally first (atomically), then pushed with one explicit ``create_commit``; a push
that fails is retried by the next one (a manifest of pushed hashes tells what is still to push), so results
are never lost to a network hiccup. On start :meth:`ResultsStore.pull` downloads what the repo has and the
local folder lacks, so a restarted Space reads its leaderboard back from the Hub. Tests pass a stand-in
``hf_api`` with ``create_repo``, ``create_commit``, ``list_repo_files`` and ``hf_hub_download``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import threading
import uuid
from pathlib import Path
from typing import Any

from bokeh_model.files import atomic_write

__all__ = ["HubPublisher", "ResultsStore"]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class HubPublisher:
    """Pushes files of a local folder to a dataset repo with explicit commits.

    Args:
        repo_id: ``owner/name`` of the results dataset (created if missing, public unless ``private``).
        token: Hugging Face token with write access.
        hf_api: an ``HfApi`` or a stand-in; default ``HfApi(token=token)``.
    """

    def __init__(self, repo_id: str, *, token: str | None = None, private: bool = False, hf_api: Any = None) -> None:
        if hf_api is None:
            from huggingface_hub import HfApi

            hf_api = HfApi(token=token)
        self.api = hf_api
        self.repo_id = repo_id
        self.token = token
        self.api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True, token=token)

    def push(self, root: Path, paths: list[str], message: str) -> None:
        from huggingface_hub import CommitOperationAdd

        operations = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(root / p)) for p in paths]
        self.api.create_commit(self.repo_id, operations, commit_message=message, repo_type="dataset", token=self.token)

    def pull(self, root: Path) -> list[str]:
        """Download files the repo has and ``root`` lacks; returns their paths."""
        fetched = []
        for name in self.api.list_repo_files(self.repo_id, repo_type="dataset", token=self.token):
            if not name.startswith(("submissions/", "results/", "audit/")) or (root / name).exists():
                continue
            self.api.hf_hub_download(self.repo_id, name, repo_type="dataset", local_dir=str(root), token=self.token)
            fetched.append(name)
        return fetched


class ResultsStore:
    """Submission records, per-profile results and the audit log in ``root``, optionally published to the Hub.

    Thread-safe: the app's handlers and the scoring worker write through one lock.
    """

    def __init__(self, root: str | Path, publisher: HubPublisher | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.publisher = publisher
        self.lock = threading.RLock()
        self.last_push_error: str | None = None
        self._manifest_path = self.root / ".pushed.json"

    # ------------------------------------------------------------------ writing

    def _write_json(self, rel: str, data: Any) -> str:
        atomic_write(self.root / rel, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=str))
        return rel

    def _write_text(self, rel: str, text: str) -> str:
        atomic_write(self.root / rel, text)
        return rel

    def save_submission(self, record: dict[str, Any]) -> str:
        with self.lock:
            return self._write_json(f"submissions/{record['id']}.json", record)

    def save_result(self, sub_id: str, profile: str, result: dict[str, Any], per_image_csv: str) -> list[str]:
        with self.lock:
            return [
                self._write_json(f"results/{sub_id}/{profile}.json", result),
                self._write_text(f"results/{sub_id}/{profile}.per_image.csv", per_image_csv),
            ]

    def audit(self, event: str, sub_id: str, actor: str, **details: Any) -> str:
        """Append one event to the audit log (a new file; existing ones are never touched)."""
        when = _dt.datetime.now(_dt.timezone.utc)
        record = {"time": when.isoformat(timespec="seconds"), "event": event, "submission": sub_id, "actor": actor}
        record.update(details)
        rel = f"audit/{when:%Y-%m}/{when:%Y%m%dT%H%M%S%f}-{event}-{sub_id}-{uuid.uuid4().hex[:8]}.json"
        with self.lock:
            return self._write_json(rel, record)

    # ------------------------------------------------------------------ publishing

    def _manifest(self) -> dict[str, str]:
        try:
            return json.loads(self._manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def _unpushed(self) -> list[str]:
        manifest = self._manifest()
        pending = []
        for folder in ("submissions", "results", "audit"):
            base = self.root / folder
            if not base.is_dir():
                continue
            for path in sorted(base.rglob("*")):
                if path.is_file() and not path.name.startswith("."):
                    rel = path.relative_to(self.root).as_posix()
                    if manifest.get(rel) != hashlib.sha256(path.read_bytes()).hexdigest():
                        pending.append(rel)
        return pending

    def publish(self, message: str) -> bool:
        """Push every file not yet pushed in one commit; False (and ``last_push_error``) when it failed."""
        if self.publisher is None:
            return True
        with self.lock:
            pending = self._unpushed()
            if not pending:
                return True
            try:
                self.publisher.push(self.root, pending, message)
            except Exception as exc:  # noqa: BLE001 - any Hub failure: keep the files, retry on the next publish
                self.last_push_error = f"{type(exc).__name__}: {exc}"
                return False
            manifest = self._manifest()
            for rel in pending:
                manifest[rel] = hashlib.sha256((self.root / rel).read_bytes()).hexdigest()
            atomic_write(self._manifest_path, json.dumps(manifest, indent=1, sort_keys=True))
            self.last_push_error = None
            return True

    def pull(self) -> list[str]:
        """Fetch what the results repo has and this folder lacks (a fresh Space reading its leaderboard back)."""
        if self.publisher is None:
            return []
        with self.lock:
            fetched = self.publisher.pull(self.root)
            if not fetched:
                return []
            manifest = self._manifest()
            for rel in fetched:
                manifest[rel] = hashlib.sha256((self.root / rel).read_bytes()).hexdigest()
            atomic_write(self._manifest_path, json.dumps(manifest, indent=1, sort_keys=True))
            return fetched

    # ------------------------------------------------------------------ reading

    def submission(self, sub_id: str) -> dict[str, Any] | None:
        path = self.root / "submissions" / f"{sub_id}.json"
        if not path.is_file():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def submissions(self) -> list[dict[str, Any]]:
        folder = self.root / "submissions"
        if not folder.is_dir():
            return []
        records = [json.loads(p.read_text(encoding="utf-8")) for p in folder.glob("*.json")]
        return sorted(records, key=lambda r: r.get("submitted_at", ""))

    def result(self, sub_id: str, profile: str) -> dict[str, Any] | None:
        path = self.root / "results" / sub_id / f"{profile}.json"
        if not path.is_file():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def audit_log(self, sub_id: str | None = None) -> list[dict[str, Any]]:
        folder = self.root / "audit"
        if not folder.is_dir():
            return []
        events = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.rglob("*.json"))]
        return [e for e in events if sub_id is None or e.get("submission") == sub_id]


__all__ += ["_now"]
