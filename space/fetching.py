"""Background fetch of missing models for the Space, and ZeroGPU support.

On a Hugging Face Space (``SPACE_ID`` is set) or with ``BOKEH_FETCH_MODELS=1``, the app starts serving at once
and a daemon thread fetches what is missing: the default depth model, PyNET-Bokeh (the authors' zip, converted into
the default weights folder), the default variant of every method with published weights (Bokehlicious, ...: their
``method: NAME`` status card shows the progress), then the other depth models a visitor can pick (the depth models
are normally already there through the README's ``preload_from_hub``). The Status
tab reads :func:`fetch_snapshot` for its progress cards, and every request re-checks availability, so PyNET and
the depth model appear when ready without a restart. ``BOKEH_FETCH_MODELS=0`` turns it off on a Space.

:func:`on_gpu` wraps GPU work in ``spaces.GPU`` when the ``spaces`` package is installed (ZeroGPU hardware
allocates a GPU only inside such calls); elsewhere it returns the function unchanged.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from bokeh_model.depth import depth_model_status
from bokeh_model.pynet import PYNET_WEIGHTS_ENV, weights_status

from .config import SpaceSettings

__all__ = [
    "FETCH_ENV",
    "FetchState",
    "background_fetch_enabled",
    "fetch_snapshot",
    "on_gpu",
    "start_background_fetch",
]

FETCH_ENV = "BOKEH_FETCH_MODELS"
log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


def on_gpu(function: F) -> F:
    """``spaces.GPU(function)`` where the ``spaces`` package exists (a no-op off ZeroGPU), else ``function``."""
    try:
        import spaces
    except ImportError:  # not on a Space and not installed: nothing to allocate
        return function
    return spaces.GPU(function)  # type: ignore[no-any-return]


def background_fetch_enabled() -> bool:
    """On a Space (``SPACE_ID``) unless ``BOKEH_FETCH_MODELS=0``; elsewhere only with ``BOKEH_FETCH_MODELS=1``."""
    flag = os.environ.get(FETCH_ENV, "").strip().lower()
    if flag in {"0", "false", "no", "off"}:
        return False
    return flag in {"1", "true", "yes", "on"} or bool(os.environ.get("SPACE_ID", "").strip())


@dataclass
class FetchState:
    """One item of the background fetch, as the Status tab shows it."""

    item: str  # "PyNET-Bokeh weights", "Depth model"
    state: str = "waiting"  # waiting, downloading, converting, ready, failed
    detail: str = ""
    done: int = 0
    total: int | None = None
    updated: float = 0.0

    @property
    def fraction(self) -> float | None:
        return None if not self.total else min(1.0, self.done / self.total)


_LOCK = threading.Lock()
_STATES: dict[str, FetchState] = {}
_THREAD: threading.Thread | None = None


def _set(item: str, **changes: Any) -> None:
    with _LOCK:
        state = _STATES.setdefault(item, FetchState(item))
        for key, value in changes.items():
            setattr(state, key, value)
        state.updated = time.time()


def fetch_snapshot() -> list[dict[str, Any]]:
    """The background fetch's items (empty when none was started), with ``fraction`` done where known."""
    with _LOCK:
        return [dict(asdict(state), fraction=state.fraction) for state in _STATES.values()]


def _progress(item: str) -> Callable[[str, int, int | None], None]:
    last = [0.0]

    def report(label: str, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.25 or (total is not None and done >= total):  # no lock storm on fast links
            last[0] = now
            _set(item, state="downloading", done=done, total=total)

    return report


def _run(settings: SpaceSettings) -> None:
    from bokeh_model.fetch import FetchError, fetch_depth, fetch_pynet

    jobs: list[tuple[str, Callable[[], Any]]] = []

    def depth_job(model_id: str) -> tuple[str, Callable[[], Any]]:
        name = settings.depth_component(model_id)
        return name, lambda: fetch_depth(model_id, callback=_progress(name))

    depth_jobs = [depth_job(m) for m in settings.depth_models if not depth_model_status(m)[0]]
    # The default depth model first, then PyNET, then the depth models a visitor may pick instead.
    jobs += [job for job in depth_jobs if job[0] == "Depth model"]
    # Only the default folder is filled: weights configured elsewhere are the operator's business.
    if not settings.pynet_weights and not os.environ.get(PYNET_WEIGHTS_ENV) and not weights_status()[0]:
        item = "PyNET-Bokeh weights"

        def pynet() -> Any:
            return fetch_pynet(
                progress=False,
                callback=_progress(item),
                log=lambda line: _set(item, state="converting" if line.startswith("converting") else "downloading"),
            )

        jobs.append((item, pynet))
    from bokeh_model.method_weights import fetch_method_weights, installed_weights, weights_spec_names

    for method in weights_spec_names():
        if installed_weights(method) is None:  # the default variant; others with `fetch METHOD --variant V`
            card = f"method: {method}"  # the Status tab's row of that method
            jobs.append((card, lambda m=method, c=card: fetch_method_weights(m, progress=False, callback=_progress(c))))
    jobs += [job for job in depth_jobs if job[0] != "Depth model"]
    for item, _ in jobs:
        _set(item, state="waiting", detail="queued")
    for item, job in jobs:
        _set(item, state="downloading", detail="")
        try:
            result = job()
        except FetchError as exc:
            _set(item, state="failed", detail=str(exc))
            log.warning("background fetch of %s failed: %s", item, exc)  # one line: an expected failure
            continue
        except Exception as exc:  # noqa: BLE001 - the app keeps serving; the card shows what went wrong
            _set(item, state="failed", detail=f"{type(exc).__name__}: {exc}")
            log.exception("background fetch of %s failed", item)  # unexpected: keep the traceback
            continue
        _set(item, state="ready", detail=f"{result.status} at {result.path}")


def start_background_fetch(settings: SpaceSettings, *, force: bool = False) -> threading.Thread | None:
    """Start the fetch thread once per process (when enabled, or ``force``); returns it, or ``None``."""
    global _THREAD
    if not (force or background_fetch_enabled()):
        return None
    with _LOCK:
        if _THREAD is not None:
            return _THREAD
        _THREAD = threading.Thread(target=_run, args=(settings,), name="fetch-models", daemon=True)
    _THREAD.start()
    return _THREAD
