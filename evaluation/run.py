#!/usr/bin/env python
"""``python evaluation/run.py``: score bokeh methods on EBB! (or the synthetic sample) and write Table 1.

Examples::

    python evaluation/run.py                                   # synthetic sample (NOT EBB!), every available method
    python evaluation/run.py --dataset runs/ebb_hf --split val294 --methods pynet lens --weights path/to/pynet
    python evaluation/run.py --dataset ID --methods lens --param lens.strength=12 --predictions mynet=preds/
    accelerate launch --num_processes 2 evaluation/run.py --dataset ID --out runs/val294   # sharded, rank 0 merges

Outputs in ``--out``: ``table.md``, ``table.csv``, ``per_image.csv``, ``run.json``, ``leaderboard.json``,
``report.html``, ``predictions/<method>/<id>.png`` (+ ``.json`` sidecars with the runtime), ``targets/<id>.<ext>``
and ``inputs/<id>.<ext>`` (original bytes; not with ``--no-pair-files``). ``--profile pynet,dmshn`` scores both
profiles in one pass (each image decoded once) and writes each profile's ``run.json`` and tables into
``--out/<profile>/``. Predictions already on disk with the same method settings, input
bytes and depth source are reused, so an interrupted run resumes. Methods that cannot run here (PyNET without
weights, renderers without depth maps or ``--depth-model``) are listed as not scored, with the reason; named in
``--methods``, they are an error (exit 3) found before anything is written. Exit codes: 0 ok, 1 failure,
2 bad input, 3 missing model, weights, depth, LPIPS trunk (with --require-lpips) or dataset.

From Python, :func:`evaluate_predictions` scores a folder of predictions and returns the run record;
:func:`run_evaluation` runs an :class:`~evaluation.config.EvalConfig` (every option below as a field).
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import sys
from collections.abc import Sequence

if __package__ in (None, "") and importlib.util.find_spec("bokeh_model") is None:
    # Run by path from a checkout that was never installed: say how to fix it instead of a ModuleNotFoundError.
    sys.exit("error: the bokeh packages are not installed in this Python; run `pip install -e .` in the checkout")

from bokeh_model.errors import program_name, run_reporting_errors  # noqa: E402
from evaluation.config import EvalConfig  # noqa: E402
from evaluation.metrics import PROFILES  # noqa: E402
from evaluation.runner import evaluate_predictions, run_evaluation  # noqa: E402
from evaluation.scoring import PSNR_CAP_DB  # noqa: E402

__all__ = [
    "PSNR_CAP_DB",
    "EvalConfig",
    "build_parser",
    "evaluate_predictions",
    "main",
    "run_evaluation",
]

_DEFAULTS = EvalConfig()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program_name("python evaluation/run.py"),
        description="Score bokeh methods with PSNR / SSIM / LPIPS and runtime; write Table 1 style leaderboards.",
        epilog="Exit codes: 0 ok, 1 failure, 2 bad input, 3 missing model / weights / LPIPS trunk / dataset.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset",
        help="hub id, folder (hub layout or save_to_disk) or .parquet file; "
        "default: the built-in synthetic sample (NOT EBB!)",
    )
    data.add_argument(
        "--split",
        default=None,
        help="split to evaluate (default: val294 = EBB! ids 4400-4693; a local dataset without val294 but with "
        "a `val` split, such as one built by `python -m evaluation.pairs`, uses `val`)",
    )
    data.add_argument("--streaming", action="store_true", help="stream the rows (large datasets)")
    data.add_argument("--limit", type=int, default=_DEFAULTS.limit, help="evaluate only the first N images (0 = all)")
    data.add_argument(
        "--synthetic-scenes", type=int, default=_DEFAULTS.synthetic_scenes, help="synthetic sample: number of scenes"
    )
    data.add_argument(
        "--synthetic-size", default=_DEFAULTS.synthetic_size, help="synthetic sample: WIDTHxHEIGHT (default 256x192)"
    )
    methods = parser.add_argument_group("methods")
    methods.add_argument(
        "--methods",
        nargs="+",
        metavar="[LABEL=]NAME",
        help="registered methods to run (default: every available one; 'none' for only --predictions)",
    )
    methods.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="LABEL.KEY=VALUE",
        help="a render parameter of a method, e.g. lens.strength=12 (repeatable)",
    )
    methods.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="LABEL.KEY=VALUE",
        help="a constructor option of a method, e.g. pynet.precision=bf16 (repeatable)",
    )
    methods.add_argument(
        "--weights",
        help="PyNET weights (save_pretrained folder or cached hub id; default: $BOKEH_PYNET_WEIGHTS, else "
        "~/.cache/bokeh_model/pynet-bokeh, filled by `python -m bokeh_model fetch pynet`)",
    )
    methods.add_argument(
        "--predictions",
        action="append",
        default=[],
        metavar="[LABEL=]DIR",
        help="predictions of a method we do not have, files named by id (repeatable)",
    )
    methods.add_argument(
        "--depth-model",
        help="depth model for methods that need depth when the dataset has no depth column: dpt-hybrid, "
        "depth-anything-v2-small, or a transformers folder or cached hub id (run.json names it)",
    )
    methods.add_argument("--device", default=_DEFAULTS.device, help="auto, cpu, cuda or cuda:N (default: auto)")
    methods.add_argument(
        "--warmup", type=int, default=_DEFAULTS.warmup, help="untimed warm-up calls per method (default 2)"
    )
    scoring = parser.add_argument_group("scoring")
    scoring.add_argument(
        "--profile",
        default=_DEFAULTS.profile,
        metavar="|".join(sorted(PROFILES)),
        help="metric profile: pynet (authors' protocol, default) or dmshn (published Val294 tables); several "
        "separated by commas (pynet,dmshn) are scored in one pass, each written to OUT/<profile>/",
    )
    scoring.add_argument("--no-lpips", action="store_true", help="skip LPIPS")
    scoring.add_argument(
        "--require-lpips",
        action="store_true",
        help="fail (exit 3) when the LPIPS AlexNet trunk is not in the torch hub cache",
    )
    scoring.add_argument(
        "--offline",
        action="store_true",
        help="never download (the LPIPS trunk is otherwise fetched on first use when online; also HF_HUB_OFFLINE=1)",
    )
    scoring.add_argument(
        "--allow-unofficial-lpips",
        action="store_true",
        help="score LPIPS with an AlexNet trunk whose SHA-256 is not torchvision's (recorded in run.json)",
    )
    parser.add_argument(
        "--no-pair-files",
        action="store_true",
        help="do not copy the targets and inputs into OUT (run.json names them by SHA-256; a study needs targets/)",
    )
    parser.add_argument(
        "--out",
        default=str(EvalConfig().out),  # read now: $BOKEH_RESULTS_DIR may be set after this module was imported
        help="output folder (default: $BOKEH_RESULTS_DIR, else runs/latest in the working directory)",
    )
    return parser


def config_from_argv(argv: Sequence[str] | None = None) -> EvalConfig:
    """The :class:`EvalConfig` of a command line (``None``: ``sys.argv[1:]``), with that command recorded."""
    args = build_parser().parse_args(argv)
    words = list(sys.argv) if argv is None else ["-m", "evaluation.run", *argv]
    return EvalConfig.from_args(args, command="python " + " ".join(shlex.quote(str(a)) for a in words))


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit code."""
    config = config_from_argv(argv)

    def evaluate() -> int:
        run_evaluation(config)
        return 0

    return run_reporting_errors(
        evaluate, interrupted="interrupted: predictions written so far are reused by the next run"
    )


if __name__ == "__main__":
    sys.exit(main())
