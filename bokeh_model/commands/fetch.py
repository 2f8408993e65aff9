"""``python -m bokeh_model fetch {pynet,depth,lpips,METHOD,all}``: download the models this project uses, on request.

METHOD is any registered method that declares published weights (:mod:`bokeh_model.method_weights`), e.g.
``bokehlicious`` or ``bokehme``; ``all`` fetches PyNET, depth, LPIPS and every such method's default variant."""

from __future__ import annotations

import argparse
import sys

HELP = (
    "Download what is missing: pynet (the authors' PyNET-Bokeh checkpoint, converted and installed in "
    "~/.cache/bokeh_model/pynet-bokeh), depth (a depth model, into the Hugging Face cache), lpips (the AlexNet "
    "trunk, into $TORCH_HOME/hub/checkpoints), a method with published weights (bokehlicious, bokehme: into "
    "~/.cache/bokeh_model/METHOD/VARIANT), or all. Resumable, verified; exit code 3 when something cannot be "
    "fetched (offline, unreachable, corrupt)."
)
ITEMS = ("pynet", "depth", "lpips")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "items", nargs="+", metavar="ITEM", help="pynet, depth, lpips, a method with published weights, or all"
    )
    parser.add_argument(
        "--url",
        help="where to download from instead of the default: the PyNET-Bokeh zip (default: $BOKEH_PYNET_URL, else "
        "the authors' URL), or a method's checkpoint file (a folder URL for a method with several files); a local "
        "file or folder path works too, also offline (a copy carried over from another machine)",
    )
    parser.add_argument("--variant", help="which published checkpoint of a method (default: the method's default)")
    parser.add_argument(
        "--depth-model",
        action="append",
        metavar="NAME_OR_ID",
        help="depth model: a short name (dpt-hybrid, depth-anything-v2-small), a hub id, or `all` (every known one); "
        "repeat the flag or separate with commas to fetch several (default: $BOKEH_DEPTH_MODEL, else dpt-hybrid)",
    )
    parser.add_argument(
        "--dest",
        help="install folder of the one item fetched (default: ~/.cache/bokeh_model/pynet-bokeh for PyNET, "
        "~/.cache/bokeh_model/METHOD/VARIANT for a method; $BOKEH_CACHE moves both)",
    )
    parser.add_argument("--overwrite", action="store_true", help="download (and convert) again")
    parser.add_argument("--keep-zip", action="store_true", help="keep the PyNET zip in <cache>/downloads")
    parser.add_argument(
        "--offline",
        action="store_true",
        help="download nothing; report what is missing (also HF_HUB_OFFLINE=1 or BOKEH_OFFLINE=1)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument(
        "--optional",
        action="store_true",
        help="what cannot be fetched is a note, not an error: exit 0 (used by `make demo`, which also runs offline)",
    )


def depth_models_asked(values: list[str] | None) -> list[str | None]:
    """``--depth-model`` values -> the models to fetch, each once (``[None]`` = the default model)."""
    from ..depth_models import depth_model_names, resolve_depth_model

    names = [part.strip() for value in values or [] for part in value.split(",") if part.strip()]
    if not names:
        return [None]
    expanded = [n for name in names for n in (depth_model_names() if name.lower() == "all" else [name])]
    return list({resolve_depth_model(name): name for name in expanded}.values())


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..fetch import PYNET_ATTRIBUTION, PYNET_LICENSE, FetchError, fetch_depth, fetch_lpips, fetch_pynet
    from ..method_weights import fetch_method_weights, get_weights_spec, weights_spec_names

    methods = weights_spec_names()
    unknown = [item for item in args.items if item not in (*ITEMS, *methods, "all")]
    if unknown:
        known = ", ".join((*ITEMS, *methods, "all"))
        raise InputError(f"cannot fetch {', '.join(map(repr, unknown))}: known items are {known}")
    items = (*ITEMS, *methods) if "all" in args.items else tuple(dict.fromkeys(args.items))
    method_items = [item for item in items if item in methods]
    if args.variant and len(method_items) != 1:
        raise InputError("--variant needs exactly one method to fetch (e.g. `fetch bokehlicious --variant small`)")
    # --url and --dest name one download: PyNET's zip or one method's files (depth and LPIPS have their own).
    targets = [item for item in items if item not in ("depth", "lpips")]
    for flag, value in (("--url", args.url), ("--dest", args.dest)):
        if value and len(targets) != 1:
            raise InputError(f"{flag} needs exactly one of pynet or a method among the items (got {len(targets)})")
    offline = True if args.offline else None
    progress = not args.no_progress
    failed = 0
    jobs = [(i, m) for i in items for m in (depth_models_asked(args.depth_model) if i == "depth" else [None])]
    for item, depth_model in jobs:
        try:
            if item == "pynet":
                print(PYNET_LICENSE)
                print(PYNET_ATTRIBUTION)
                result = fetch_pynet(
                    args.url,
                    dest=args.dest,
                    overwrite=args.overwrite,
                    offline=offline,
                    keep_zip=args.keep_zip,
                    progress=progress,
                    log=lambda line: print(line, file=sys.stderr),
                )
            elif item in method_items:
                spec = get_weights_spec(item)
                print(f"{item}: licence: {spec.license}")
                print(f"{item}: cite: {spec.citation}")
                result = fetch_method_weights(
                    item,
                    args.variant,
                    args.url,
                    dest=args.dest,
                    overwrite=args.overwrite,
                    offline=offline,
                    progress=progress,
                    log=lambda line: print(line, file=sys.stderr),
                )
            elif item == "depth":
                result = fetch_depth(depth_model, offline=offline)
            else:
                result = fetch_lpips(offline=offline, progress=progress)
        except FetchError as exc:
            # One readable line per item; the others are still tried.
            message = str(exc)
            line = message if message.lower().startswith(item) else f"{item}: {message}"
            print(f"{'note' if args.optional else 'error'}: {line}", file=sys.stderr)
            failed += 1
            continue
        print("\n".join(result.lines()))
    return 3 if failed and not args.optional else 0
