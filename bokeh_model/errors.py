"""Errors, exit codes and command-line error reporting shared by every package of the project.

Every error says what is wrong and, where the user can fix it, how. The app turns these into on-screen
messages; every command line (``bokeh-model``, ``bokeh-eval``, ``bokeh-study``, ...) runs its action through
:func:`run_reporting_errors`, so an exit code means the same thing everywhere:

    0 ok · 1 unexpected failure · 2 bad input or usage · 3 a model, weights or data are missing · 130 interrupted
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_MISSING",
    "EXIT_OK",
    "BokehError",
    "InputError",
    "ModelUnavailableError",
    "program_name",
    "run_reporting_errors",
]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_MISSING = 3  # a model, weights, an LPIPS trunk or a dataset is not on this machine
EXIT_INTERRUPTED = 130


class BokehError(Exception):
    """Base class of every error this project raises on purpose."""


class InputError(BokehError, ValueError):
    """The caller gave something unusable: an unreadable image, a bad parameter, a NaN depth map."""


class ModelUnavailableError(BokehError, RuntimeError):
    """Weights or a model a method needs are not present on this machine.

    The message names what is missing and how to provide it (local folder, hub id, cache path).
    Nothing is ever downloaded behind the user's back and random weights are never substituted.
    """


def program_name(module_form: str) -> str:
    """The name a CLI's usage line shows: the console script it was started as (``bokeh-model``,
    ``bokeh-eval``, ...), else ``module_form`` (``python -m bokeh_model``)."""
    name = Path(sys.argv[0] if sys.argv else "").name
    name = name[: -len(".exe")] if name.lower().endswith(".exe") else name
    return name if name.startswith("bokeh-") else module_form


def run_reporting_errors(action: Callable[[], int | None], *, interrupted: str = "interrupted") -> int:
    """Run a command-line action and return its exit code; errors raised on purpose become one ``error:`` line.

    A :class:`ModelUnavailableError` exits 3, an :class:`InputError` 2, any other :class:`BokehError` 1 and
    Ctrl-C 130 (printing ``interrupted``). Unexpected exceptions propagate with their traceback.
    """
    try:
        return int(action() or EXIT_OK)
    except ModelUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_MISSING
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BokehError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return EXIT_INTERRUPTED
