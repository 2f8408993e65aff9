"""bokeh_model: PyNET-Bokeh in PyTorch and the competing bokeh renderers behind one registry.

>>> from bokeh_model import PyNET, create_method, list_methods
>>> sum(p.numel() for p in PyNET().parameters())
47551791
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Public names and the module that defines each. They are imported on first use (PEP 562), so that light
# modules such as bokeh_model.errors and bokeh_model.files load without torch; the registry imports the
# built-in methods on its first lookup.
_EXPORTS = {
    "BokehError": "errors",
    "InputError": "errors",
    "ModelUnavailableError": "errors",
    "array_to_pil": "images",
    "load_depth": "images",
    "load_image": "images",
    "save_depth": "images",
    "save_image": "images",
    "LEVEL_SCALES": "modeling_pynet",
    "PyNET": "modeling_pynet",
    "load_pynet": "pynet",
    "predict": "pynet",
    "run_pynet": "pynet",
    "to_pynet_depth": "pynet",
    "Method": "registry",
    "ParamSpec": "registry",
    "create_method": "registry",
    "is_method": "registry",
    "list_methods": "registry",
    "register_method": "registry",
}

__all__ = [
    "BokehError",
    "InputError",
    "LEVEL_SCALES",
    "Method",
    "ModelUnavailableError",
    "ParamSpec",
    "PyNET",
    "array_to_pil",
    "create_method",
    "is_method",
    "list_methods",
    "load_depth",
    "load_image",
    "load_pynet",
    "predict",
    "register_method",
    "run_pynet",
    "save_depth",
    "save_image",
    "to_pynet_depth",
]

if TYPE_CHECKING:  # what static tools and IDEs see
    from .errors import BokehError, InputError, ModelUnavailableError
    from .images import array_to_pil, load_depth, load_image, save_depth, save_image
    from .modeling_pynet import LEVEL_SCALES, PyNET
    from .pynet import load_pynet, predict, run_pynet, to_pynet_depth
    from .registry import Method, ParamSpec, create_method, is_method, list_methods, register_method


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
