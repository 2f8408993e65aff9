"""PyNET export: ONNX (dynamic sizes, every level, the RGB-only and instance-norm-free variants) and LiteRT.

Parity is checked on a full-size network with He-scaled random weights: the authors' init makes an untrained
output almost constant, which would let a wrong graph pass. These weights are for tests only.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from _tiny_models import he_random_pynet

from bokeh_model.cli import main
from bokeh_model.errors import EXIT_BAD_INPUT, EXIT_MISSING, InputError, ModelUnavailableError
from bokeh_model.export import (
    MIN_SIDE,
    ONNX_OPSET,
    PyNETExportModule,
    export_litert,
    export_onnx,
    litert_python,
    onnx_cache_path,
    weights_fingerprint,
)
from bokeh_model.modeling_pynet import LEVEL_SCALES, PyNET

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

SIZES = ((64, 96), (75, 41))  # a multiple of 32, and odd sides that need reflection padding and cropping
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def model() -> PyNET:
    return he_random_pynet()


def _onnx_vs_torch(net: PyNET, path: Path, level: int, disabled: tuple[int, ...] = ()) -> None:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for index, (height, width) in enumerate(SIZES):
        x = torch.rand(1, net.in_channels, height, width, generator=torch.Generator().manual_seed(index))
        with torch.inference_mode():
            expected = net(x, level=level, disabled_levels=disabled).numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        assert got.shape == expected.shape, (level, height, width)
        assert expected.std() > 0.05, "the random network's output must vary for the comparison to mean anything"
        assert np.abs(got - expected).max() <= TOLERANCE, (level, height, width, np.abs(got - expected).max())


def _assert_dynamic_graph(path: Path, level: int = 1) -> None:
    proto = onnx.load(str(path), load_external_data=False)
    onnx.checker.check_model(proto)
    assert proto.opset_import[0].version >= 17
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims[2:]] == ["height", "width"]
    ops = {node.op_type for node in proto.graph.node}
    assert {"Pad", "Conv", "MaxPool"} <= ops
    # Level 7 is the bottom of the pyramid: its upsampling convolutions feed nothing and are pruned.
    assert ("ConvTranspose" in ops) == (level < 7)
    pads = [node for node in proto.graph.node if node.op_type == "Pad"]
    assert [attr.s for attr in pads[0].attribute if attr.name == "mode"] == [b"reflect"]


def test_export_module_equals_forward_for_any_size(model: PyNET) -> None:
    """The export wrapper's integer shape arithmetic reproduces PyNET.forward's padding and crop."""
    for height, width in ((33, 47), (65, 127)):
        x = torch.rand(1, 4, height, width)
        with torch.inference_mode():
            everything = model.forward_pyramid(x)
            for level in LEVEL_SCALES:
                assert torch.equal(PyNETExportModule(model, level)(x), everything[level]), (level, height, width)


def test_export_module_rejects_bad_levels(model: PyNET) -> None:
    with pytest.raises(ValueError, match="level must be"):
        PyNETExportModule(model, 0)
    with pytest.raises(ValueError, match="only levels"):
        PyNETExportModule(model, 1, (2,))
    with pytest.raises(ValueError, match="is disabled"):
        PyNETExportModule(model, 5, (5, 6, 7))


@pytest.mark.slow
@pytest.mark.parametrize("level", sorted(LEVEL_SCALES))
def test_onnx_equals_pytorch_at_every_level(model: PyNET, level: int, tmp_path: Path) -> None:
    path = export_onnx(model, tmp_path / f"level{level}.onnx", level=level)
    _assert_dynamic_graph(path, level)
    if level == 1:
        ops = {node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node}
        assert "InstanceNormalization" in ops
    _onnx_vs_torch(model, path, level)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config", "level", "disabled"),
    [
        ({"in_channels": 3}, 1, ()),  # RGB only
        ({"instance_norm": False}, 2, ()),  # the paper's mobile variant (Table 2)
        ({}, 3, (5, 6, 7)),  # Fig. 8 ablation: levels 5..7 switched off
    ],
)
def test_onnx_variants(config: dict, level: int, disabled: tuple[int, ...], tmp_path: Path) -> None:
    net = he_random_pynet(**config)
    path = export_onnx(net, tmp_path / "variant.onnx", level=level, disabled_levels=disabled)
    _assert_dynamic_graph(path)
    ops = {node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node}
    assert ("InstanceNormalization" in ops) == config.get("instance_norm", True)
    _onnx_vs_torch(net, path, level, disabled)


def test_cache_key_follows_weights_and_graph_rules(model: PyNET, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("BOKEH_CACHE", str(tmp_path))
    fingerprint = weights_fingerprint(model)
    assert fingerprint == weights_fingerprint(model)
    base = onnx_cache_path(model, 1, (), fingerprint)
    assert base.parent == tmp_path / "onnx" and fingerprint in base.name
    assert onnx_cache_path(model, 2, (), fingerprint) != base
    assert onnx_cache_path(model, 1, (7,), fingerprint) != base
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.l1_head.bias.add_(1e-3)
    assert weights_fingerprint(other) != fingerprint


def test_cli_export_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tmp_path / "missing"), str(tmp_path / "out.onnx")]) == EXIT_MISSING
    assert "neither an existing folder nor a hub id" in capsys.readouterr().err
    assert main(["export", str(tmp_path), str(tmp_path / "out.bin")]) == EXIT_BAD_INPUT
    assert "--format" in capsys.readouterr().err
    existing = tmp_path / "exists.onnx"
    existing.write_bytes(b"keep me")
    assert main(["export", str(tmp_path), str(existing)]) == EXIT_BAD_INPUT
    assert "already exists" in capsys.readouterr().err and existing.read_bytes() == b"keep me"
    code = main(["export", str(tmp_path), str(tmp_path / "o.onnx"), "--level", "5", "--disable-levels", "5+"])
    assert code == EXIT_BAD_INPUT and "is disabled" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(tmp_path), str(tmp_path / "o.onnx"), "--level", "9"])
    assert exit_info.value.code == 2


@pytest.mark.slow
def test_cli_export_onnx(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    he_random_pynet().save_pretrained(tmp_path / "weights")
    out = tmp_path / "pynet_level7.onnx"
    assert main(["export", str(tmp_path / "weights"), str(out), "--level", "7"]) == 0
    printed = capsys.readouterr().out
    assert "onnx.checker ok" in printed and "max |diff|" in printed
    _assert_dynamic_graph(out, level=7)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left behind


def test_onnx_minimum_side_is_documented() -> None:
    # Below 33 px PyNET pads by replication, which the exported graph does not implement; the library runs such
    # inputs eagerly (tests/test_backends.py) and the ONNX input's lower bound says so.
    assert MIN_SIDE == 33 and ONNX_OPSET >= 17


@pytest.mark.slow
def test_litert_equals_pytorch(tmp_path: Path) -> None:
    """LiteRT (.tflite through litert-torch, in its own environment) against PyTorch in this environment."""
    python = litert_python()
    if python is None:
        pytest.skip("no litert-torch environment (.venv-litert or $BOKEH_LITERT_PYTHON); `make litert-env` makes one")
    net = he_random_pynet()
    net.save_pretrained(tmp_path / "weights")
    out, dump = tmp_path / "pynet.tflite", tmp_path / "io.npz"
    worker = Path(__file__).resolve().parents[1] / "bokeh_model" / "_litert_worker.py"
    command = [str(python), str(worker), "--weights", str(tmp_path / "weights"), "--out", str(out)]
    command += ["--size", "64", "96", "--threads", "2", "--dump", str(dump)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])
    assert report["bytes"] == out.stat().st_size > 150e6  # all 47.5M fp32 weights
    with np.load(dump) as data:
        x, litert_out = data["input"], data["output"]
    with torch.inference_mode():
        expected = net(torch.from_numpy(x), level=1).numpy()
    assert litert_out.shape == expected.shape == (1, 3, 128, 192)
    assert expected.std() > 0.05
    assert np.abs(litert_out - expected).max() <= TOLERANCE


def test_litert_without_its_environment_is_a_clear_error(
    model: PyNET, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOKEH_LITERT_PYTHON", str(tmp_path / "no-such-python"))
    assert litert_python() is None
    with pytest.raises(ModelUnavailableError, match="make litert-env"):
        export_litert(model, tmp_path / "pynet.tflite", size=(64, 96))
    with pytest.raises(InputError, match="at least 33x33"):
        export_litert(model, tmp_path / "pynet.tflite", size=(16, 96))
    assert not (tmp_path / "pynet.tflite").exists()
