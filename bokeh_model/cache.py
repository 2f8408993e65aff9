"""Where the project caches what it downloads or compiles, outside the installed package.

:func:`bokeh_cache_dir` is the project's cache folder; :func:`use_user_numba_cache` points Numba's on-disk cache
of compiled kernels there. Numba otherwise writes ``__pycache__`` next to the module it compiles, i.e. into
``site-packages`` after a regular (non-editable) install, which may be read-only or shared between users.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["CACHE_ENV", "NUMBA_CACHE_ENV", "bokeh_cache_dir", "use_user_numba_cache"]

CACHE_ENV = "BOKEH_CACHE"
NUMBA_CACHE_ENV = "NUMBA_CACHE_DIR"


def bokeh_cache_dir() -> Path:
    """Where this project keeps what it downloads: ``$BOKEH_CACHE``, else ``$XDG_CACHE_HOME/bokeh_model``,
    else ``~/.cache/bokeh_model`` (the same place other libraries use for their caches)."""
    raw = os.environ.get(CACHE_ENV, "").strip()
    if raw:
        return Path(raw).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "bokeh_model"


def use_user_numba_cache() -> Path:
    """Make Numba cache compiled kernels in ``$NUMBA_CACHE_DIR`` when set, else ``<bokeh_cache_dir()>/numba``.

    Call it before the first ``@njit(cache=True)`` function is defined (Numba picks the folder then). Returns the
    folder.
    """
    folder = os.environ.get(NUMBA_CACHE_ENV, "").strip()
    if not folder:
        folder = str(bokeh_cache_dir() / "numba")
        os.environ[NUMBA_CACHE_ENV] = folder  # read by numba.core.config when numba is first imported
    # numba was imported before this call: its config was read already (a module still being imported by another
    # thread has no config yet; that import reads the environment variable set above)
    config = getattr(sys.modules.get("numba"), "config", None)
    if config is not None and getattr(config, "CACHE_DIR", "") != folder:
        config.CACHE_DIR = folder
    return Path(folder)
