"""TF checkpoint reader and the TF -> PyTorch PyNET converter, checked against TensorFlow's own output.

What is TensorFlow-written here (all by ``tests/fixtures/make_tf_fixtures.py``, TensorFlow 2.21.0 CPU):

* ``fixtures/tf_small/``: a checkpoint saved by ``tf.compat.v1.train.Saver`` (V2 bundle) with a subset of
  the PyNET graph's ``generator/Variable_N`` tensors, random values, plus ``extra/*`` tensors;
* ``fixtures/tf_mini_outputs.npz``: TF outputs of a small graph made of exactly those variables;
* ``fixtures/tf_ops.npz``: TF op outputs on fixed inputs (space_to_depth, conv2d_transpose, conv2d,
  instance norm, tf.image.ssim);
* ``fixtures/tf_variable_layout.json``: names and shapes of all 440 variables the TF graph creates.

The full-size conversion test writes its 190 MB checkpoint with ``bokeh_model.tf_checkpoint`` (the
fixture script checks that TensorFlow reads that writer's output); ``test_full_model_parity_with_tensorflow``
compares all seven outputs of a TF-saved full checkpoint and runs only when ``BOKEH_TF_PYTHON`` names a
Python with TensorFlow (e.g. ``/tmp/tfenv/bin/python``, see the fixture script's docstring).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bokeh_model.cli import main as cli_main
from bokeh_model.convert_tf_checkpoint import (
    ConversionError,
    convert_tf_checkpoint,
    convert_tf_tensors,
    tf_layout,
    tf_variable_name,
    to_tf_tensors,
)
from bokeh_model.modeling_pynet import PyNET, space_to_depth_tf, tf_same_conv_transpose2d
from bokeh_model.tf_checkpoint import (
    TFCheckpointError,
    TFCheckpointReader,
    crc32c,
    mask_crc,
    read_tf_checkpoint,
    unmask_crc,
    write_tf_checkpoint,
)

FIXTURES = Path(__file__).parent / "fixtures"
SMALL = FIXTURES / "tf_small" / "model.ckpt"


def nhwc(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def to_nhwc(x: torch.Tensor) -> np.ndarray:
    return x.detach().numpy().transpose(0, 2, 3, 1)


@pytest.fixture(scope="module")
def mini() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "tf_mini_outputs.npz") as data:
        return dict(data)


@pytest.fixture(scope="module")
def ops() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "tf_ops.npz") as data:
        return dict(data)


@pytest.fixture(scope="module")
def meta_pynet() -> PyNET:
    with torch.device("meta"):
        return PyNET()


# ---------------------------------------------------------------------------------------------- reader


def test_crc32c_known_values() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    data = np.random.default_rng(0).integers(0, 256, 200_003, dtype=np.uint8).tobytes()
    expected = 0xFFFFFFFF
    table = [int(v) for v in __import__("bokeh_model.tf_checkpoint", fromlist=["_TABLE"])._TABLE]
    for byte in data:
        expected = table[(expected ^ byte) & 0xFF] ^ (expected >> 8)
    assert crc32c(data) == expected ^ 0xFFFFFFFF  # the chunked NumPy path equals the byte loop
    assert unmask_crc(mask_crc(0x12345678)) == 0x12345678


def test_reader_reads_tensorflow_saver_checkpoint(mini: dict[str, np.ndarray]) -> None:
    reader = TFCheckpointReader(SMALL)
    keys = reader.keys()
    assert len([k for k in keys if k.startswith("extra/filler_")]) == 300  # spans several SSTable blocks
    values = {k.removeprefix("value:"): v for k, v in mini.items() if k.startswith("value:")}
    assert len(values) == 16
    for name, expected in values.items():
        got = reader.read(name)
        assert got.dtype == expected.dtype and got.shape == expected.shape, name
        np.testing.assert_array_equal(got, expected)
    assert reader.read("extra/step") == 123456789012 and reader.read("extra/step").shape == ()
    assert reader.entries["extra/f16"].dtype == "float16"
    # The same files through the .index path and the .data path.
    assert TFCheckpointReader(f"{SMALL}.index").keys() == keys
    assert TFCheckpointReader(f"{SMALL}.data-00000-of-00001").keys() == keys


def test_reader_detects_corruption_and_missing_files(tmp_path: Path) -> None:
    for path in SMALL.parent.iterdir():
        shutil.copy(path, tmp_path / path.name)
    prefix = tmp_path / "model.ckpt"
    entry = TFCheckpointReader(prefix).entries["generator/Variable_4"]
    data_path = tmp_path / "model.ckpt.data-00000-of-00001"
    raw = bytearray(data_path.read_bytes())
    raw[entry.offset + 5] ^= 0xFF
    data_path.write_bytes(bytes(raw))
    with pytest.raises(TFCheckpointError, match=r"generator/Variable_4.*checksum"):
        TFCheckpointReader(prefix).read("generator/Variable_4")
    assert TFCheckpointReader(prefix, verify_checksums=False).read("generator/Variable_4").shape == (3, 3, 32, 64)
    index = tmp_path / "model.ckpt.index"
    index.write_bytes(index.read_bytes()[:-10])
    with pytest.raises(TFCheckpointError, match="not a TensorFlow V2 checkpoint"):
        TFCheckpointReader(prefix)
    with pytest.raises(TFCheckpointError, match="index not found"):
        TFCheckpointReader(tmp_path / "nothing")
    with pytest.raises(TFCheckpointError, match="no tensor named"):
        TFCheckpointReader(SMALL).read("generator/Variable_3000")


def test_writer_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    tensors = {f"s/v{i:03d}": rng.normal(size=(i % 4 + 1, 2)).astype(np.float32) for i in range(200)}
    tensors.update(
        scalar=np.array(-7, dtype=np.int64),
        half=np.ones(3, np.float16),
        flags=np.array([True, False]),
        big=rng.normal(size=(300, 300)).astype(np.float64),
    )
    write_tf_checkpoint(tmp_path / "ck", tensors, block_size=512)
    back = read_tf_checkpoint(tmp_path / "ck")
    assert sorted(back) == sorted(tensors)
    for name, value in tensors.items():
        assert back[name].dtype == value.dtype and back[name].shape == value.shape
        np.testing.assert_array_equal(back[name], value)


# ------------------------------------------------------------------------------------ layout and ops


def test_layout_equals_the_tensorflow_graph(meta_pynet: PyNET) -> None:
    """All 440 names and shapes, in creation order, equal what the TF graph creates (RGB-D and RGB)."""
    recorded = json.loads((FIXTURES / "tf_variable_layout.json").read_text())
    for key, channels in (("rgbd", 4), ("rgb", 3)):
        with torch.device("meta"):
            model = meta_pynet if channels == 4 else PyNET(in_channels=3)
        ours = [[e.tf_name, list(e.tf_shape)] for e in tf_layout(model)]
        assert ours == recorded[key]
    layout = tf_layout(meta_pynet)
    assert [e.kind for e in layout[4:8]] == ["kernel", "bias", "shift", "scale"]
    assert layout[4].torch_name == "enc2.branches.0.0.conv.weight"
    assert layout[6].torch_name == "enc2.branches.0.0.norm.bias"
    assert layout[-1].torch_name == "l1_head.bias" and layout[-2].kind == "kernel"
    assert layout[-3].kind == "transposed_kernel" and layout[-3].tf_shape == (3, 3, 3, 3)


def test_space_to_depth_matches_tensorflow(ops: dict[str, np.ndarray]) -> None:
    ours = to_nhwc(space_to_depth_tf(nhwc(ops["s2d_x"])))
    np.testing.assert_array_equal(ours, ops["s2d_y"])
    # pixel_unshuffle orders channels differently: a converter that used it would scramble layer 1.
    assert not np.array_equal(to_nhwc(F.pixel_unshuffle(nhwc(ops["s2d_x"]), 2)), ops["s2d_y"])


def test_transposed_conv_matches_tensorflow(ops: dict[str, np.ndarray]) -> None:
    weight = torch.from_numpy(ops["tconv_w"].transpose(3, 2, 0, 1).copy())  # [k,k,out,in] -> [in,out,k,k]
    ours = to_nhwc(tf_same_conv_transpose2d(nhwc(ops["tconv_x"]), weight))
    np.testing.assert_allclose(ours, ops["tconv_y"], atol=1e-5)
    # The common PyTorch choice padding=1, output_padding=1 is shifted by one pixel.
    shifted = F.conv_transpose2d(nhwc(ops["tconv_x"]), weight, stride=2, padding=1, output_padding=1)
    assert np.abs(to_nhwc(shifted) - ops["tconv_y"]).max() > 0.1


def test_conv_and_instance_norm_match_tensorflow(ops: dict[str, np.ndarray]) -> None:
    weight = torch.from_numpy(ops["conv_w"].transpose(3, 2, 0, 1).copy())  # [kh,kw,in,out] -> [out,in,kh,kw]
    ours = to_nhwc(F.conv2d(nhwc(ops["tconv_x"]), weight, padding=2))
    np.testing.assert_allclose(ours, ops["conv_y"], atol=1e-4)
    norm = torch.nn.InstanceNorm2d(7, eps=1e-3, affine=True)
    with torch.no_grad():
        norm.weight.copy_(torch.from_numpy(ops["norm_scale"]))
        norm.bias.copy_(torch.from_numpy(ops["norm_shift"]))
    np.testing.assert_allclose(to_nhwc(norm(nhwc(ops["norm_x"]))), ops["norm_y"], atol=1e-5)
    default_eps = torch.nn.functional.instance_norm(nhwc(ops["norm_x"]), weight=norm.weight, bias=norm.bias)
    assert np.abs(to_nhwc(default_eps.detach()) - ops["norm_y"]).max() > 1e-5  # eps 1e-5 would not match


# ------------------------------------------------------------------------------------------- convert


def test_converted_tensorflow_weights_reproduce_tensorflow_outputs(mini: dict[str, np.ndarray]) -> None:
    """The TF-saved subset goes through the real mapping into a PyNET; its layers then reproduce TF's outputs."""
    reader = TFCheckpointReader(SMALL)
    generator = {k: reader.read(k) for k in reader.entries if k.startswith("generator/")}
    config, state = convert_tf_tensors(generator, config={"in_channels": 4}, strict=False)
    assert len(state) == 12
    with torch.device("meta"):
        model = PyNET(**config)
    model.to_empty(device="cpu")  # uninitialised storage: only the 12 converted layers are used below
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and len(missing) == 440 - 12
    x = nhwc(mini["input"])
    with torch.no_grad():
        h1 = model.enc1.branches[0][0](space_to_depth_tf(x))
        h2 = model.enc2.branches[0][0](F.max_pool2d(h1, 2))
        logits2 = model.l2_head(model.l2_up(h1))
        out2 = 0.58 * torch.tanh(logits2) + 0.5
        out1 = 0.58 * torch.tanh(model.l1_head(model.l1_up(logits2))) + 0.5
    np.testing.assert_allclose(to_nhwc(h1), mini["enc1_conv0"], atol=1e-5)  # first layer: no channel permutation
    np.testing.assert_allclose(to_nhwc(h2), mini["enc2_conv0"], atol=1e-4)  # instance norm: shift/scale order
    np.testing.assert_allclose(to_nhwc(out2), mini["level2"], atol=1e-5)
    np.testing.assert_allclose(to_nhwc(out1), mini["level1"], atol=1e-5)


def _fake_shapes(meta_pynet: PyNET) -> dict[str, np.ndarray]:
    return {e.tf_name: np.broadcast_to(np.float32(0), e.tf_shape) for e in tf_layout(meta_pynet)}


def test_strict_conversion_names_the_first_mismatch(meta_pynet: PyNET) -> None:
    tensors = _fake_shapes(meta_pynet)
    missing = dict(tensors)
    del missing["generator/Variable_17"], missing["generator/Variable_300"]
    with pytest.raises(
        ConversionError, match=r"missing tensor generator/Variable_17 \[128\] \(for enc3.branches.0.1.conv.bias\)"
    ):
        convert_tf_tensors(missing)
    wrong = dict(tensors)
    wrong["generator/Variable_9"] = np.zeros((3, 3, 64, 65), np.float32)
    with pytest.raises(ConversionError, match=r"shape mismatch at generator/Variable_9: checkpoint \[3, 3, 64, 65\]"):
        convert_tf_tensors(wrong)
    extra = dict(tensors)
    extra["generator/Variable_440"] = np.zeros(3, np.float32)
    extra["generator/Variable_1000"] = np.zeros(3, np.float32)
    extra["global_step"] = np.zeros((), np.int64)
    with pytest.raises(ConversionError, match=r"unexpected tensor generator/Variable_440 \[3\] \(2 unexpected"):
        convert_tf_tensors(extra)
    assert tf_variable_name(0) == "generator/Variable" and tf_variable_name(10) == "generator/Variable_10"


def test_config_is_inferred(meta_pynet: PyNET) -> None:
    with torch.device("meta"):
        rgb_no_norm = PyNET(in_channels=3, instance_norm=False)
    shapes = {e.tf_name: np.broadcast_to(np.float32(0), e.tf_shape) for e in tf_layout(rgb_no_norm)}
    config, state = convert_tf_tensors(shapes)
    assert config == {"in_channels": 3, "instance_norm": False, "instance_norm_level_3": False}
    assert len(state) == len(shapes)


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["convert-tf", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "index not found" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    assert cli_main(["convert-tf", str(SMALL), str(tmp_path / "busy")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert cli_main(["convert-tf", str(SMALL), str(tmp_path / "out")]) == 2  # a subset: strict conversion fails
    assert "missing tensor generator/Variable_2 " in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_full_size_conversion_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A full 47.55M-parameter checkpoint (written by our TF-format writer) -> CLI -> from_pretrained(strict)."""
    torch.manual_seed(0)
    with torch.device("meta"):
        source = PyNET()
    source.to_empty(device="cpu")
    with torch.no_grad():  # random values everywhere (biases and norms too), so that any misplacement shows
        for param in source.parameters():
            param.normal_(0.0, 0.05)
    prefix = write_tf_checkpoint(tmp_path / "tf" / "pynet_bokeh_level_0", to_tf_tensors(source))
    out = tmp_path / "converted"
    assert cli_main(["convert-tf", str(prefix), str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert {"config.json", "conversion.json", "model.safetensors"} <= {p.name for p in out.iterdir()}
    model = PyNET.from_pretrained(str(out), strict=True)
    for (name, a), (_, b) in zip(source.state_dict().items(), model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    record = json.loads((out / "conversion.json").read_text())
    assert record["tensors"] == 440 and record["parameters"] == 47_551_791
    x = torch.rand(1, 4, 64, 64)
    with torch.no_grad():
        assert torch.equal(source(x, level=2), model(x, level=2))


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("BOKEH_TF_PYTHON"), reason="set BOKEH_TF_PYTHON to a Python with TensorFlow")
def test_full_model_parity_with_tensorflow(tmp_path: Path) -> None:
    """TF builds the full graph, saves it with its Saver and runs it; the converted PyTorch model must agree."""
    script = FIXTURES / "make_tf_fixtures.py"
    subprocess.run(
        [os.environ["BOKEH_TF_PYTHON"], str(script), "--full-parity", str(tmp_path / "tf")], check=True, timeout=600
    )
    out = convert_tf_checkpoint(tmp_path / "tf" / "model.ckpt", tmp_path / "pt")
    model = PyNET.from_pretrained(str(out), strict=True).eval()
    with np.load(tmp_path / "tf" / "outputs.npz") as data:
        with torch.no_grad():
            outputs = model.forward_pyramid(nhwc(data["input"]), level=1)
        for level in range(1, 8):
            expected = data[f"level{level}"]
            np.testing.assert_allclose(to_nhwc(outputs[level]), expected, atol=2e-4, err_msg=f"level {level}")
            assert expected.std() > 1e-3  # the random weights give non-trivial outputs
