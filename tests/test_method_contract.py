"""The contract every registered bokeh method keeps, generated from ``list_methods()``.

A module in ``bokeh_model/methods/`` with ``@register_method`` gets these tests without a line added here: output
at the photo's size, float32 in [0, 1] and finite; the same input gives the same output; bad parameter names and
values and a missing depth map are :class:`InputError` naming what is wrong; ``strength`` 0 leaves the photo as it
is; a method that cannot run here says why and how to provide what it lacks.

A method that needs files this machine lacks (PyNET's, Bokehlicious' or BokehMe's weights) is run with
stand-ins from :data:`PROVIDERS` (random weights in the real format: plumbing only, the outputs mean
nothing); without one, only its availability contract and its parameter checks run.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from bokeh_model import InputError, ModelUnavailableError, PyNET, create_method, list_methods
from bokeh_model.registry import Method, ParamSpec, get_method_class

# Collected at import: the registry holds the real methods only (conftest removes test-only ones after each module).
METHODS = list_methods()
# Methods that cannot run on a bare machine -> the fixture that provides what they need (create_method keywords).
PROVIDERS = {
    "pynet": "random_pynet_weights",
    "bokehlicious": "random_bokehlicious_weights",
    "bokehme": "random_bokehme_weights",
}
# An output may differ from the photo by this much at strength 0: float32 round trips such as sRGB -> linear ->
# sRGB (the lens renderer: ~3e-6); 1/400 of an 8-bit level.
IDENTITY_ATOL = 1e-5
SIZE = (40, 56)


def _params(name: str) -> tuple[ParamSpec, ...]:
    return tuple(create_method(name).params)


def _cases(names=METHODS):
    """One parameter per method; those that run only with provided files are marked slow."""
    return [pytest.param(name, marks=pytest.mark.slow) if name in PROVIDERS else name for name in names]


STRENGTH_METHODS = [name for name in METHODS if any(spec.name == "strength" for spec in _params(name))]


@pytest.fixture(scope="module")
def random_pynet_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Randomly initialised PyNET weights saved in the real format (as tests/test_pynet_inference.py does)."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("contract_pynet")
    PyNET().save_pretrained(folder)
    return {"weights": str(folder)}


@pytest.fixture(scope="module")
def random_bokehlicious_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """TEST STAND-IN: a randomly initialised Bokehlicious ``small`` saved as the authors publish theirs (a plain
    ``state_dict`` written by ``torch.save``); plumbing only, its renders mean nothing."""
    from bokeh_model.modeling_bokehlicious import Bokehlicious

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("contract_bokehlicious") / "random-stand-in-small.pt"
    torch.save(Bokehlicious().state_dict(), path)
    return {"weights": str(path)}


@pytest.fixture(scope="module")
def random_bokehme_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """TEST STAND-IN: randomly initialised ARNet/IUNet saved in the authors' checkpoint format
    (``{"model": state_dict}``), not BokehMe's trained weights: plumbing only, the outputs mean nothing."""
    from bokeh_model.modeling_bokehme import ARNet, IUNet

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("contract_bokehme")
    torch.save({"model": ARNet().state_dict()}, folder / "arnet.pth")
    torch.save({"model": IUNet().state_dict()}, folder / "iunet.pth")
    return {"weights": str(folder)}


def _on_cpu(name: str) -> dict[str, str]:
    factory = get_method_class(name)
    try:
        accepts_device = "device" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        accepts_device = False
    return {"device": "cpu"} if accepts_device else {}


@pytest.fixture
def method(request: pytest.FixtureRequest, name: str) -> Method:
    """The method ready to run here (with provided files where it needs them), else the test is skipped."""
    kwargs = _on_cpu(name)
    if name in PROVIDERS:
        kwargs.update(request.getfixturevalue(PROVIDERS[name]))
    instance = create_method(name, **kwargs)
    available, reason = instance.availability()
    if not available:
        pytest.skip(f"{name} cannot run here and no stand-in is provided (availability tested alone): {reason}")
    return instance


def _inputs(size: tuple[int, int] = SIZE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.random((*size, 3), dtype=np.float32)
    # A smooth scene: near at the bottom, far at the top, with some texture.
    ramp = np.linspace(0.0, 1.0, size[0], dtype=np.float32)[:, None] * np.ones(size[1], np.float32)
    depth = np.clip(ramp + 0.1 * rng.standard_normal(size).astype(np.float32), 0.0, 1.0)
    return image, depth


def _bad_values(spec: ParamSpec) -> list[object]:
    """Values the schema must refuse for this parameter."""
    if spec.kind in ("float", "int"):
        bad: list[object] = ["abc", float("nan")]
        if spec.max is not None:
            bad.append(spec.max + 1)
        if spec.min is not None:
            bad.append(spec.min - 1)
        if spec.kind == "int":
            bad.append((spec.min or 0) + 0.5)
        return bad
    if spec.kind == "choice":
        return ["no-such-choice"]
    if spec.kind == "bool":
        return ["maybe"]
    return []  # "str": any text is a value


def test_every_method_is_covered() -> None:
    assert {"lens", "gaussian", "disk", "pynet", "bokehlicious", "bokehme", "bokehme_classical"} <= set(METHODS)
    assert not [name for name in METHODS if "test" in name], "a test-only method leaked into the registry"


@pytest.mark.parametrize("name", METHODS)
def test_schema_is_complete(name: str) -> None:
    instance = create_method(name)
    assert instance.name == name and instance.description.strip()
    assert len(set(instance.param_names())) == len(instance.params)
    for spec in instance.params:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", spec.name) and spec.help.strip(), spec
        assert spec.validate(None) == spec.default  # the default passes its own check (None = optional)
        if spec.default is not None:
            assert spec.validate(spec.default) == spec.default


@pytest.mark.parametrize("name", METHODS)
def test_availability_says_how_to_provide_what_is_missing(name: str) -> None:
    instance = create_method(name)
    available, reason = instance.availability()
    assert isinstance(available, bool) and isinstance(reason, str)
    if available:
        assert reason == ""
        return
    # A command or an option to run, in the message itself.
    assert re.search(r"`[^`]+`|--[a-z][a-z-]+|\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b", reason), reason
    if name == "pynet":
        assert "python -m bokeh_model fetch pynet" in reason and "--weights" in reason
        assert "BOKEH_PYNET_WEIGHTS" in reason
    if name == "bokehlicious":
        assert "python -m bokeh_model fetch bokehlicious" in reason and "--url" in reason
    if name == "bokehme":
        assert "python -m bokeh_model fetch bokehme" in reason and "--url" in reason
    image, depth = _inputs()
    with pytest.raises(ModelUnavailableError):
        instance(image, depth)


@pytest.mark.parametrize("name", _cases())
def test_output_is_the_photo_size_in_range_and_finite(method: Method, name: str) -> None:
    for size in (SIZE, (31, 45)):
        image, depth = _inputs(size)
        out = method(image, depth)
        assert out.shape == image.shape and out.dtype == np.float32, (name, size, out.shape, out.dtype)
        assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    half = depth[::2, ::2]  # a depth map at another size is resized to the photo's
    assert method(image, half).shape == image.shape


@pytest.mark.parametrize("name", _cases())
def test_same_input_same_output(method: Method, name: str) -> None:
    image, depth = _inputs(seed=1)
    first = method(image.copy(), depth.copy())
    second = method(image.copy(), depth.copy())
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("name", METHODS)
def test_bad_parameter_names_and_values_are_input_errors_naming_them(name: str) -> None:
    """Checked before anything is loaded or rendered, so this holds for unavailable methods too."""
    instance = create_method(name)
    image, depth = _inputs()
    with pytest.raises(InputError, match="no_such_parameter") as info:
        instance(image, depth, no_such_parameter=1)
    for spec in instance.params:  # the message lists what the method does take
        assert spec.name in str(info.value)
    for spec in instance.params:
        for value in _bad_values(spec):
            with pytest.raises(InputError) as info:
                instance(image, depth, **{spec.name: value})
            assert spec.name in str(info.value), (spec.name, value, str(info.value))


@pytest.mark.parametrize("name", _cases())
def test_missing_depth_is_an_input_error(method: Method, name: str) -> None:
    image, _ = _inputs()
    if not method.requires_depth():
        assert method(image).shape == image.shape
        return
    with pytest.raises(InputError, match="depth"):
        method(image)
    with pytest.raises(InputError, match="depth"):
        method(image, np.zeros((4, 4, 2), np.float32))  # not a depth map
    with pytest.raises(InputError, match="NaN"):
        method(image, np.full(SIZE, np.nan, np.float32))


@pytest.mark.parametrize("name", _cases(STRENGTH_METHODS))
def test_strength_zero_leaves_the_photo_unchanged(method: Method, name: str) -> None:
    """``strength`` is the blur radius K (radius = K * |d - d_focus|): at 0 nothing is blurred, whatever the other
    parameters say."""
    spec = method.param_spec("strength")
    assert spec.min is not None and spec.min <= 0.0
    image, depth = _inputs(seed=2)
    for focus in (None, 0.0, 1.0):
        out = method(image, depth, strength=0, **({} if focus is None else {"focus_disparity": focus}))
        np.testing.assert_allclose(out, image, rtol=0, atol=IDENTITY_ATOL, err_msg=f"{name}, focus {focus}")
    blurred = method(image, depth, strength=spec.default or 8.0)
    assert np.abs(blurred - image).max() > 0.01  # and it is not identity at its default


def test_providers_name_existing_fixtures() -> None:
    source = Path(__file__).read_text(encoding="utf-8")
    for name, fixture in PROVIDERS.items():
        assert name in METHODS and f"def {fixture}(" in source
