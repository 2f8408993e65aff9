"""What one evaluation run is asked to do: :class:`EvalConfig`, every option of ``python evaluation/run.py``.

The command line (:mod:`evaluation.run`) fills an :class:`EvalConfig` from its flags; Python callers build one
directly. :meth:`EvalConfig.validate` is the one place the options are checked (syntax and ranges; whether the
data, methods and models exist is checked by the runner before anything is written).

>>> config = EvalConfig(methods=["lens"], params=["lens.strength=12"], lpips=False, out="runs/lens")
>>> config.validate()
>>> config.param_assignments()
{'lens': {'strength': '12'}}
>>> config.to_argv()
['--methods', 'lens', '--param', 'lens.strength=12', '--no-lpips', '--out', 'runs/lens']
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

from bokeh_model.errors import InputError
from evaluation.metrics import DEFAULT_PROFILE, PROFILES
from evaluation.run_layout import DEFAULT_RUN, RESULTS_DIR_ENV

__all__ = ["EvalConfig", "parse_assignments"]


def parse_assignments(items: Sequence[str], flag: str) -> dict[str, dict[str, str]]:
    """``["lens.strength=12", ...]`` -> ``{"lens": {"strength": "12"}}``.

    Raises:
        InputError: an item is not ``LABEL.KEY=VALUE``.
    """
    result: dict[str, dict[str, str]] = {}
    for item in items:
        head, sep, value = item.partition("=")
        label, dot, key = head.partition(".")
        if not sep or not dot or not label or not key:
            raise InputError(f"{flag} {item!r} must look like LABEL.KEY=VALUE, e.g. lens.strength=12")
        result.setdefault(label, {})[key] = value
    return result


@dataclass
class EvalConfig:
    """Everything an evaluation run needs; the CLI flag of each field is named beside it.

    Attributes:
        dataset: ``--dataset``: hub id, folder (hub layout or ``save_to_disk``) or ``.parquet`` file; ``None``
            for the built-in synthetic sample (NOT EBB!).
        split: ``--split``; ``None``: ``val294``, or ``val`` for a local dataset that has no ``val294``.
        streaming: ``--streaming``: stream the rows (large datasets).
        limit: ``--limit``: evaluate only the first N images (0 = all).
        synthetic_scenes, synthetic_size: ``--synthetic-scenes``, ``--synthetic-size WIDTHxHEIGHT``.
        methods: ``--methods [LABEL=]NAME ...``; ``None``: every available registered method; ``["none"]``:
            only ``predictions``.
        params, options: ``--param`` / ``--option`` ``LABEL.KEY=VALUE`` (render parameters / constructor options).
        weights: ``--weights``: PyNET weights folder or cached hub id.
        predictions: ``--predictions [LABEL=]DIR``: folders of predictions named by id.
        depth_model: ``--depth-model``: depth model for methods that need depth when the data has none.
        device: ``--device``: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        warmup: ``--warmup``: untimed warm-up calls per method.
        profile: ``--profile``: metric profile (``pynet`` or ``dmshn``), or several separated by commas
            (``pynet,dmshn``), scored in one pass; each then gets its own folder in ``out``.
        lpips: ``False`` for ``--no-lpips``; require_lpips: ``--require-lpips`` (exit 3 without the trunk).
        offline: ``--offline``: never download (the LPIPS trunk is otherwise fetched on first use).
        allow_unofficial_lpips: ``--allow-unofficial-lpips``.
        pair_files: ``False`` for ``--no-pair-files``: do not copy the targets' and inputs' original bytes into
            ``out`` (``run.json`` names every file by SHA-256 either way; a user study needs ``targets/``).
        out: ``--out``: the run folder (layout: :mod:`evaluation.run_layout`).
        command: the command line recorded in ``run.json``; ``None``: ``python -m evaluation.run`` with
            :meth:`to_argv`.
    """

    dataset: str | None = None
    split: str | None = None
    streaming: bool = False
    limit: int = 0
    synthetic_scenes: int = 8
    synthetic_size: str = "256x192"
    methods: list[str] | None = None
    params: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)
    weights: str | None = None
    predictions: list[str] = field(default_factory=list)
    depth_model: str | None = None
    device: str = "auto"
    warmup: int = 2
    profile: str = DEFAULT_PROFILE
    lpips: bool = True
    require_lpips: bool = False
    offline: bool = False
    allow_unofficial_lpips: bool = False
    pair_files: bool = True
    out: str | os.PathLike = field(default_factory=lambda: os.environ.get(RESULTS_DIR_ENV) or DEFAULT_RUN)
    command: str | None = None

    def validate(self) -> None:
        """Raise :class:`InputError` naming the first bad option."""
        self.synthetic_dims()
        self.param_assignments()
        self.option_assignments()
        self.profile_names()
        if self.limit < 0:
            raise InputError(f"--limit must be >= 0 (0 = all), got {self.limit}")

    def profile_names(self) -> list[str]:
        """The requested profiles in order: ``"pynet,dmshn"`` -> ``["pynet", "dmshn"]``.

        Raises:
            InputError: an unknown or repeated profile, or none.
        """
        names = [name.strip() for name in str(self.profile).split(",") if name.strip()]
        if not names:
            raise InputError(f"--profile names no metric profile; choose from {sorted(PROFILES)}")
        for name in names:
            if name not in PROFILES:
                raise InputError(f"unknown metric profile {name!r}; choose one of {sorted(PROFILES)}")
        if len(set(names)) != len(names):
            raise InputError(f"--profile {self.profile!r} names a profile twice")
        return names

    def synthetic_dims(self) -> tuple[int, int]:
        """``(width, height)`` of ``synthetic_size``.

        Raises:
            InputError: not ``WIDTHxHEIGHT``.
        """
        try:
            width, height = (int(v) for v in self.synthetic_size.lower().split("x"))
        except ValueError:
            raise InputError(f"--synthetic-size must look like 256x192, got {self.synthetic_size!r}") from None
        return width, height

    def param_assignments(self) -> dict[str, dict[str, str]]:
        """``params`` by label: ``{"lens": {"strength": "12"}}``."""
        return parse_assignments(self.params, "--param")

    def option_assignments(self) -> dict[str, dict[str, str]]:
        """``options`` by label: ``{"pynet": {"precision": "bf16"}}``."""
        return parse_assignments(self.options, "--option")

    @classmethod
    def from_args(cls, args: argparse.Namespace, *, command: str | None = None) -> EvalConfig:
        """The config of parsed command-line ``args`` (the parser of :mod:`evaluation.run`)."""
        return cls(
            dataset=args.dataset,
            split=args.split,
            streaming=args.streaming,
            limit=args.limit,
            synthetic_scenes=args.synthetic_scenes,
            synthetic_size=args.synthetic_size,
            methods=args.methods,
            params=list(args.param),
            options=list(args.option),
            weights=args.weights,
            predictions=list(args.predictions),
            depth_model=args.depth_model,
            device=args.device,
            warmup=args.warmup,
            profile=args.profile,
            lpips=not args.no_lpips,
            require_lpips=args.require_lpips,
            offline=args.offline,
            allow_unofficial_lpips=args.allow_unofficial_lpips,
            pair_files=not args.no_pair_files,
            out=args.out,
            command=command,
        )

    def to_argv(self) -> list[str]:
        """The command-line flags that give this config (options left at their defaults are omitted)."""
        argv: list[str] = []
        for name, flag in _VALUE_FLAGS:
            value = getattr(self, name)
            if value is not None and value != _DEFAULTS[name]:
                argv += [flag, os.fspath(value) if isinstance(value, os.PathLike) else str(value)]
            if name == "split" and self.streaming:
                argv.append("--streaming")
        if self.methods is not None:
            argv += ["--methods", *self.methods]
        for flag, items in (("--param", self.params), ("--option", self.options), ("--predictions", self.predictions)):
            for item in items:
                argv += [flag, item]
        for name, flag in (("require_lpips", "--require-lpips"), ("offline", "--offline")):
            if getattr(self, name):
                argv.append(flag)
        if not self.lpips:
            argv.append("--no-lpips")
        if self.allow_unofficial_lpips:
            argv.append("--allow-unofficial-lpips")
        if not self.pair_files:
            argv.append("--no-pair-files")
        argv += ["--out", os.fspath(self.out)]
        return argv


# Options that take a value, in the order the command line shows them (``out`` is always written last).
_VALUE_FLAGS = (
    ("dataset", "--dataset"),
    ("split", "--split"),
    ("limit", "--limit"),
    ("synthetic_scenes", "--synthetic-scenes"),
    ("synthetic_size", "--synthetic-size"),
    ("weights", "--weights"),
    ("depth_model", "--depth-model"),
    ("device", "--device"),
    ("warmup", "--warmup"),
    ("profile", "--profile"),
)
_DEFAULTS = {f.name: f.default for f in fields(EvalConfig) if f.name in dict(_VALUE_FLAGS)}
