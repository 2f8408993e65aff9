"""bokeh_model: PyNET-Bokeh in PyTorch and the competing bokeh renderers behind one registry.

>>> from bokeh_model import PyNET, create_method, list_methods
>>> sum(p.numel() for p in PyNET().parameters())
47551791
"""

from __future__ import annotations

from . import methods as _methods  # noqa: F401  (fills the registry)
from . import pynet as _pynet  # noqa: F401  (registers "pynet")
from .errors import BokehError, InputError, ModelUnavailableError
from .images import array_to_pil, load_depth, load_image, save_depth, save_image
from .modeling_pynet import LEVEL_SCALES, PyNET
from .pynet import load_pynet, predict, run_pynet, to_pynet_depth
from .registry import Method, ParamSpec, create_method, is_method, list_methods, register_method

__all__ = [
    "LEVEL_SCALES",
    "BokehError",
    "InputError",
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
