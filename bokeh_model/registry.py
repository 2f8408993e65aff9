"""Method registry: every bokeh renderer (PyNET, lens blur, Gaussian baseline, ...) behind one interface.

Modelled on timm's ``register_model``/``create_model``: a method registers itself on import under a
lowercase snake_case name, and everything else (CLI, evaluation, app) creates it by name. Each method
declares its parameters as :class:`ParamSpec` objects, so app controls, CLI flags and validation
messages all come from one schema.

>>> from bokeh_model import create_method, list_methods
>>> "pynet" in list_methods()
True
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .errors import InputError
from .images import check_depth_array, check_image_array  # noqa: F401  (methods import them from here)

__all__ = [
    "Method",
    "ParamSpec",
    "create_method",
    "get_method_class",
    "is_method",
    "list_methods",
    "register_method",
    "registered_methods",
    "unregister_method",
]

ParamKind = Literal["float", "int", "bool", "choice", "str"]


@dataclass(frozen=True)
class ParamSpec:
    """One user-facing parameter of a method.

    Args:
        name: keyword name passed to the method (snake_case).
        kind: ``"float"``, ``"int"``, ``"bool"``, ``"choice"`` or ``"str"``.
        default: value used when the caller gives none (``None`` allowed for optional values).
        min: smallest allowed value for numbers (inclusive).
        max: largest allowed value for numbers (inclusive).
        step: suggested UI step for numbers.
        choices: allowed values for ``"choice"``.
        help: one-line description shown in the app and in ``--help``.
        label: short human label; defaults to the name with spaces.
    """

    name: str
    kind: ParamKind
    default: Any = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: tuple[Any, ...] = ()
    help: str = ""
    label: str = ""

    @property
    def display_label(self) -> str:
        return self.label or self.name.replace("_", " ")

    def validate(self, value: Any) -> Any:
        """Return ``value`` converted to this parameter's type, or raise :class:`InputError`."""
        if value is None:
            return self.default
        where = f"parameter {self.name!r}"
        if self.kind == "bool":
            if isinstance(value, str):
                lowered = value.strip().lower()
                if lowered in {"1", "true", "yes", "on"}:
                    return True
                if lowered in {"0", "false", "no", "off"}:
                    return False
                raise InputError(f"{where} must be true or false, got {value!r}")
            return bool(value)
        if self.kind == "choice":
            for choice in self.choices:
                if value == choice or str(value) == str(choice):
                    return choice
            raise InputError(f"{where} must be one of {list(self.choices)}, got {value!r}")
        if self.kind == "str":
            return str(value)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InputError(f"{where} must be a number, got {value!r}") from None
        if not np.isfinite(number):
            raise InputError(f"{where} must be finite, got {value!r}")
        if self.kind == "int":
            if number != int(number):
                raise InputError(f"{where} must be a whole number, got {value!r}")
            number = int(number)
        if (self.min is not None and number < self.min) or (self.max is not None and number > self.max):
            raise InputError(f"{where} = {value!r} is outside the allowed range [{self.min}, {self.max}]")
        return number


class Method:
    """Base class of a registered bokeh method.

    Conventions at this boundary: ``image`` is float32, shape (H, W, 3), RGB in [0, 1]; ``depth`` is
    float32, shape (H, W), relative inverse depth (disparity) in [0, 1] with near = 1, or ``None``.
    ``__call__`` returns float32 (H, W, 3) in [0, 1] at the size of ``image``.

    Subclasses set ``name``, ``description``, ``params`` and ``needs_depth`` and implement ``render``.
    """

    name: str = ""
    description: str = ""
    params: tuple[ParamSpec, ...] = ()
    needs_depth: bool = True

    def availability(self) -> tuple[bool, str]:
        """``(True, "")`` when the method can run here, else ``(False, reason and how to fix it)``."""
        return True, ""

    def requires_depth(self) -> bool:
        """Whether ``__call__`` needs a depth map (may depend on loaded weights)."""
        return self.needs_depth

    def param_spec(self, name: str) -> ParamSpec:
        for spec in self.params:
            if spec.name == name:
                return spec
        raise InputError(f"method {self.name!r} has no parameter {name!r}; it takes {self.param_names()}")

    def param_names(self) -> list[str]:
        return [spec.name for spec in self.params]

    def validate_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Fill defaults and check every value; unknown names raise :class:`InputError`."""
        unknown = sorted(set(params) - set(self.param_names()))
        if unknown:
            raise InputError(f"method {self.name!r} does not take {unknown}; its parameters are {self.param_names()}")
        return {spec.name: spec.validate(params.get(spec.name)) for spec in self.params}

    def __call__(self, image: np.ndarray, depth: np.ndarray | None = None, **params: Any) -> np.ndarray:
        image = check_image_array(image)
        if depth is not None:
            depth = check_depth_array(depth, image.shape[:2])
        elif self.requires_depth():
            raise InputError(f"method {self.name!r} needs a depth map; pass one or choose a depth model")
        values = self.validate_params(params)
        out = self.render(image, depth, **values)
        return np.clip(np.asarray(out, dtype=np.float32), 0.0, 1.0)

    def render(self, image: np.ndarray, depth: np.ndarray | None, **params: Any) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


_REGISTRY: dict[str, Callable[..., Method]] = {}
_ALIASES: dict[str, str] = {}
_BUILTINS_LOADED = False
# Re-entrant: the imports below register through this module. A thread that finds the loading under way waits for
# it instead of seeing a half-filled registry (concurrent first requests of a server once got no methods).
_BUILTINS_LOCK = threading.RLock()


def _load_builtin_methods() -> None:
    """Import the built-in methods (renderers and PyNET) on the first registry lookup, not at package import.

    Keeps ``import bokeh_model.errors`` (used by every CLI and the rater server) free of torch and OpenCV.
    """
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    with _BUILTINS_LOCK:
        if _BUILTINS_LOADED:
            return
        import importlib

        importlib.import_module(f"{__package__}.methods")
        importlib.import_module(f"{__package__}.pynet")
        _BUILTINS_LOADED = True


def register_method(
    name: str | None = None, *, aliases: tuple[str, ...] = ()
) -> Callable[[Callable[..., Method]], Callable[..., Method]]:
    """Decorator registering a method class or factory under ``name`` (default: its ``name`` attribute)."""

    def decorator(factory: Callable[..., Method]) -> Callable[..., Method]:
        _load_builtin_methods()  # a name clash with a built-in method is found whatever was imported first
        key = name or getattr(factory, "name", "") or factory.__name__
        for entry in (key, *aliases):
            if entry in _REGISTRY or entry in _ALIASES:
                raise ValueError(f"method registry already has an entry named {entry!r}")
        _REGISTRY[key] = factory
        for alias in aliases:
            _ALIASES[alias] = key
        return factory

    return decorator


def unregister_method(name: str) -> None:
    """Remove a registered method (by its name or an alias) together with all its aliases.

    For plugins and tests that register a method for a while; see :func:`registered_methods`.

    Raises:
        KeyError: unknown name, with close matches.
    """
    key = _resolve(name)
    del _REGISTRY[key]
    for alias in [alias for alias, target in _ALIASES.items() if target == key]:
        del _ALIASES[alias]


@contextlib.contextmanager
def registered_methods(*factories: Callable[..., Method]) -> Iterator[None]:
    """Register method classes (under their ``name`` attribute) for the duration of a ``with`` block.

    >>> class Dim(Method):
    ...     name, needs_depth = "doc_dim", False
    ...     def render(self, image, depth):
    ...         return image * 0.5
    >>> with registered_methods(Dim):
    ...     is_method("doc_dim")
    True
    >>> is_method("doc_dim")
    False
    """
    names: list[str] = []
    try:
        for factory in factories:
            register_method()(factory)
            names.append(getattr(factory, "name", "") or factory.__name__)
        yield
    finally:
        for name in reversed(names):
            unregister_method(name)


def _resolve(name: str) -> str:
    _load_builtin_methods()
    key = _ALIASES.get(name, name)
    if key not in _REGISTRY:
        known = sorted(_REGISTRY) + sorted(_ALIASES)
        close = difflib.get_close_matches(name, known, n=5)
        hint = f" Did you mean {close}?" if close else ""
        raise KeyError(f"unknown method {name!r}.{hint} Known methods: {sorted(_REGISTRY)}")
    return key


def is_method(name: str) -> bool:
    _load_builtin_methods()
    return _ALIASES.get(name, name) in _REGISTRY


def list_methods(pattern: str = "*") -> list[str]:
    """Registered method names matching an fnmatch ``pattern``, sorted."""
    _load_builtin_methods()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def get_method_class(name: str) -> Callable[..., Method]:
    return _REGISTRY[_resolve(name)]


def create_method(name: str, **kwargs: Any) -> Method:
    """Create a registered method by name; keyword arguments set to ``None`` are dropped.

    Raises:
        KeyError: unknown name, with close matches.
    """
    factory = _REGISTRY[_resolve(name)]
    return factory(**{k: v for k, v in kwargs.items() if v is not None})
