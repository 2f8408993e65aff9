"""A stand-in ``huggingface_hub.HfApi`` for the Hub backup sinks (ratings, arena votes): no network.

It records the repositories created and the commits pushed; ``run_as_future`` runs the call at once, as the
``CommitScheduler`` expects of the real client, and every other method is a no-op.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any


class StandInHfApi:
    def __init__(self) -> None:
        self.commits: list = []
        self.repos: list = []

    def create_repo(self, repo_id, private=None, repo_type=None, exist_ok=False, **kw) -> Any:
        self.repos.append((repo_id, private, repo_type))
        return type("RepoUrl", (), {"repo_id": repo_id})()

    def run_as_future(self, fn, *args, **kwargs) -> Future:
        fut = Future()
        fut.set_result(fn(*args, **kwargs))
        return fut

    def create_commit(self, repo_id, operations, commit_message=None, **kw) -> None:
        self.commits.append((repo_id, operations))

    def __getattr__(self, name: str) -> Any:  # anything else the scheduler might call
        return lambda *a, **k: None
