"""PyNET at its trained scale for photos of any size (the app and `bokeh-model render`): which size PyNET sees, the
guided finish back to the photo's size, and the labelled preview."""

from __future__ import annotations

import numpy as np

from bokeh_model.pynet_scale import PYNET_TRAINED_SIDE, render_pynet_at_scale, trained_scale_size


class _Recorder:
    """Stands in for the pynet method: records what it is given, returns a blurred-looking copy."""

    name = "pynet"

    def __init__(self) -> None:
        self.calls: list[tuple[tuple[int, ...], tuple[int, ...] | None, dict]] = []

    def __call__(self, image, depth, **params):
        self.calls.append((image.shape, None if depth is None else depth.shape, params))
        return np.clip(image * 0.5 + 0.25, 0.0, 1.0).astype(np.float32)


def test_a_12_mp_photo_runs_at_768x512_and_comes_back_at_its_size():
    assert PYNET_TRAINED_SIDE == 1536 and trained_scale_size(2828, 4243) == (1024, 1536)
    photo = np.random.default_rng(0).random((2828, 4243, 3), dtype=np.float32)  # 12 MP, 3:2
    depth = np.random.default_rng(1).random((1414, 2122), dtype=np.float32)
    method = _Recorder()
    scaled = render_pynet_at_scale(method, photo, depth, {"max_side": 0, "level": 1})
    (shape, depth_shape, params) = method.calls[0]
    assert shape == (1024, 1536, 3) and depth_shape == (1024, 1536) and params["max_side"] == 0
    assert scaled.input_size == (768, 512) and scaled.trained
    assert scaled.image.shape == photo.shape and scaled.image.dtype == np.float32
    note = scaled.note()
    assert "trained scale" in note and "network input 768x512" in note and "4243x2828 px by guided" in note


def test_small_photos_are_brought_up_to_the_trained_scale_and_back():
    photo = np.random.default_rng(0).random((400, 600, 3), dtype=np.float32)
    method = _Recorder()
    scaled = render_pynet_at_scale(method, photo, None, {"max_side": 0})
    assert method.calls[0][0] == (1024, 1536, 3) and scaled.image.shape == photo.shape


def test_a_preview_is_an_explicit_labelled_choice():
    photo = np.random.default_rng(0).random((1024, 1536, 3), dtype=np.float32)
    method = _Recorder()
    scaled = render_pynet_at_scale(method, photo, None, {"max_side": 768})
    assert method.calls[0][0] == (512, 768, 3) and not scaled.trained
    assert scaled.note().startswith("PyNET PREVIEW (chosen)") and scaled.image.shape == photo.shape
    # EBB!'s own size is the trained scale: no resize and no finish
    same = render_pynet_at_scale(_Recorder(), photo, None, {"max_side": 0})
    assert same.trained and "guided" not in same.note()
