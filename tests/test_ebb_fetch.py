"""``python -m evaluation.ebb build --source URL [--push-to-hub ID]``: the archive is downloaded from a local server
(resumed after a cut transfer, SHA-256 recorded) and the built folder is pushed through a stand-in ``HfApi``."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import huggingface_hub
import pytest
from _local_server import LocalServer
from test_evaluation import _ebb_zip, _external

from evaluation import ebb
from evaluation.run import main as run_main


class StandInHfApi:
    """Records what would be pushed and keeps a copy of the uploaded folder (no network)."""

    calls: list[tuple[str, dict]] = []
    hub: Path | None = None

    def create_repo(self, repo_id: str, **kwargs: object) -> None:
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))

    def upload_folder(self, *, folder_path: str, repo_id: str, **kwargs: object) -> None:
        self.calls.append(("upload_folder", {"folder_path": folder_path, "repo_id": repo_id, **kwargs}))
        assert self.hub is not None
        shutil.copytree(folder_path, self.hub / repo_id, ignore=shutil.ignore_patterns(".*"))


@pytest.mark.slow
def test_build_from_url_resumes_records_checksum_and_pushes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "BOKEH_OFFLINE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("BOKEH_CACHE", str(tmp_path / "cache"))
    StandInHfApi.calls, StandInHfApi.hub = [], tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub, "HfApi", StandInHfApi)
    data = _ebb_zip(tmp_path / "Training.zip").read_bytes()
    out = tmp_path / "ebb_hf"
    with LocalServer() as server:
        url = server.add("/Training.zip", data, cut="first")
        code = ebb.main(["build", "--source", url, "--out", str(out), "--push-to-hub", "me/ebb", "--private"])
        assert code == 0, capsys.readouterr().err
        assert server.ranges("/Training.zip") == [None, f"bytes={len(data) // 2}-"]
    record = json.loads((out / "source.json").read_text())
    assert record == {"source": url, "url": url, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert [name for name, _ in StandInHfApi.calls] == ["create_repo", "upload_folder"]
    assert StandInHfApi.calls[0][1]["repo_type"] == "dataset" and StandInHfApi.calls[0][1]["private"] is True
    assert "python evaluation/run.py --dataset me/ebb --split val294" in capsys.readouterr().out
    # What was pushed is a complete dataset: the evaluation reads it (here from the stand-in's copy).
    pushed = tmp_path / "hub" / "me" / "ebb"
    assert (pushed / "source.json").is_file()
    preds = _external(tmp_path / "mine", ["4400", "4401"], size=(96, 128))
    args = ["--dataset", str(pushed), "--split", "val294", "--methods", "none", "--predictions", f"mine={preds}"]
    assert run_main([*args, "--no-lpips", "--out", str(tmp_path / "run")]) == 0
    assert json.loads((tmp_path / "run" / "run.json").read_text())["dataset"]["split"] == "val294"


def test_build_from_url_offline_or_unreachable_exits_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BOKEH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("bokeh_model.download._sleep", lambda seconds: None)  # no pauses between the retries
    out = tmp_path / "out"
    assert ebb.main(["build", "--source", "http://127.0.0.1:9/Training.zip", "--out", str(out)]) == 3  # offline
    assert "offline" in capsys.readouterr().err
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    assert ebb.main(["build", "--source", "http://127.0.0.1:9/Training.zip", "--out", str(out)]) == 3
    assert "cannot reach http://127.0.0.1:9/Training.zip" in capsys.readouterr().err
    assert not out.exists()
