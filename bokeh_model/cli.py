"""Command line: ``python -m bokeh_model {render,list,...} --help``.

Each sub-command lives in its own module under ``bokeh_model/commands/`` and exposes ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``; this file only discovers and dispatches them.
Exit codes (:mod:`bokeh_model.errors`): 0 success, 1 unexpected failure, 2 bad input or usage, 3 a model or
weights are missing.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Sequence

from . import commands
from .errors import program_name, run_reporting_errors

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program_name("python -m bokeh_model"),
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_reporting_errors(lambda: args._run(args))
