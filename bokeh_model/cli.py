"""Command line: ``python -m bokeh_model {render,list,...} --help``.

Each sub-command lives in its own module under ``bokeh_model/commands/`` and exposes ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``; this file only discovers and dispatches them.
Exit codes: 0 success, 1 unexpected failure, 2 bad input or usage, 3 a model or weights are missing.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Callable, Sequence

from . import commands
from .errors import BokehError, InputError, ModelUnavailableError

__all__ = ["EXIT_BAD_INPUT", "EXIT_FAILURE", "EXIT_MISSING_MODEL", "build_parser", "main", "run_reporting_errors"]

EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_MISSING_MODEL = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bokeh_model",
        description="PyNET-Bokeh and competing bokeh renderers: render photos, estimate depth, manage weights.",
        epilog="Exit codes: 0 ok, 1 failure, 2 bad input, 3 missing model or weights.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda item: item.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        name = getattr(module, "NAME", info.name.replace("_", "-"))
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def run_reporting_errors(action: Callable[[], int | None], *, interrupted: str = "interrupted") -> int:
    """Run a command-line action: library errors become one ``error:`` line on stderr and an exit code.

    Shared by every CLI of the project (bokeh_model, evaluation) so that exit codes mean the same everywhere.
    """
    try:
        return int(action() or 0)
    except ModelUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_MISSING_MODEL
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BokehError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_reporting_errors(lambda: args._run(args))
