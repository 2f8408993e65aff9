"""``python -m bokeh_model list``: registered methods, their parameters and whether they can run here."""

from __future__ import annotations

import argparse
import json

from ..method_weights import get_weights_spec, weights_spec_names
from ..registry import create_method, list_methods

NAME = "list"
HELP = "List registered bokeh methods, their parameters and availability."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(args: argparse.Namespace) -> int:
    rows = []
    published = set(weights_spec_names())
    for name in list_methods():
        method = create_method(name)
        ok, reason = method.availability()
        spec = get_weights_spec(name) if name in published else None
        rows.append(
            {
                "name": name,
                "description": method.description,
                "available": ok,
                "reason": reason,
                # methods with published weights: where they come from and the terms they come with
                "source": spec.source if spec else None,
                "license": spec.license if spec else None,
                "citation": spec.citation if spec else None,
                "params": [
                    {
                        "name": p.name,
                        "kind": p.kind,
                        "default": p.default,
                        "min": p.min,
                        "max": p.max,
                        "choices": list(p.choices),
                        "help": p.help,
                    }
                    for p in method.params
                ],
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        state = "available" if row["available"] else "UNAVAILABLE"
        print(f"{row['name']}: {row['description']} [{state}]")
        if not row["available"]:
            print(f"    {row['reason']}")
        if row["license"]:
            print(f"    weights: {row['source']}; licence: {row['license']}")
            print(f"    cite: {row['citation']}")
        for p in row["params"]:
            bounds = (
                f" one of {p['choices']}"
                if p["choices"]
                else (f" in [{p['min']}, {p['max']}]" if p["min"] is not None else "")
            )
            print(f"    --{p['name'].replace('_', '-')} ({p['kind']}, default {p['default']}{bounds}): {p['help']}")
    return 0
