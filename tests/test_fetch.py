"""``python -m bokeh_model fetch``: real downloads from a local HTTP server the tests start (never the internet).

What is served is built here: a zip holding a full-size PyNET checkpoint in TensorFlow's format with random
weights (written by ``bokeh_model.tf_checkpoint``) plus Adam slots and counters, a copy whose transfer is cut
halfway, a file that is not a zip, a zip without a checkpoint, and a tiny DPT laid out as a Hub repo behind a
stand-in of the Hub's endpoints (``HF_ENDPOINT``), so ``huggingface_hub.snapshot_download`` runs for real.
Every cache (``BOKEH_CACHE``, ``HF_HOME``, ``TORCH_HOME``, ``XDG_CACHE_HOME``) points into ``tmp_path``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from _local_server import LocalServer
from _pynet_archive import build_pynet_zip
from _tiny_models import save_tiny_dpt
from PIL import Image

from bokeh_model.convert_tf_checkpoint import ConversionError, convert_tf_tensors, tf_layout
from bokeh_model.errors import InputError
from bokeh_model.fetch import FetchError, download, fetch_lpips, fetch_pynet
from bokeh_model.modeling_pynet import PyNET
from bokeh_model.pynet import default_pynet_dir, load_pynet, to_pynet_depth, weights_status

ROOT = Path(__file__).resolve().parents[1]
ZIP_NAME = "PyNET_Bokeh_pretrained.zip"
OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "BOKEH_OFFLINE")


@pytest.fixture(scope="module")
def pynet_zip() -> tuple[bytes, PyNET]:
    """The authors' layout, full-size random weights plus Adam slots and counters (see _pynet_archive)."""
    return build_pynet_zip()


@pytest.fixture
def caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Every cache in tmp_path, network allowed (only 127.0.0.1 answers); the env for subprocesses too."""
    env = {
        "BOKEH_CACHE": str(tmp_path / "bokeh_cache"),
        "HF_HOME": str(tmp_path / "hf"),
        "TORCH_HOME": str(tmp_path / "torch"),
        "XDG_CACHE_HOME": str(tmp_path / "xdg"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in (*OFFLINE_VARS, "BOKEH_PYNET_WEIGHTS", "BOKEH_PYNET_URL"):
        monkeypatch.delenv(key, raising=False)
    return env


def _cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in OFFLINE_VARS and k != "BOKEH_PYNET_WEIGHTS"}
    full.update(env)
    full["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "bokeh_model", *args], env=full, cwd=cwd, capture_output=True, text=True, timeout=600
    )


def _nothing_loadable(cache: Path) -> None:
    """No weights folder a loader would take, and no partial file under a final name."""
    assert not default_pynet_dir().exists()
    assert not weights_status()[0]
    for path in cache.rglob("*") if cache.exists() else []:
        assert path.suffix not in (".safetensors", ".zip") or path.name.endswith(".part"), path


# ------------------------------------------------------------------------------------------ download()


def test_cut_transfer_is_kept_as_part_and_resumed_with_range(tmp_path: Path) -> None:
    data = np.random.default_rng(0).bytes(3_000_000)
    with LocalServer() as server:
        url = server.add("/blob.bin", data, cut="always")
        dest = tmp_path / "blob.bin"
        with pytest.raises(FetchError, match=r"transfer cut at .* run the same command again to resume"):
            download(url, dest, retries=0, progress=False)
        part = dest.with_name("blob.bin.part")
        assert not dest.exists() and part.stat().st_size == len(data) // 2
        server.files["/blob.bin"].cut = ""  # the network is back
        result = download(url, dest, progress=False)
        assert server.ranges("/blob.bin")[-1] == f"bytes={len(data) // 2}-"
    assert dest.read_bytes() == data and not part.exists()
    assert result.sha256 == hashlib.sha256(data).hexdigest() and result.resumed_from == len(data) // 2
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644


def test_retries_resume_within_one_call_and_server_ignoring_range(tmp_path: Path) -> None:
    data = np.random.default_rng(1).bytes(1_000_000)
    with LocalServer() as server:
        result = download(server.add("/a", data, cut="first"), tmp_path / "a", progress=False)
        assert result.sha256 == hashlib.sha256(data).hexdigest()
        assert server.ranges("/a") == [None, f"bytes={len(data) // 2}-"]
        # A server without Range support: the partial file is discarded and the download starts over.
        url = server.add("/b", data, ignore_range=True)
        (tmp_path / "b.part").write_bytes(b"garbage that is not the start of the file")
        (tmp_path / "b.part.url").write_text(url)
        result = download(url, tmp_path / "b", progress=False)
        assert server.ranges("/b") == ["bytes=41-"]
        assert (tmp_path / "b").read_bytes() == data and result.sha256 == hashlib.sha256(data).hexdigest()


def test_checksum_mismatch_and_unreachable_leave_nothing(tmp_path: Path) -> None:
    with LocalServer() as server:
        url = server.add("/x", b"12345")
        with pytest.raises(FetchError, match="does not match the expected abcd"):
            download(url, tmp_path / "x", sha256_prefix="abcd", progress=False)
        with pytest.raises(FetchError, match="HTTP 404"):
            download(server.url("/missing"), tmp_path / "y", progress=False)
        port = server.port
    with pytest.raises(FetchError, match="cannot reach"):
        download(f"http://127.0.0.1:{port}/x", tmp_path / "z", progress=False, retries=0)  # server stopped
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------- converter


def test_converter_skips_optimizer_state_but_not_unknown_generator_tensors() -> None:
    with torch.device("meta"):
        model = PyNET()
    tensors = {e.tf_name: np.broadcast_to(np.float32(0), e.tf_shape) for e in tf_layout(model)}
    tensors["generator/Variable_7/Adam"] = np.zeros(3, np.float32)
    tensors["generator/Variable_7/Adam_1"] = np.zeros(3, np.float32)
    tensors["beta1_power"] = np.float32(0.9)
    tensors["discriminator/Variable"] = np.zeros(3, np.float32)
    config, state = convert_tf_tensors(tensors)
    assert len(state) == 440 and config["in_channels"] == 4
    tensors["generator/extra_kernel"] = np.zeros(3, np.float32)  # not a slot, not a counter: another graph
    with pytest.raises(ConversionError, match=r"unexpected tensor generator/extra_kernel"):
        convert_tf_tensors(tensors)


# ------------------------------------------------------------------------------------------ PyNET fetch


@pytest.mark.slow
def test_fetch_pynet_then_render_without_weights_flag(
    pynet_zip: tuple[bytes, PyNET], caches: dict[str, str], tmp_path: Path
) -> None:
    """The issue's acceptance commands, as a user types them; the first transfer is cut halfway and resumed."""
    data, source = pynet_zip
    photo, depth = tmp_path / "photo.jpg", tmp_path / "depth.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(photo)
    Image.fromarray(np.tile(np.linspace(40, 200, 128).astype(np.uint8), (96, 1))).save(depth)
    with LocalServer() as server:
        url = server.add(f"/{ZIP_NAME}", data, cut="first")
        done = _cli(["fetch", "pynet", "--url", url, "--no-progress"], caches, tmp_path)
        assert done.returncode == 0, done.stderr
        assert server.ranges(f"/{ZIP_NAME}") == [None, f"bytes={len(data) // 2}-"]
    assert "CC BY-NC-SA 4.0" in done.stdout and "Ignatov" in done.stdout
    assert "skipped: 3 counter, 8 optimizer slot" in done.stdout
    weights = Path(caches["BOKEH_CACHE"]) / "pynet-bokeh"
    assert sorted(p.name for p in weights.iterdir()) == [
        "README.md",
        "config.json",
        "conversion.json",
        "model.safetensors",
        "source.json",
    ]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in weights.iterdir())
    record = json.loads((weights / "source.json").read_text())
    assert record["url"] == url and record["zip"]["bytes"] == len(data)
    assert record["zip"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert record["checkpoint"] == "PyNET_Bokeh_pretrained/models/original/pynet_bokeh_level_0"
    assert record["skipped"]["count"] == 11 and "CC BY-NC-SA 4.0" in record["license"]
    assert not (Path(caches["BOKEH_CACHE"]) / "downloads" / ZIP_NAME).exists()  # deleted after conversion

    loaded = load_pynet()  # no argument, no environment variable: the default folder
    for (name, a), (_, b) in zip(source.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name

    out = tmp_path / "out.png"
    # --own-size: the photo's own 128x96 (the trained scale, 1536 px, is tested in test_pynet_scale.py; slow here)
    render = ["render", str(photo), str(out), "--method", "pynet", "--depth", str(depth), "--own-size"]
    rendered = _cli(render, caches, tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    assert Image.open(out).size == (128, 96)

    again = _cli(["fetch", "pynet", "--url", "http://127.0.0.1:9/unused.zip"], caches, tmp_path)
    assert again.returncode == 0 and "already installed" in again.stdout


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"<html>404 page of a moved host</html>", "is not a zip archive"),
        ("no-checkpoint", "no TensorFlow checkpoint (.index file) in the zip"),
    ],
)
def test_bad_archives_exit_3_with_one_line(
    content: bytes | str, expected: str, caches: dict[str, str], tmp_path: Path
) -> None:
    if content == "no-checkpoint":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("PyNET_Bokeh_pretrained/README.txt", "nothing here")
        content = buffer.getvalue()
    with LocalServer() as server:
        url = server.add(f"/{ZIP_NAME}", content)
        done = _cli(["fetch", "pynet", "--url", url, "--no-progress"], caches, tmp_path)
    assert done.returncode == 3
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    _nothing_loadable(Path(caches["BOKEH_CACHE"]))


def test_offline_and_unreachable_exit_3_one_line_per_item(caches: dict[str, str], tmp_path: Path) -> None:
    offline = _cli(["fetch", "all", "--offline", "--no-progress"], caches, tmp_path)
    assert offline.returncode == 3
    errors = [line for line in offline.stderr.splitlines() if line.startswith("error:")]
    from bokeh_model.method_weights import weights_spec_names

    named = [line.split(":")[1].strip().split()[0] for line in errors]
    assert named == ["pynet", "depth", "lpips", *weights_spec_names()]
    assert all("offline" in line for line in errors)
    env = dict(caches, HF_HUB_OFFLINE="1")
    assert _cli(["fetch", "pynet"], env, tmp_path).returncode == 3
    # "no network": nothing listens on the port
    unreachable = _cli(["fetch", "pynet", "--url", "http://127.0.0.1:9/x.zip", "--no-progress"], caches, tmp_path)
    assert unreachable.returncode == 3 and "cannot reach http://127.0.0.1:9/x.zip" in unreachable.stderr
    _nothing_loadable(Path(caches["BOKEH_CACHE"]))


def test_offline_fetch_reads_a_zip_copied_to_this_machine(caches: dict[str, str], tmp_path: Path) -> None:
    """Offline, `--url PATH` is read from disk (the offline refusal says so); the archive is still checked."""
    with pytest.raises(FetchError, match="give a copy of the zip: --url PATH"):
        fetch_pynet(offline=True, progress=False)
    copied = tmp_path / "carried" / ZIP_NAME
    copied.parent.mkdir()
    copied.write_bytes(b"this is not a zip")
    with pytest.raises(FetchError, match="not a zip") as refused:
        fetch_pynet(str(copied), offline=True, progress=False)
    assert "machine is offline" not in str(refused.value)
    assert copied.read_bytes() == b"this is not a zip"  # "deleted it" is the cache's copy, never the user's file
    with pytest.raises(InputError, match="nor an existing file"):
        fetch_pynet(str(tmp_path / "nowhere.zip"), offline=True, progress=False)
    _nothing_loadable(Path(caches["BOKEH_CACHE"]))


def test_fetch_pynet_in_process_reports_progress(
    pynet_zip: tuple[bytes, PyNET], caches: dict[str, str], tmp_path: Path
) -> None:
    """The library call the Space uses: a progress callback, and weights_status flips to ready."""
    seen: list[tuple[int, int | None]] = []
    assert not weights_status()[0]
    with LocalServer() as server:
        url = server.add(f"/{ZIP_NAME}", pynet_zip[0])
        result = fetch_pynet(url, progress=False, callback=lambda label, done, total: seen.append((done, total)))
    assert result.status == "installed" and weights_status() == (True, "")
    assert seen[-1] == (len(pynet_zip[0]), len(pynet_zip[0]))
    # evaluation/run.py finds the weights with no --weights and no environment variable.
    from test_evaluation import SYNTH

    from evaluation.run import main as run_main

    out = tmp_path / "run"
    assert run_main([*SYNTH, "--methods", "pynet", "--no-lpips", "--warmup", "0", "--out", str(out)]) == 0
    assert "pynet" in (out / "table.csv").read_text()


# ------------------------------------------------------------------------------------------ depth, lpips


@pytest.mark.slow
def test_fetch_depth_with_huggingface_hub_against_a_local_hub(caches: dict[str, str], tmp_path: Path) -> None:
    repo = save_tiny_dpt(tmp_path / "tiny-dpt")
    (repo / "README.md").write_text("tiny random DPT\n")  # not needed, so not downloaded
    with LocalServer() as server:
        sha = server.add_repo("test-org/tiny-dpt", repo)
        env = dict(caches, HF_ENDPOINT=server.url(""))
        done = _cli(["fetch", "depth", "--depth-model", "test-org/tiny-dpt"], env, tmp_path)
        assert done.returncode == 0, done.stderr
        assert f"revision: {sha}" in done.stdout
        fetched = {p for _, p, _ in server.log if "/resolve/" in p}
    assert {Path(p).name for p in fetched} == {"config.json", "preprocessor_config.json", "model.safetensors"}
    # Loaded offline, from the Hugging Face cache only, as the app does.
    check = (
        "import numpy as np; from bokeh_model.depth import DepthEstimator; "
        "d = DepthEstimator('test-org/tiny-dpt').estimate(np.random.rand(48, 64, 3).astype('float32')); "
        "print(d.shape)"
    )
    env = {k: v for k, v in os.environ.items() if k != "HF_ENDPOINT"} | caches | {"HF_HUB_OFFLINE": "1"}
    loaded = subprocess.run(
        [sys.executable, "-c", check], env=env | {"PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300
    )
    assert loaded.returncode == 0 and "(48, 64)" in loaded.stdout, loaded.stderr


def test_fetch_lpips_refuses_a_file_that_is_not_torchvisions(
    caches: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The official trunk cannot be made here; a stand-in served at its URL fails the file-name hash check."""
    import bokeh_model.fetch as fetch_module

    with LocalServer() as server:
        monkeypatch.setattr(fetch_module, "ALEXNET_URL", server.add("/alexnet-owt-7be5be79.pth", b"not alexnet"))
        monkeypatch.setattr(torch.hub, "_hub_dir", str(Path(caches["TORCH_HOME"]) / "hub"))
        with pytest.raises(FetchError, match="does not match the expected 7be5be79"):
            fetch_lpips(progress=False)
    checkpoints = Path(caches["TORCH_HOME"]) / "hub" / "checkpoints"
    assert list(checkpoints.iterdir()) == []


# ------------------------------------------------------------------------------------------ depth convention


def test_fixed_range_depth_is_fed_unchanged() -> None:
    """An 8-bit map spanning 40..200 reaches PyNET as 40/255..200/255 (the authors' loader), not 0..1."""
    eight_bit = np.tile(np.linspace(40, 200, 64).astype(np.uint8), (32, 1)).astype(np.float32) / 255.0
    fed = to_pynet_depth(eight_bit, (32, 64))
    assert fed.min() == pytest.approx(40 / 255) and fed.max() == pytest.approx(200 / 255)
    raw = np.linspace(3.0, 12.0, 64 * 32, dtype=np.float32).reshape(32, 64)  # no fixed range: normalised
    fed = to_pynet_depth(raw, (32, 64))
    assert fed.min() == 0.0 and fed.max() == 1.0
    assert to_pynet_depth(eight_bit, (32, 64), normalize=True).max() == 1.0


# ------------------------------------------------------------------------------------------ evaluation/run.py


def test_evaluation_fetches_the_lpips_trunk_on_first_use_unless_offline(
    caches: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, temporary_methods
) -> None:
    """Online, the run downloads the trunk itself (here a stand-in that fails the official hash check, so LPIPS is
    n/a with that reason); with --offline it does not even ask."""
    from test_evaluation import SYNTH, TEST_METHODS

    import bokeh_model.fetch as fetch_module
    from evaluation.run import main as run_main

    temporary_methods(*TEST_METHODS)  # eval_test_blur
    monkeypatch.setattr(torch.hub, "_hub_dir", str(Path(caches["TORCH_HOME"]) / "hub"))
    with LocalServer() as server:
        monkeypatch.setattr(fetch_module, "ALEXNET_URL", server.add("/alexnet-owt-7be5be79.pth", b"not alexnet"))
        args = [*SYNTH, "--methods", "eval_test_blur"]
        assert run_main([*args, "--offline", "--out", str(tmp_path / "offline")]) == 0
        assert server.ranges("/alexnet-owt-7be5be79.pth") == []
        assert run_main([*args, "--out", str(tmp_path / "online")]) == 0
        assert server.ranges("/alexnet-owt-7be5be79.pth") == [None]
    record = json.loads((tmp_path / "online" / "run.json").read_text())["lpips"]
    assert not record["available"] and "does not match the expected 7be5be79" in record["reason"]
    assert not (Path(caches["TORCH_HOME"]) / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth").exists()
