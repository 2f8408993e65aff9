"""Named depth models (DPT-Hybrid and Depth Anything V2 Small): the table, short names in every entry point, a tiny
random Depth Anything through the real offline loading code, per-model depth caches, the Space's depth choice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _tiny_models import save_tiny_depth_anything, save_tiny_dpt
from PIL import Image

from bokeh_model import ModelUnavailableError
from bokeh_model.cli import main
from bokeh_model.depth import DepthEstimator, _is_metric, depth_model_status, get_depth_estimator
from bokeh_model.depth_models import (
    DEPTH_MODELS,
    default_depth_model,
    depth_model_info,
    depth_model_label,
    depth_model_record,
    resolve_depth_model,
)

DA_ID = "depth-anything/Depth-Anything-V2-Small-hf"
DPT_ID = "Intel/dpt-hybrid-midas"


@pytest.fixture(scope="module")
def tiny_da(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A random Depth Anything (real processor settings, 128-px input to stay cheap); not a real model."""
    return str(save_tiny_depth_anything(tmp_path_factory.mktemp("tiny-da"), size=126))


@pytest.fixture()
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


def _photo(height: int = 90, width: int = 120) -> np.ndarray:
    rng = np.random.default_rng(1)
    image = np.clip(rng.normal(0.5, 0.1, (height, width, 3)), 0, 1).astype(np.float32)
    image[height // 4 : 3 * height // 4, width // 3 : 2 * width // 3] = (0.9, 0.2, 0.5)
    return image


# ------------------------------------------------------------------------------------------ the table


def test_short_names_resolve_everywhere_and_other_ids_pass_through(monkeypatch: pytest.MonkeyPatch) -> None:
    assert list(DEPTH_MODELS) == ["dpt-hybrid", "depth-anything-v2-small"]
    assert resolve_depth_model("depth-anything-v2-small") == DA_ID
    assert resolve_depth_model(" Depth-Anything-V2-Small ") == DA_ID  # case and spaces
    assert resolve_depth_model("dpt-hybrid") == DPT_ID
    assert resolve_depth_model(DA_ID) == DA_ID
    assert resolve_depth_model("Intel/dpt-large") == "Intel/dpt-large"
    assert resolve_depth_model("./dpt-hybrid") == "./dpt-hybrid"  # a folder with that name: give a path
    monkeypatch.delenv("BOKEH_DEPTH_MODEL", raising=False)
    assert resolve_depth_model(None) == default_depth_model() == DPT_ID  # the default stays DPT-Hybrid
    monkeypatch.setenv("BOKEH_DEPTH_MODEL", "depth-anything-v2-small")
    assert default_depth_model() == DA_ID and resolve_depth_model("") == DA_ID


def test_table_records_licence_size_and_citation() -> None:
    small = depth_model_info("depth-anything-v2-small")
    assert small is not None and small is depth_model_info(DA_ID)
    assert small.license == "Apache-2.0" and small.parameters == 24_800_000 and "2406.09414" in small.citation
    assert depth_model_info("dpt-hybrid").citation.count("2103.13413") == 1
    assert depth_model_info("/some/folder") is None
    assert depth_model_label("depth-anything-v2-small") == f"Depth Anything V2 Small ({DA_ID})"
    assert depth_model_record("dpt-hybrid") == {
        "model": DPT_ID,
        "name": "dpt-hybrid",
        "license": "Apache-2.0",
        "citation": DEPTH_MODELS["dpt-hybrid"].citation,
    }
    assert depth_model_record("org/other")["name"] is None


def test_the_real_architecture_has_the_published_size() -> None:
    """Depth Anything V2 Small's published config (dinov2-small, hidden 384, 6 heads, stages 3/6/9/12) built with
    random weights has 24.8 M parameters, the figure the table states."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    backbone = Dinov2Config(
        hidden_size=384, num_attention_heads=6, image_size=518, patch_size=14, out_indices=[3, 6, 9, 12]
    )
    config = DepthAnythingConfig(backbone_config=backbone.to_dict(), reassemble_hidden_size=384)
    count = sum(p.numel() for p in DepthAnythingForDepthEstimation(config).parameters())
    assert round(count / 1e5) == round(DEPTH_MODELS["depth-anything-v2-small"].parameters / 1e5)


# ------------------------------------------------------------------------------------------ loading, offline


def test_tiny_depth_anything_loads_offline_and_is_normalised_like_dpt(tiny_da: str, offline: None) -> None:
    assert depth_model_status(tiny_da) == (True, "")
    estimator = DepthEstimator(tiny_da, device="cpu")
    photo = _photo()
    disparity = estimator.estimate(photo)
    assert type(estimator._model).__name__ == "DepthAnythingForDepthEstimation"
    assert disparity.shape == photo.shape[:2] and disparity.dtype == np.float32
    assert disparity.min() == pytest.approx(0.0) and disparity.max() == pytest.approx(1.0)
    batch = estimator.estimate_batch([photo, photo[::-1].copy()])
    np.testing.assert_allclose(batch[0], disparity, atol=1e-5)


def test_large_photos_keep_their_aspect_at_518_px_in_multiples_of_14(tmp_path: Path, offline: None) -> None:
    """The processor of Depth-Anything-V2-Small-hf (518 px, keep_aspect_ratio, ensure_multiple_of 14): a 24 MP-class
    photo reaches the network at its training size with its own aspect ratio, not squashed; the map comes back at
    the photo's size."""
    import torch

    estimator = DepthEstimator(str(save_tiny_depth_anything(tmp_path / "da518")), device="cpu")
    estimator._load()
    seen: list[tuple[int, ...]] = []
    hook = estimator._model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(tuple(kwargs["pixel_values"].shape)), with_kwargs=True
    )
    try:
        landscape = estimator.estimate(_photo(1024, 1536))
        portrait = estimator.estimate(_photo(1500, 700))
    finally:
        hook.remove()
    assert landscape.shape == (1024, 1536) and portrait.shape == (1500, 700)
    (_, _, h1, w1), (_, _, h2, w2) = seen
    assert (h1, w2) == (518, 518)  # the short side at the training size
    assert all(side % 14 == 0 for side in (h1, w1, h2, w2))
    assert abs(w1 / h1 - 1536 / 1024) < 0.03 and abs(h2 / w2 - 1500 / 700) < 0.03
    assert torch.isfinite(torch.from_numpy(landscape)).all()


def test_metric_depth_anything_is_inverted(tiny_da: str) -> None:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(tiny_da)
    assert not _is_metric(config)
    config.depth_estimation_type = "metric"
    assert _is_metric(config)


def test_a_short_name_and_its_hub_id_share_one_estimator() -> None:
    assert get_depth_estimator("depth-anything-v2-small", "cpu") is get_depth_estimator(DA_ID, "cpu")
    assert get_depth_estimator("depth-anything-v2-small", "cpu").model_id == DA_ID
    assert DepthEstimator("dpt-hybrid").model_id == DPT_ID


def test_missing_model_names_the_short_names_and_fetch(offline: None) -> None:
    ok, reason = depth_model_status("depth-anything-v2-small")
    assert not ok and DA_ID in reason and "fetch depth --depth-model" in reason
    with pytest.raises(ModelUnavailableError, match="Depth-Anything-V2-Small-hf"):
        DepthEstimator("depth-anything-v2-small", device="cpu").estimate(_photo())


# ------------------------------------------------------------------------------------------ CLI


def test_depth_and_render_cli_take_a_depth_model(
    tiny_da: str, tmp_path: Path, offline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "photo.png"
    Image.fromarray(np.round(_photo() * 255).astype(np.uint8)).save(source)
    assert main(["depth", str(source), str(tmp_path / "d.png"), "--depth-model", tiny_da, "--device", "cpu"]) == 0
    assert main(["render", str(source), str(tmp_path / "r.png"), "--method", "gaussian", "--depth-model", tiny_da]) == 0
    assert f"depth: {tiny_da}" in capsys.readouterr().out  # which depth model ran
    assert main(["depth", str(source), str(tmp_path / "m.png"), "--depth-model", "depth-anything-v2-small"]) == 3
    err = capsys.readouterr().err
    assert DA_ID in err and "fetch depth --depth-model" in err
    render = ["render", str(source), str(tmp_path / "x.png"), "--method", "lens", "--focus", "60,45"]
    assert main([*render, "--depth-model", "depth-anything-v2-small"]) == 3
    with pytest.raises(SystemExit):
        main(["depth", "--help"])
    assert "depth-anything-v2-small" in "".join(capsys.readouterr().out.split())  # argparse wraps at hyphens


def test_fetch_depth_expands_names_and_reports_each_model_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bokeh_model.commands.fetch import depth_models_asked

    assert depth_models_asked(None) == [None]
    assert depth_models_asked(["dpt-hybrid,depth-anything-v2-small", DA_ID]) == ["dpt-hybrid", DA_ID]
    assert depth_models_asked(["all"]) == ["dpt-hybrid", "depth-anything-v2-small"]
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # nothing cached
    assert main(["fetch", "depth", "--depth-model", "all", "--offline"]) == 3
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and DPT_ID in errors[0] and DA_ID in errors[1]


# ------------------------------------------------------------------------------------------ EBB! build


@pytest.mark.slow
def test_ebb_build_caches_maps_per_depth_model_and_names_the_model(tmp_path: Path, tiny_da: str) -> None:
    from test_evaluation_trust import _archive

    from evaluation import ebb
    from evaluation.ebb_depth import depth_model_key, estimate_depth

    assert depth_model_key("depth-anything-v2-small") == depth_model_key(DA_ID) != depth_model_key("dpt-hybrid")
    _archive(tmp_path / "Training.zip", (4400, 4401), seed=3)
    dpt = str(save_tiny_dpt(tmp_path / "tiny-dpt"))
    reader = ebb._open_source(tmp_path / "Training.zip")
    pairs = ebb.find_pairs(reader.names)
    cache = tmp_path / "cache"
    by_model = {m: estimate_depth(reader.read, pairs, m, "cpu", cache, 2, lambda line: None) for m in (dpt, tiny_da)}
    folders = {m: {p.parent for p in paths.values()} for m, paths in by_model.items()}
    assert len(folders[dpt]) == len(folders[tiny_da]) == 1 and folders[dpt] != folders[tiny_da]
    first = next(iter(by_model[dpt].values())).read_bytes()
    assert first != next(iter(by_model[tiny_da].values())).read_bytes()  # two models, two maps
    lines: list[str] = []
    estimate_depth(reader.read, pairs, tiny_da, "cpu", cache, 2, lines.append)
    assert any("reused" in line for line in lines)  # the same model's maps are reused, not the other's

    built = tmp_path / "built"
    summary = ebb.build_dataset(tmp_path / "Training.zip", built, depth_model=tiny_da, log=lambda line: None)
    assert summary["depth_model"]["model"] == tiny_da
    assert f"estimated with `{tiny_da}`" in (built / "README.md").read_text()


@pytest.mark.slow
def test_evaluation_run_record_names_the_depth_model(tmp_path: Path, tiny_da: str) -> None:
    from test_evaluation import _ebb_zip

    from evaluation import ebb
    from evaluation.run import main as run_main

    built = tmp_path / "hf"
    ebb.build_dataset(_ebb_zip(tmp_path / "Training.zip"), built, log=lambda line: None)
    out = tmp_path / "run"
    args = ["--dataset", str(built), "--split", "val294", "--methods", "gaussian", "--warmup", "0", "--no-lpips"]
    assert run_main([*args, "--limit", "1", "--depth-model", tiny_da, "--out", str(out)]) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["depth_model"] == depth_model_record(tiny_da)


# ------------------------------------------------------------------------------------------ fetch from a local hub


@pytest.mark.slow
def test_fetch_both_models_from_a_local_hub_then_use_them_offline_by_name(tmp_path: Path) -> None:
    """``fetch depth --depth-model dpt-hybrid,depth-anything-v2-small`` through the real ``huggingface_hub`` code
    against a 127.0.0.1 stand-in of the Hub (tiny random models under the real ids), then, offline: the CLI, the
    Space's status cards, its depth choice and its note use each model by short name."""
    import os
    import subprocess
    import sys

    from _local_server import LocalServer

    root = Path(__file__).resolve().parents[1]
    caches = {"HF_HOME": str(tmp_path / "hf"), "BOKEH_CACHE": str(tmp_path / "bc"), "XDG_CACHE_HOME": str(tmp_path)}
    base = {k: v for k, v in os.environ.items() if not k.endswith("_OFFLINE") and k != "HF_ENDPOINT"}
    base |= caches | {"PYTHONPATH": str(root)}

    def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)

    with LocalServer() as server:
        server.add_repo(DPT_ID, save_tiny_dpt(tmp_path / "dpt"))
        sha = server.add_repo(DA_ID, save_tiny_depth_anything(tmp_path / "da", size=126))
        fetch = [sys.executable, "-m", "bokeh_model", "fetch", "depth", "--no-progress"]
        done = run(
            [*fetch, "--depth-model", "dpt-hybrid,depth-anything-v2-small"], base | {"HF_ENDPOINT": server.url("")}
        )
        assert done.returncode == 0, done.stderr
    assert done.stdout.count("depth: installed") == 2 and f"revision: {sha}" in done.stdout
    assert done.stdout.count("license: Apache-2.0") == 2 and "2406.09414" in done.stdout
    offline = base | {"HF_HUB_OFFLINE": "1"}
    again = run([*fetch, "--depth-model", "all"], offline)
    assert again.returncode == 0 and again.stdout.count("already installed") == 2, again.stderr

    photo = tmp_path / "photo.png"
    Image.fromarray(np.round(_photo() * 255).astype(np.uint8)).save(photo)
    depth = [sys.executable, "-m", "bokeh_model", "depth", str(photo), str(tmp_path / "d.png"), "--device", "cpu"]
    used = run([*depth, "--depth-model", "depth-anything-v2-small"], offline)
    assert used.returncode == 0 and f"Depth Anything V2 Small ({DA_ID})" in used.stdout, used.stderr
    check = """
import json, numpy as np
from space.config import SpaceSettings
from space.services import compute_depth, depth_source_choices, depth_source_note, status_rows
settings = SpaceSettings(depth_model="dpt-hybrid")
photo = np.random.default_rng(0).random((48, 64, 3)).astype("float32")
result = compute_depth(photo, "depth-anything-v2-small", settings)
print(json.dumps({
    "rows": {r["component"]: r["state"] for r in status_rows(settings) if r["component"].startswith("Depth")},
    "choices": [key for _, key in depth_source_choices(settings)],
    "label": result.label, "shape": list(result.depth.shape),
    "note": depth_source_note("depth-anything-v2-small", settings),
    "auto": compute_depth(photo, "auto", settings).label,
}))
"""
    space = run([sys.executable, "-c", check], offline)
    assert space.returncode == 0, space.stderr
    seen = json.loads(space.stdout.strip().splitlines()[-1])
    assert seen["rows"] == {"Depth model": "ready", "Depth model: Depth Anything V2 Small": "ready"}
    assert seen["choices"] == ["auto", "dpt-hybrid", "depth-anything-v2-small", "approximate", "upload"]
    assert seen["label"] == f"depth model Depth Anything V2 Small ({DA_ID})" and seen["shape"] == [48, 64]
    assert seen["note"].startswith("✓ Depth Anything V2 Small, 2024, 24.8 M parameters, licence Apache-2.0")
    assert seen["auto"] == f"depth model DPT-Hybrid (MiDaS v3.0) ({DPT_ID})"  # the default stays DPT-Hybrid


# ------------------------------------------------------------------------------------------ the Space


def test_space_depth_choice_per_model_with_short_visitor_lines(
    tiny_da: str, tmp_path: Path, offline: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bokeh_model.errors import InputError
    from space.config import SpaceSettings
    from space.services import compute_depth, depth_source_choices, depth_source_note, status_rows

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # the known models are not installed here
    settings = SpaceSettings(depth_model=tiny_da, results_dir=tmp_path)
    choices = depth_source_choices(settings)
    assert [key for _, key in choices] == [
        "auto",
        "model",
        "dpt-hybrid",
        "depth-anything-v2-small",
        "approximate",
        "upload",
    ]
    labels = dict((key, label) for label, key in choices)
    assert labels["depth-anything-v2-small"] == "Depth Anything V2 Small (2024, Apache-2.0)"
    assert tiny_da not in " ".join(labels.values())  # a server path is never shown to a visitor
    photo = _photo(48, 64)
    own = compute_depth(photo, "model", settings)
    assert own.depth.shape == (48, 64) and own.label == "depth model This Space's depth model"  # no server path
    assert compute_depth(photo, "auto", settings).approximate is False
    with pytest.raises(ModelUnavailableError) as missing:
        compute_depth(photo, "depth-anything-v2-small", settings)
    line = str(missing.value)
    assert line.startswith("Depth Anything V2 Small is not installed on this Space (yet): pick Auto")
    assert "/" not in line.replace(" (yet)", "") and "huggingface-cli" not in line
    with pytest.raises(InputError, match="depth-anything-v2-small"):
        compute_depth(photo, "depth-anything-v2-large", settings)
    assert depth_source_note("depth-anything-v2-small", settings).startswith("⚠ Depth Anything V2 Small is not")
    assert depth_source_note("model", settings) == "✓ This Space's depth model: installed."
    assert depth_source_note("approximate", settings) == ""
    rows = {row["component"]: row for row in status_rows(settings)}
    assert rows["Depth model"]["ok"] and not rows["Depth model: Depth Anything V2 Small"]["ok"]
    assert (
        "fetch depth --depth-model depth-anything/Depth-Anything-V2-Small-hf"
        in (rows["Depth model: Depth Anything V2 Small"]["how to provide"])
    )
    only_default = SpaceSettings(depth_model="depth-anything-v2-small", depth_choices=())
    assert [key for _, key in depth_source_choices(only_default)] == [
        "auto",
        "depth-anything-v2-small",
        "approximate",
        "upload",
    ]


def test_space_settings_and_background_fetch_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import bokeh_model.fetch as fetch_module
    from space import fetching
    from space.config import SpaceSettings

    monkeypatch.setenv("BOKEH_DEPTH_CHOICES", "none")
    assert SpaceSettings.from_env().depth_choices == ()
    monkeypatch.setenv("BOKEH_DEPTH_CHOICES", " depth-anything-v2-small , org/other ")
    assert SpaceSettings.from_env().depth_choices == ("depth-anything-v2-small", "org/other")
    monkeypatch.delenv("BOKEH_DEPTH_CHOICES")
    for key in ("BOKEH_PYNET_WEIGHTS", "BOKEH_DEPTH_MODEL"):
        monkeypatch.delenv(key, raising=False)
    assert SpaceSettings.from_env().depth_models == (DPT_ID, DA_ID)  # the default first, each model once

    monkeypatch.setenv("BOKEH_CACHE", str(tmp_path / "cache"))  # no PyNET weights
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no depth model
    calls: list[str] = []

    def fake(item: str) -> fetch_module.FetchResult:
        calls.append(item)
        return fetch_module.FetchResult(item, tmp_path, "installed")

    monkeypatch.setattr(fetch_module, "fetch_depth", lambda model, callback=None: fake(model))
    monkeypatch.setattr(fetch_module, "fetch_pynet", lambda **kwargs: fake("pynet"))
    # methods with published weights (Bokehlicious, ...) are fetched after PyNET, before the optional depth models
    from bokeh_model import method_weights

    published = method_weights.weights_spec_names()
    monkeypatch.setattr(method_weights, "fetch_method_weights", lambda method, **kwargs: fake(method))
    monkeypatch.setattr(fetching, "_STATES", {})
    fetching._run(SpaceSettings(depth_model="dpt-hybrid"))
    # PyNET is not kept waiting behind the second depth model
    assert calls == [DPT_ID, "pynet", *published, DA_ID]
    assert [state["item"] for state in fetching.fetch_snapshot()] == [
        "Depth model",
        "PyNET-Bokeh weights",
        *[f"method: {name}" for name in published],
        "Depth model: Depth Anything V2 Small",
    ]


def test_the_space_preloads_every_known_depth_model() -> None:
    """A Space's build fetches what the README front matter lists under ``preload_from_hub``."""
    import yaml

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    front = yaml.safe_load(text.split("---\n")[1])
    assert set(front["preload_from_hub"]) >= {info.hub_id for info in DEPTH_MODELS.values()}
