"""The Hub backup of arena votes: every counted vote appended as a JSON line, pushed to the study's dataset.

The same scheme as the study's ratings (:mod:`user_study.hub`): ``huggingface_hub.CommitScheduler`` pushes a
local folder every few minutes; files are append-only, owner-only (0600), named with a uuid
(``arena/votes-<uuid4>.jsonl``) so restarts and replicas never collide, and written under the scheduler's lock.
The local folder is also a plain JSONL copy of every vote on the Space's disk.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

__all__ = ["ArenaVoteSink", "arena_sink_from_env"]


class ArenaVoteSink:
    """Appends vote records to ``<folder>/arena/votes-<uuid>.jsonl`` and pushes them with a scheduler.

    Args:
        repo_id: Dataset repo (``owner/name``); created private if missing.
        folder: Local folder the scheduler mirrors.
        token: Hugging Face token.
        every: Minutes between pushes.
        hf_api: Optional ``HfApi`` (or stand-in) passed to the scheduler.
    """

    def __init__(
        self, repo_id: str, folder: str | Path, *, token: str | None = None, every: float = 5, hf_api: Any = None
    ) -> None:
        from huggingface_hub import CommitScheduler

        self.folder = Path(folder)
        (self.folder / "arena").mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = self.folder / "arena" / f"votes-{uuid.uuid4().hex}.jsonl"
        self.scheduler = CommitScheduler(
            repo_id=repo_id,
            repo_type="dataset",
            folder_path=self.folder,
            path_in_repo="",
            every=every,
            private=True,
            token=token,
            allow_patterns=["arena/*.jsonl"],
            hf_api=hf_api,
        )

    def append(self, record: dict[str, Any]) -> None:
        """Append one record (a JSON line) under the scheduler's lock, flushed and fsynced."""
        line = json.dumps(record, sort_keys=True, default=str) + "\n"
        with self.scheduler.lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())

    def stop(self) -> None:
        """Stop the background thread (a last push happens at interpreter exit)."""
        self.scheduler.stop()


def arena_sink_from_env(data_dir: str | Path, repo_id: str | None, token: str | None) -> ArenaVoteSink | None:
    """A sink when ``BOKEH_STUDY_HUB_REPO`` and ``HF_TOKEN`` are both set (the study's dataset), else ``None``."""
    if not repo_id or not token:
        return None
    return ArenaVoteSink(repo_id, Path(data_dir) / "hub", token=token)
