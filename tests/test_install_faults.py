"""Installing and fetching (issue 23, item 19): a non-editable install reads and writes results in the working
directory, keeps Numba's cache out of site-packages, names its console scripts, points at the `hf` CLI, writes
exports readable by others; fetching survives a short outage and a second fetch waits for the first."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_leaderboard_reads_where_bokeh_eval_writes(tmp_path, monkeypatch):
    from evaluation.config import EvalConfig
    from evaluation.run import build_parser
    from space.config import SpaceSettings

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BOKEH_RESULTS_DIR", raising=False)
    written = Path(build_parser().parse_args([]).out).absolute()
    assert written == tmp_path / "runs" / "latest" == Path(EvalConfig().out).absolute()
    assert SpaceSettings.from_env().results_dir == written == SpaceSettings().results_dir
    monkeypatch.setenv("BOKEH_RESULTS_DIR", str(tmp_path / "elsewhere"))
    assert Path(build_parser().parse_args([]).out) == tmp_path / "elsewhere" == SpaceSettings.from_env().results_dir


def test_numba_caches_in_the_user_cache_not_next_to_the_sources(tmp_path):
    code = (
        "import numba, bokeh_model.methods._lens_fast\n"
        "from evaluation.psnr_ssim import ssim\n"
        "import numpy as np\n"
        "a = np.random.default_rng(0).random((16, 16, 3))\n"
        "ssim(a, a)\n"
        "print(numba.config.CACHE_DIR)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(BOKEH_CACHE=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == str(tmp_path / "cache" / "numba")
    assert any((tmp_path / "cache" / "numba").rglob("*.nbi"))  # the SSIM kernel was cached there
    # a user's own NUMBA_CACHE_DIR is kept
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "mine")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == str(tmp_path / "mine")


SCRIPTS = {
    "bokeh-model": "bokeh_model.cli",
    "bokeh-eval": "evaluation.run",
    "bokeh-study": "user_study.__main__",
    "bokeh-ebb": "evaluation.ebb",
    "bokeh-submit": "evaluation.submit",
    "bokeh-pairs": "evaluation.pairs.__main__",
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_console_scripts_name_themselves_in_their_usage(script, monkeypatch, capsys):
    import importlib

    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert declared[script].split(":")[0] == SCRIPTS[script]
    monkeypatch.setattr(sys, "argv", [f"/venv/bin/{script}", "--help"])
    with pytest.raises(SystemExit):
        importlib.import_module(SCRIPTS[script]).main(["--help"])
    assert capsys.readouterr().out.startswith(f"usage: {script} ")
    monkeypatch.setattr(sys, "argv", ["-m"])  # python -m ...: the module form stays
    with pytest.raises(SystemExit):
        importlib.import_module(SCRIPTS[script]).main(["--help"])
    assert "usage: python " in capsys.readouterr().out


def test_help_texts_name_the_hf_cli():
    hits = [
        f"{path.relative_to(ROOT)}:{number}"
        for folder in ("bokeh_model", "evaluation", "user_study", "space")
        for path in (ROOT / folder).rglob("*.py")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "huggingface-cli" in line
    ]
    assert not hits, hits
    from bokeh_model.depth import depth_model_status

    ok, reason = depth_model_status("someone/not-cached-model")
    assert not ok and "hf download someone/not-cached-model" in reason


def test_onnx_export_is_readable_by_others(tmp_path, monkeypatch):
    """``mkstemp`` makes 0600 files; the export ends with the umask's mode (0644 under 022) like any file."""
    pytest.importorskip("onnx")
    import torch

    from bokeh_model import export
    from bokeh_model.modeling_pynet import PyNET

    class _Program:
        def save(self, path, external_data=False):
            with open(path, "wb") as handle:  # like onnx: writes into the file mkstemp made
                handle.write(b"onnx stand-in")

    monkeypatch.setattr(torch.onnx, "export", lambda *args, **kwargs: _Program())
    old = os.umask(0o022)
    try:
        with torch.device("meta"):  # no weights needed: the exporter is a stand-in
            model = PyNET()
        out = export.export_onnx(model, tmp_path / "model.onnx", level=5, check=False)
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


# ---------------------------------------------------------------- fetching


def test_a_three_second_outage_does_not_end_a_download(tmp_path, monkeypatch):
    from _local_server import LocalServer

    from bokeh_model import download as dl

    clock = {"t": 0.0}
    monkeypatch.setattr(dl, "_sleep", lambda seconds: clock.__setitem__("t", clock["t"] + seconds))
    real_open = dl._open

    def flaky(url, start, timeout):  # the server refuses connections for the first 3 s
        if clock["t"] < 3.0:
            raise ConnectionRefusedError(111, "Connection refused")
        return real_open(url, start, timeout)

    monkeypatch.setattr(dl, "_open", flaky)
    with LocalServer() as server:
        url = server.add("/w.bin", b"weights" * 1000)
        result = dl.download(url, tmp_path / "w.bin", progress=False)
    assert result.path.read_bytes() == b"weights" * 1000 and clock["t"] >= 3.0
    clock["t"] = -100.0  # an outage longer than the retries: a clear error, nothing left behind
    with pytest.raises(dl.FetchError, match="cannot reach"):
        dl.download("http://127.0.0.1:9/x", tmp_path / "x", progress=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.part").exists()


def test_a_second_download_of_the_same_file_waits_and_uses_it(tmp_path, monkeypatch):
    from _local_server import LocalServer

    from bokeh_model import download as dl

    dest = tmp_path / "trunk.pth"
    holding, release = threading.Event(), threading.Event()

    def first() -> None:  # another process downloading the same file
        with dl.exclusive(dest.with_name(dest.name + ".lock"), "trunk"):
            holding.set()
            release.wait(10)
            dest.write_bytes(b"finished by the first")

    worker = threading.Thread(target=first)
    worker.start()
    holding.wait(10)
    threading.Timer(0.5, release.set).start()
    with LocalServer() as server:
        url = server.add("/trunk.pth", b"served")
        started = time.monotonic()
        result = dl.download(url, dest, progress=False)
        assert server.ranges("/trunk.pth") == []  # nothing downloaded twice
    worker.join(10)
    assert time.monotonic() - started >= 0.4 and result.path.read_bytes() == b"finished by the first"


def test_a_second_pynet_fetch_waits_for_the_first(tmp_path, monkeypatch):
    from bokeh_model.download import exclusive
    from bokeh_model.fetch import fetch_pynet

    for name in ("HF_HUB_OFFLINE", "BOKEH_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    dest = tmp_path / "pynet-bokeh"
    holding = threading.Event()

    def first() -> None:
        with exclusive(dest.with_name(f".{dest.name}.fetch.lock"), "the PyNET weights"):
            holding.set()
            time.sleep(0.5)
            dest.mkdir()
            for name in ("config.json", "model.safetensors"):
                (dest / name).write_text("{}")

    worker = threading.Thread(target=first)
    worker.start()
    holding.wait(10)
    result = fetch_pynet("http://127.0.0.1:9/never-asked.zip", dest=dest, progress=False)
    worker.join(10)
    assert result.status == "already installed" and result.path == dest


def test_readme_says_how_a_cpu_space_avoids_the_cuda_torch_build():
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    pins = dict(re.findall(r"^(torch|torchvision)==([\w.]+)", (ROOT / "requirements.txt").read_text(), re.M))
    block = re.search(r"```text\n(--index-url https://download\.pytorch\.org/whl/cpu\n.*?)```", readme, re.S)
    assert block, "README: no pre-requirements.txt block with PyTorch's CPU index"
    assert dict(re.findall(r"^(torch|torchvision)==([\w.]+)", block.group(1), re.M)) == pins  # same pins
    assert "pre-requirements.txt" in readme and "ZeroGPU Space" in readme and "built with CUDA" in readme
