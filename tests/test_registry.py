"""Method registry and parameter schema."""

from __future__ import annotations

import numpy as np
import pytest

from bokeh_model import InputError, Method, ParamSpec, create_method, is_method, list_methods, register_method
from bokeh_model.registry import check_depth_array, check_image_array, registered_methods, unregister_method


class _Half(Method):
    """Test-only: the photo at half brightness."""

    name = "registry_test_half"
    description = "test-only"
    needs_depth = False

    def render(self, image, depth):
        return image * 0.5


class _Dup(_Half):
    name = "pynet"


def test_pynet_is_registered_and_listed() -> None:
    assert "pynet" in list_methods()
    assert is_method("pynet")
    assert list_methods("pyn*") == ["pynet"]
    assert not is_method("no_such_method")


def test_unknown_method_suggests_close_names() -> None:
    with pytest.raises(KeyError, match="Did you mean.*pynet"):
        create_method("pynett")


def test_duplicate_registration_is_an_error() -> None:
    with pytest.raises(ValueError, match="already has an entry named 'pynet'"):

        @register_method("pynet")
        class Duplicate(Method):  # pragma: no cover - never instantiated
            pass


def test_create_method_drops_none_kwargs() -> None:
    method = create_method("pynet", weights=None, device=None)
    assert method.device == "auto"  # the default survived the None


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        (ParamSpec("k", "float", 1.0, min=0, max=10), "2.5", 2.5),
        (ParamSpec("k", "int", 1, min=0, max=10), 3.0, 3),
        (ParamSpec("k", "bool", False), "yes", True),
        (ParamSpec("k", "choice", "a", choices=("a", "b")), "b", "b"),
        (ParamSpec("k", "choice", 0, choices=(0, 5)), "5", 5),
        (ParamSpec("k", "float", 1.0), None, 1.0),
    ],
)
def test_param_spec_converts_values(spec: ParamSpec, value: object, expected: object) -> None:
    assert spec.validate(value) == expected


@pytest.mark.parametrize(
    ("spec", "value", "message"),
    [
        (ParamSpec("strength", "float", 1.0, min=0, max=10), 11, r"outside the allowed range \[0, 10\]"),
        (ParamSpec("strength", "float", 1.0), "abc", "must be a number"),
        (ParamSpec("strength", "float", 1.0), float("nan"), "must be finite"),
        (ParamSpec("blades", "int", 0), 2.5, "whole number"),
        (ParamSpec("shape", "choice", "a", choices=("a", "b")), "c", r"one of \['a', 'b'\]"),
        (ParamSpec("flag", "bool", False), "maybe", "true or false"),
    ],
)
def test_param_spec_rejects_bad_values_naming_them(spec: ParamSpec, value: object, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        spec.validate(value)
    assert spec.name in str(info.value)


def test_unknown_parameter_names_the_allowed_ones() -> None:
    with pytest.raises(InputError, match="does not take \\['nope'\\].*max_side"):
        create_method("pynet").validate_params({"nope": 1})


def test_array_checks() -> None:
    with pytest.raises(InputError, match=r"shape \(H, W, 3\)"):
        check_image_array(np.zeros((4, 4)))
    with pytest.raises(InputError, match="NaN"):
        check_image_array(np.full((2, 2, 3), np.nan))
    with pytest.raises(InputError, match="NaN or infinite"):
        check_depth_array(np.array([[0.0, np.inf]]))
    resized = check_depth_array(np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4), (6, 8))
    assert resized.shape == (6, 8) and 0.0 <= resized.min() <= resized.max() <= 1.0


def test_registered_methods_exist_only_inside_the_block() -> None:
    with registered_methods(_Half):
        assert "registry_test_half" in list_methods()
        out = create_method("registry_test_half")(np.ones((2, 3, 3), np.float32))
        assert out.shape == (2, 3, 3) and float(out.max()) == 0.5
    assert not is_method("registry_test_half")
    with pytest.raises(RuntimeError, match="boom"), registered_methods(_Half):
        raise RuntimeError("boom")
    assert not is_method("registry_test_half")  # removed on an error too


def test_a_failed_registration_leaves_nothing_behind() -> None:
    before = list_methods()
    with pytest.raises(ValueError, match="already has an entry named 'pynet'"), registered_methods(_Half, _Dup):
        pass  # pragma: no cover - never reached
    assert list_methods() == before and is_method("pynet")


def test_unregister_removes_aliases_and_refuses_unknown_names() -> None:
    register_method(aliases=("registry_test_alias",))(_Half)
    assert is_method("registry_test_alias")
    unregister_method("registry_test_alias")  # by alias: the method and all its aliases go
    assert not is_method("registry_test_half") and not is_method("registry_test_alias")
    with pytest.raises(KeyError, match="unknown method"):
        unregister_method("registry_test_half")


def test_temporary_methods_fixture(temporary_methods) -> None:
    temporary_methods(_Half)
    assert is_method("registry_test_half")  # removed after this test by the fixture


def test_concurrent_first_lookups_all_see_every_builtin_method() -> None:
    """Threads of a fresh server that look methods up at once never see a half-filled registry."""
    import subprocess
    import sys

    code = (
        "import threading\n"
        "from bokeh_model.registry import list_methods\n"
        "seen = []\n"
        "threads = [threading.Thread(target=lambda: seen.append(tuple(list_methods()))) for _ in range(8)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "print(len(set(seen)), len(seen[0]) if seen else 0, 'pynet' in seen[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    distinct, count, has_pynet = out.stdout.split()
    assert distinct == "1" and int(count) >= 4 and has_pynet == "True"
