"""Which methods a run scores: registered methods with their settings, and external prediction folders.

:func:`resolve_methods` turns ``--methods``, ``--param``, ``--option``, ``--weights`` and ``--predictions`` of an
:class:`~evaluation.config.EvalConfig` into :class:`MethodRun` columns, and lists the methods that cannot run
here with the reason. Everything is checked before the run folder is touched: unknown names, parameters and
options, unavailable methods named explicitly (PyNET without weights), methods that need depth the data lacks
(:func:`skip_methods_without_depth`) and missing external predictions (:func:`check_external`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bokeh_model.errors import InputError, ModelUnavailableError
from bokeh_model.images import load_image
from evaluation.config import EvalConfig
from evaluation.dataset import EvalSource
from evaluation.runtime import hardware_label

__all__ = [
    "PREDICTION_EXTENSIONS",
    "MethodRun",
    "check_external",
    "find_prediction",
    "load_external",
    "resolve_methods",
    "skip_methods_without_depth",
]

PREDICTION_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".npy")


@dataclass
class MethodRun:
    """One column of the comparison: a registered method with its settings, or an external prediction folder."""

    label: str
    name: str
    kind: str  # "registered" or "external"
    method: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    folder: Path | None = None
    hardware: str = ""
    description: str = ""
    warmed: bool = False
    needs_depth: bool = False
    user_params: tuple[str, ...] = ()  # the parameters --param set (the synthetic sample leaves them alone)
    backend: str = ""  # the execution backend that rendered (PyNET's backend="auto" resolved), for run.json

    def config_hash(self) -> str:
        """What a saved prediction must match to be reused: the method's name, parameters and options."""
        options = {k: str(v) for k, v in self.options.items() if k != "device"}
        options["_user_params"] = str(self.user_params)  # in the hash as before, so saved predictions stay valid
        payload = {"name": self.name, "params": self.params, "options": options}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _create(name: str, options: dict[str, Any]) -> Any:
    from bokeh_model import create_method
    from bokeh_model.registry import get_method_class

    try:
        factory = get_method_class(name)
    except KeyError as exc:
        raise InputError(str(exc.args[0])) from None
    try:
        accepted = inspect.signature(factory).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    except (TypeError, ValueError):
        accepted, takes_any = {}, True
    kwargs = {k: v for k, v in options.items() if takes_any or k in accepted}
    unknown = sorted(set(options) - set(kwargs) - {"device"})
    if unknown:
        raise InputError(f"method {name!r} does not take the options {unknown}; it takes {sorted(accepted)}")
    try:
        return create_method(name, **kwargs)
    except TypeError as exc:
        raise InputError(f"method {name!r} does not accept these options {sorted(kwargs)}: {exc}") from None


def resolve_methods(config: EvalConfig, device: str) -> tuple[list[MethodRun], list[dict[str, str]]]:
    """The registered and external methods of this run, and the skipped ones (``{"method", "reason"}``).

    Raises:
        ModelUnavailableError: an explicitly requested method cannot run here (e.g. PyNET without weights).
        InputError: unknown method, bad parameter, or a --param/--option for a label that is not run.
    """
    from bokeh_model import list_methods

    params = config.param_assignments()
    options = config.option_assignments()
    skipped: list[dict[str, str]] = []
    explicit = config.methods is not None
    requested = [] if explicit and config.methods == ["none"] else (config.methods or list_methods())
    runs: list[MethodRun] = []
    for entry in requested:
        label, _, name = entry.partition("=") if "=" in entry else (entry, "", entry)
        method_options: dict[str, Any] = {"device": device, **options.get(label, {})}
        if name == "pynet" and config.weights:
            method_options.setdefault("weights", config.weights)
        method = _create(name, method_options)
        ok, reason = method.availability()
        if not ok:
            if explicit:
                raise ModelUnavailableError(f"method {label!r} ({name}) cannot run here: {reason}")
            skipped.append({"method": label, "reason": reason})
            continue
        checked = method.validate_params(params.get(label, {}))
        runs.append(
            MethodRun(
                label=label,
                name=name,
                kind="registered",
                method=method,
                params=checked,
                options=dict(method_options),
                hardware=hardware_label(device),
                description=method.description,
                needs_depth=bool(method.requires_depth()),
                user_params=tuple(params.get(label, {})),
            )
        )
    for entry in config.predictions:
        label, _, folder = entry.rpartition("=") if "=" in entry else ("", "", entry)
        path = Path(folder).expanduser()
        label = label or path.name
        if not path.is_dir():
            raise InputError(f"--predictions {entry!r}: {path} is not a folder")
        runs.append(
            MethodRun(
                label=label,
                name=label,
                kind="external",
                folder=path,
                description=f"external predictions from {path}",
                user_params=tuple(params.get(label, {})),
            )
        )
    labels = [run.label for run in runs]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise InputError(f"method labels must be unique, got {duplicates} twice; use LABEL=NAME to tell them apart")
    stray = sorted((set(params) | set(options)) - set(labels) - {n.split("=")[0] for n in requested})
    if stray:
        raise InputError(f"--param/--option given for {stray}, which are not run; run labels: {labels}")
    if not runs and not skipped:
        raise InputError("no method to evaluate: give --methods NAME or --predictions DIR")
    if not runs:  # a run that scores nothing must not succeed with a table of targets only
        raise ModelUnavailableError(_nothing_runs(skipped))
    return runs, skipped


def _nothing_runs(skipped: list[dict[str, str]]) -> str:
    reasons = "; ".join(f"{entry['method']}: {entry['reason']}" for entry in skipped)
    return f"no method can be scored here, so nothing was evaluated ({reasons})"


def skip_methods_without_depth(
    source: EvalSource, runs: list[MethodRun], config: EvalConfig
) -> tuple[list[MethodRun], list[dict[str, str]]]:
    """Leave out methods that need depth when the data has none and no --depth-model was given.

    Checked before anything is written, so a run never stops part-way for this. A method named in
    --methods cannot be honoured, which is an error (exit 3) like PyNET without weights.

    Raises:
        ModelUnavailableError: an explicitly requested method needs depth that the run cannot provide.
    """
    needy = [run for run in runs if run.kind == "registered" and run.needs_depth]
    if not needy or config.depth_model:
        return runs, []
    with_depth, total = source.depth_coverage()
    if with_depth == 0:
        why = f"{source.description} has no depth maps"
    elif with_depth is not None and total is not None and with_depth < total:
        why = f"{total - with_depth} of {total} rows of {source.description} have no depth map"
    else:
        return runs, []  # every row has depth, or unknown until read (streaming): checked per row
    reason = (
        f"needs a depth map: {why} and no --depth-model was given; build the dataset once with "
        "`python -m evaluation.ebb build --depth-model MODEL` (every later run reuses the stored maps) "
        "or pass --depth-model MODEL"
    )
    if config.methods is not None:
        raise ModelUnavailableError(f"method(s) {[run.label for run in needy]} {reason}")
    kept = [run for run in runs if run not in needy]
    skipped = [{"method": run.label, "reason": reason} for run in needy]
    if not kept:
        raise ModelUnavailableError(_nothing_runs(skipped))
    return kept, skipped


def find_prediction(folder: Path, sample_id: str) -> Path | None:
    """``folder/<id>.<ext>`` for the first extension of :data:`PREDICTION_EXTENSIONS` that exists."""
    for extension in PREDICTION_EXTENSIONS:
        candidate = folder / f"{sample_id}{extension}"
        if candidate.is_file():
            return candidate
    return None


def check_external(runs: list[MethodRun], ids: list[str] | None) -> None:
    """Every external folder holds a prediction for each id (unknown ids, when streaming: checked per row).

    Raises:
        InputError: missing predictions (the first ids are named).
    """
    if ids is None:
        return
    for run in runs:
        if run.kind != "external" or run.folder is None:
            continue
        missing = [i for i in ids if find_prediction(run.folder, i) is None]
        if missing:
            shown = ", ".join(missing[:20]) + (f" ... ({len(missing)} in all)" if len(missing) > 20 else "")
            raise InputError(
                f"predictions of {run.label!r} in {run.folder} are missing for ids {shown} "
                f"(expected files like {run.folder}/<id>.png)"
            )


def load_external(path: Path) -> np.ndarray:
    """An external prediction as float32 RGB in [0, 1] (an image file, or an ``(H, W, 3)`` ``.npy`` array).

    Raises:
        InputError: unreadable, wrong shape, or non-finite values.
    """
    if path.suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: not a readable .npy prediction ({exc})") from None
        if array.ndim != 3 or array.shape[2] != 3:
            raise InputError(f"{path}: prediction must have shape (H, W, 3), got {array.shape}")
        if not np.all(np.isfinite(array)):
            raise InputError(f"{path}: prediction contains NaN or infinite values")
        return np.clip(array.astype(np.float32), 0.0, 1.0)
    return load_image(path)
