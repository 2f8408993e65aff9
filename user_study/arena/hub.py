"""The Hub backup of arena votes: every counted vote appended as a JSON line, pushed to the study's dataset.

The same scheme as the study's ratings (:mod:`user_study.hub`): ``huggingface_hub.CommitScheduler`` pushes a
local folder every few minutes; files are append-only, owner-only (0600), named with a uuid
(``arena/votes-<uuid4>.jsonl``) so restarts and replicas never collide, and written under the scheduler's lock.
The local folder is also a plain JSONL copy of every vote on the Space's disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..hub import HubRatingSink

__all__ = ["ArenaVoteSink", "arena_sink_from_env"]


class ArenaVoteSink(HubRatingSink):
    """Appends vote records to ``<folder>/arena/votes-<uuid>.jsonl`` and pushes them with a scheduler (the study's
    sink, :class:`user_study.hub.HubRatingSink`, writing elsewhere in the same dataset)."""

    def __init__(
        self, repo_id: str, folder: str | Path, *, token: str | None = None, every: float = 5, hf_api: Any = None
    ) -> None:
        super().__init__(repo_id, folder, token=token, every=every, hf_api=hf_api, subfolder="arena", prefix="votes")


def arena_sink_from_env(data_dir: str | Path, repo_id: str | None, token: str | None) -> ArenaVoteSink | None:
    """A sink when ``BOKEH_STUDY_HUB_REPO`` and ``HF_TOKEN`` are both set (the study's dataset), else ``None``."""
    if not repo_id or not token:
        return None
    return ArenaVoteSink(repo_id, Path(data_dir) / "hub", token=token)
