"""Registered bokeh methods. Importing this package fills the registry (one module per method)."""

from __future__ import annotations

import importlib
import pkgutil

__all__: list[str] = []

# Import every sibling module so that its @register_method decorators run (timm-style).
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")
