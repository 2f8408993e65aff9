"""PyNET-Bokeh architecture: exact size, shapes at every level, TF op semantics, ablation, Hub round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bokeh_model.modeling_pynet import LEVEL_SCALES, PyNET, space_to_depth_tf, tf_same_conv_transpose2d


@pytest.fixture(scope="module")
def model() -> PyNET:
    """A randomly initialised PyNET whose activations survive all seven levels.

    The authors' init (std 0.01) makes an untrained network's output almost constant, which would hide
    wiring mistakes, so the tests use He-scaled weights. These weights are for tests only.
    """
    torch.manual_seed(0)
    net = PyNET().eval()
    with torch.no_grad():
        for module in net.modules():
            weight = getattr(module, "weight", None)
            if isinstance(weight, torch.nn.Parameter) and weight.ndim == 4:  # convs and transposed convs
                torch.nn.init.kaiming_normal_(weight, a=0.2)
    return net


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_count_matches_the_paper(model: PyNET) -> None:
    assert _count(model) == 47_551_791


def test_variants_differ_by_exactly_their_layers() -> None:
    # RGB-only: the first conv sees 12 space-to-depth channels instead of 16 (32 filters of 3x3).
    assert _count(PyNET(in_channels=3)) == 47_551_791 - 4 * 32 * 9
    # Mobile variant (paper Table 2): no instance norm, i.e. 24,064 fewer affine parameters.
    assert _count(PyNET(instance_norm=False)) == 47_551_791 - 24_064
    with pytest.raises(ValueError, match="in_channels"):
        PyNET(in_channels=5)


@pytest.mark.parametrize("size", [(64, 96), (37, 53), (5, 7)])
def test_output_shape_at_every_level(model: PyNET, size: tuple[int, int]) -> None:
    height, width = size
    with torch.inference_mode():
        outputs = model.forward_pyramid(torch.rand(1, 4, height, width))
    assert sorted(outputs) == [1, 2, 3, 4, 5, 6, 7]
    for level, out in outputs.items():
        scale = LEVEL_SCALES[level]
        expected = (max(1, int(np.ceil(height * scale))), max(1, int(np.ceil(width * scale))))
        assert tuple(out.shape) == (1, 3, *expected), level
        assert torch.isfinite(out).all()
        assert out.min() >= -0.08 - 1e-6 and out.max() <= 1.08 + 1e-6  # 0.58 tanh + 0.5
    assert tuple(outputs[1].shape[-2:]) == (2 * height, 2 * width)


def test_single_level_request_matches_full_pyramid(model: PyNET) -> None:
    x = torch.rand(2, 4, 64, 64)
    with torch.inference_mode():
        everything = model.forward_pyramid(x)
        for level in (1, 3, 5, 7):
            assert torch.equal(model(x, level=level), everything[level])


def _tf_space_to_depth_nhwc(x: np.ndarray, block: int) -> np.ndarray:
    """tf.nn.space_to_depth, written from its definition: out[n, i, j, (dy*b + dx)*C + c] = x[n, i*b+dy, j*b+dx, c]."""
    n, h, w, c = x.shape
    out = np.zeros((n, h // block, w // block, c * block * block), dtype=x.dtype)
    for i in range(h // block):
        for j in range(w // block):
            for dy in range(block):
                for dx in range(block):
                    first = (dy * block + dx) * c
                    out[:, i, j, first : first + c] = x[:, i * block + dy, j * block + dx, :]
    return out


def test_space_to_depth_uses_tensorflow_channel_order() -> None:
    x = np.random.default_rng(0).random((2, 6, 8, 4)).astype(np.float32)  # NHWC
    expected = _tf_space_to_depth_nhwc(x, 2)
    ours = space_to_depth_tf(torch.from_numpy(x).permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(ours, expected)
    # pixel_unshuffle orders channels differently, which is exactly the trap this function avoids.
    unshuffled = torch.nn.functional.pixel_unshuffle(torch.from_numpy(x).permute(0, 3, 1, 2), 2)
    assert not np.array_equal(unshuffled.permute(0, 2, 3, 1).numpy(), expected)


def _tf_same_conv_stride2(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """tf.nn.conv2d(padding='SAME', strides=2) for one (H, W) channel and a (k, k) kernel, from its definition.

    Output size ceil(H / 2); total padding max((out - 1) * 2 + k - H, 0), split with the smaller half before.
    """
    k = w.shape[0]
    (h, wd) = x.shape
    out_h, out_w = -(-h // 2), -(-wd // 2)
    pad_h = max((out_h - 1) * 2 + k - h, 0)
    pad_w = max((out_w - 1) * 2 + k - wd, 0)
    padded = np.pad(x, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)))
    out = np.zeros((out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            out[i, j] = np.sum(padded[2 * i : 2 * i + k, 2 * j : 2 * j + k] * w)
    return out


def test_transposed_conv_is_the_adjoint_of_tf_same_strided_conv() -> None:
    """tf.nn.conv2d_transpose(SAME, stride 2) is defined as the gradient (adjoint) of the strided SAME conv.

    So <conv(a), b> must equal <conv_transpose(b), a> for every a, b: this pins the alignment down to the
    pixel, and the common PyTorch choice padding=1, output_padding=1 fails it.
    """
    rng = np.random.default_rng(1)
    kernel = rng.standard_normal((3, 3))
    for h, w in [(8, 10), (6, 6)]:
        a = rng.standard_normal((2 * h, 2 * w))
        b = rng.standard_normal((h, w))
        lhs = float(np.sum(_tf_same_conv_stride2(a, kernel) * b))
        weight = torch.from_numpy(kernel).reshape(1, 1, 3, 3)
        ours = tf_same_conv_transpose2d(torch.from_numpy(b).reshape(1, 1, h, w), weight)[0, 0].numpy()
        assert ours.shape == (2 * h, 2 * w)
        assert abs(float(np.sum(ours * a)) - lhs) < 1e-9
        shifted = torch.nn.functional.conv_transpose2d(
            torch.from_numpy(b).reshape(1, 1, h, w), weight, stride=2, padding=1, output_padding=1
        )[0, 0].numpy()
        assert abs(float(np.sum(shifted * a)) - lhs) > 1e-6


def test_instance_norm_matches_the_tf_formula() -> None:
    from bokeh_model.modeling_pynet import PyNETConvLayer

    torch.manual_seed(0)
    layer = PyNETConvLayer(3, 4, 3, instance_norm=True, activation=False)
    with torch.no_grad():
        layer.norm.weight.copy_(torch.tensor([1.0, 2.0, 0.5, -1.0]))
        layer.norm.bias.copy_(torch.tensor([0.0, 0.1, -0.2, 0.3]))
    x = torch.rand(2, 3, 5, 7) * 0.05  # small activations: where eps 1e-3 vs 1e-5 matters
    conv = layer.conv(x)
    mean = conv.mean(dim=(2, 3), keepdim=True)
    var = conv.var(dim=(2, 3), keepdim=True, unbiased=False)  # tf.nn.moments: biased variance
    expected = (conv - mean) / torch.sqrt(var + 1e-3) * layer.norm.weight.view(1, -1, 1, 1)
    expected = expected + layer.norm.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-6)


def test_disabling_levels_changes_the_output_and_stays_finite(model: PyNET) -> None:
    x = torch.rand(1, 4, 64, 96, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        full = model(x)
        previous = full
        for disabled in [(7,), (6, 7), (5, 6, 7), (4, 5, 6, 7)]:
            out = model(x, disabled_levels=disabled)
            assert out.shape == full.shape
            assert torch.isfinite(out).all()
            assert (out - previous).abs().max() > 1e-6, disabled
            previous = out
    with pytest.raises(ValueError, match="can be disabled"):
        model(x, disabled_levels=(3,))
    with pytest.raises(ValueError, match="level"):
        model(x, level=0)
    with pytest.raises(ValueError, match="expected input"):
        model(torch.rand(1, 3, 64, 64))


def test_hub_mixin_round_trip_is_exact(model: PyNET, tmp_path) -> None:
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "config.json").is_file()
    reloaded = PyNET.from_pretrained(str(tmp_path), strict=True)  # built on the meta device, weights assigned
    assert not reloaded.training
    assert all(t.device.type == "cpu" for t in [*reloaded.parameters(), *reloaded.buffers()])
    loose = PyNET.from_pretrained(str(tmp_path))  # non-strict: huggingface_hub's own loader
    x = torch.rand(1, 4, 64, 64)
    with torch.inference_mode():
        torch.testing.assert_close(reloaded(x), model(x), rtol=0, atol=0)
        torch.testing.assert_close(loose(x), model(x), rtol=0, atol=0)

    rgb_only = PyNET(in_channels=3, instance_norm=False)
    rgb_only.save_pretrained(tmp_path / "rgb")
    again = PyNET.from_pretrained(str(tmp_path / "rgb"), strict=True)
    assert again.in_channels == 3 and again.enc2.branches[0][0].norm is None
