"""``python -m bokeh_model list``: registered methods, their parameters and whether they can run here."""

from __future__ import annotations

import argparse
import json

from ..registry import create_method, list_methods

NAME = "list"
HELP = "List registered bokeh methods, their parameters and availability."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(args: argparse.Namespace) -> int:
    rows = []
    for name in list_methods():
        method = create_method(name)
        ok, reason = method.availability()
        rows.append(
            {
                "name": name,
                "description": method.description,
                "available": ok,
                "reason": reason,
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
        for p in row["params"]:
            bounds = (
                f" one of {p['choices']}"
                if p["choices"]
                else (f" in [{p['min']}, {p['max']}]" if p["min"] is not None else "")
            )
            print(f"    --{p['name'].replace('_', '-')} ({p['kind']}, default {p['default']}{bounds}): {p['help']}")
    return 0
