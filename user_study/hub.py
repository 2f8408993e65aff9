"""Optional durability: append every stored rating as a JSON line to a private Hub dataset.

Built on ``huggingface_hub.CommitScheduler`` (a background thread that pushes a local folder every few
minutes; the docs recommend >= 5). Files are append-only and named with a uuid
(``ratings/ratings-<uuid4>.jsonl``) so restarts and replicas never collide; writes happen under the
scheduler's lock. The scheduler creates the repo and starts pushing in its constructor and fails offline,
so it is only built when a repo id and token are configured. Tests pass a stand-in ``hf_api`` object with
``create_repo``, ``run_as_future`` and ``create_commit``.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

__all__ = ["HubRatingSink", "sink_from_env"]


class HubRatingSink:
    """Appends rating records to ``<folder>/ratings/ratings-<uuid>.jsonl`` and pushes them with a scheduler.

    Args:
        repo_id: Dataset repo (``owner/name``); created private if missing.
        folder: Local folder the scheduler mirrors.
        token: Hugging Face token.
        every: Minutes between pushes.
        hf_api: Optional ``HfApi`` (or stand-in) passed to the scheduler.
        subfolder, prefix: where the records go (``<subfolder>/<prefix>-<uuid>.jsonl``); the arena's votes use
            ``arena/votes-*`` in the same dataset.
    """

    def __init__(
        self,
        repo_id: str,
        folder: str | Path,
        *,
        token: str | None = None,
        every: float = 5,
        hf_api: Any = None,
        subfolder: str = "ratings",
        prefix: str = "ratings",
    ) -> None:
        from huggingface_hub import CommitScheduler

        self.folder = Path(folder)
        (self.folder / subfolder).mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = self.folder / subfolder / f"{prefix}-{uuid.uuid4().hex}.jsonl"
        self.scheduler = CommitScheduler(
            repo_id=repo_id,
            repo_type="dataset",
            folder_path=self.folder,
            path_in_repo="",
            every=every,
            private=True,
            token=token,
            allow_patterns=[f"{subfolder}/*.jsonl"],
            hf_api=hf_api,
        )

    def append(self, record: dict[str, Any]) -> None:
        """Append one record (a JSON line) under the scheduler's lock, flushed and fsynced."""
        line = json.dumps(record, sort_keys=True, default=str) + "\n"
        with self.scheduler.lock:
            # owner-only (0600): the backup holds every rating and rater hash
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())

    def push_now(self) -> Any:
        """Trigger a push at once (returns the scheduler's future)."""
        return self.scheduler.trigger()

    def stop(self) -> None:
        """Stop the background thread (a last push happens at interpreter exit)."""
        self.scheduler.stop()


def sink_from_env(data_dir: str | Path, repo_id: str | None, token: str | None) -> HubRatingSink | None:
    """A sink when ``BOKEH_STUDY_HUB_REPO`` and ``HF_TOKEN`` are both set, else ``None``."""
    if not repo_id or not token:
        return None
    return HubRatingSink(repo_id, Path(data_dir) / "hub", token=token)
