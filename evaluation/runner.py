"""Run one evaluation: :func:`run_evaluation` takes an :class:`~evaluation.config.EvalConfig` and returns the run
record (one per profile when several are scored in one pass: :func:`run_evaluation_profiles`);
:func:`evaluate_predictions` is its form for a folder of predictions (the portal's scoring).

Order of a run: choose the device and this process's shard (``accelerate``), open the data, resolve the methods
(:mod:`evaluation.methods`), get LPIPS and the depth model ready, then clear the old tables of the run folder,
score this process's shard (:mod:`evaluation.scoring`), and on rank 0 merge the shards and write the run record
and tables (:mod:`evaluation.record`) and print the summary (:mod:`evaluation.console`). Everything that can be
checked up front is checked before the run folder is touched.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shlex
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bokeh_model.errors import ModelUnavailableError
from bokeh_model.fetch import FetchError, fetch_lpips, is_offline
from bokeh_model.files import atomic_write
from bokeh_model.lpips_trunk import ALEXNET_FILE
from evaluation.config import EvalConfig
from evaluation.console import print_summary, synthetic_banner
from evaluation.dataset import default_split, open_source, sort_ids
from evaluation.methods import check_external, resolve_methods, skip_methods_without_depth
from evaluation.metrics import (
    DEFAULT_PROFILE,
    LPIPSUnavailableError,
    get_lpips_model,
    get_profile,
    lpips_status,
    verify_lpips_trunk,
)
from evaluation.record import build_run_record, coverage_of, drop_shards, merge_shards, write_run_files
from evaluation.run_layout import DERIVED_FILES, profile_dir, remove_other_ids, shard_path, shards_dir
from evaluation.scoring import ShardContext, StageTimes, score_shard

__all__ = ["evaluate_predictions", "run_evaluation", "run_evaluation_profiles"]


def _fetch_lpips_trunk(say: Callable[[str], None]) -> str | None:
    """Download the LPIPS trunk on first use (online, no --offline); returns the reason when that fails."""
    try:
        result = fetch_lpips(progress=True)
    except FetchError as exc:
        return f"LPIPS unavailable: {exc}"
    say(f"LPIPS AlexNet trunk {result.status} at {result.path}")
    return None


def _prepare_lpips(
    config: EvalConfig, device: str, notes: list[str], say: Callable[[str], None]
) -> tuple[Any, dict[str, Any]]:
    """The LPIPS network (or ``None``) and ``run.json``'s ``lpips`` entry.

    Raises:
        LPIPSUnavailableError: no usable trunk and ``require_lpips``, or an unofficial one without
            ``allow_unofficial_lpips``.
    """
    if not config.lpips:
        return None, {"available": False, "reason": "skipped with --no-lpips"}
    ok, reason = lpips_status()
    if not ok and not is_offline(True if config.offline else None):
        reason = _fetch_lpips_trunk(say) or reason
        ok = lpips_status()[0]
    if not ok:
        if config.require_lpips:
            raise LPIPSUnavailableError(reason)
        say(f"warning: {reason}")
        return None, {"available": False, "reason": reason}
    trunk = verify_lpips_trunk(allow_unofficial=config.allow_unofficial_lpips)
    if not trunk["official"]:
        say(f"warning: LPIPS uses an unofficial AlexNet trunk (SHA-256 {trunk['sha256'][:16]}...)")
    model = get_lpips_model(device)
    if not trunk["official"]:
        notes.append(
            f"LPIPS trunk {trunk['path']} has SHA-256 {trunk['sha256'][:16]}..., "
            f"not the official {ALEXNET_FILE}: LPIPS values are not comparable with published ones"
        )
    return model, {"available": True, "reason": "", "net": "alex", "version": "0.1", "trunk": trunk}


def _command_line(config: EvalConfig) -> str:
    if config.command is not None:
        return config.command
    return "python -m evaluation.run " + " ".join(shlex.quote(a) for a in config.to_argv())


def run_evaluation(config: EvalConfig, *, times: StageTimes | None = None) -> dict[str, Any]:
    """Run the evaluation described by ``config``; returns the run record (the content of ``run.json``), or, when
    ``config.profile`` names several profiles, ``{profile: run record}`` (see :func:`run_evaluation_profiles`).

    Raises:
        InputError, ModelUnavailableError: see :mod:`evaluation.run`'s exit codes.
    """
    records = run_evaluation_profiles(config, times=times)
    if not records or len(records) > 1:
        return records
    return next(iter(records.values()))


def run_evaluation_profiles(config: EvalConfig, *, times: StageTimes | None = None) -> dict[str, dict[str, Any]]:
    """Run the evaluation described by ``config`` under every profile it names, in one pass over the data (each
    image decoded once); returns ``{profile: run record}``.

    Everything that can be checked up front (options, data, methods, depth, weights, LPIPS) is checked before
    the output folder is touched; the tables are written at the end, each file atomically: into ``config.out``
    for one profile, into ``config.out/<profile>/`` for several. Under ``accelerate launch`` every process scores
    its shard and rank 0 merges them; the other ranks return ``{}``. ``times``, when given, receives the seconds
    spent per stage (start-up, decode, metrics per profile, LPIPS, writes, bookkeeping, tables).

    Raises:
        InputError, ModelUnavailableError: see :mod:`evaluation.run`'s exit codes.
    """
    import torch
    from accelerate import PartialState

    times = times if times is not None else StageTimes()
    began = time.perf_counter()
    config.validate()
    state = PartialState(cpu=config.device == "cpu" or not torch.cuda.is_available())
    rank, world = state.process_index, state.num_processes
    device = str(state.device) if config.device == "auto" else config.device
    if device.startswith("cpu"):
        device = "cpu"
    elif device.startswith("cuda") and config.device == "auto" and world == 1:
        device = "cuda"
    out = Path(config.out)
    main_process = state.is_main_process
    say = print if main_process else (lambda *a, **k: None)

    profiles = [get_profile(name) for name in config.profile_names()]
    folders = {p.name: (profile_dir(out, p.name) if len(profiles) > 1 else out) for p in profiles}
    notes: list[str] = []
    width, height = config.synthetic_dims()
    split = config.split
    if split is None:
        split = default_split(config.dataset)
        if split != "val294":
            say(f"split: {split} (the dataset has no val294 split)")
    source = open_source(
        config.dataset,
        split,
        streaming=config.streaming,
        num_scenes=config.synthetic_scenes,
        height=height,
        width=width,
    )
    if source.synthetic:
        notes.append(
            "synthetic sample: methods taking focus_disparity / strength get each scene's true values "
            "unless --param sets them"
        )
        say(synthetic_banner(source.description))
    runs, skipped = resolve_methods(config, device)
    runs, no_depth = skip_methods_without_depth(source, runs, config)
    skipped += no_depth
    for entry in skipped:
        say(f"note: skipped {entry['method']}: {entry['reason']}")
    all_ids = source.ids()
    ids = all_ids[: config.limit] if all_ids is not None and config.limit else all_ids
    check_external(runs, ids)

    lpips_model, lpips_info = _prepare_lpips(config, device, notes, say)
    depth_estimator = None
    depth_model = None  # a short name and its hub id are one model (one per-run depth cache)
    if config.depth_model and any(run.needs_depth for run in runs):
        from bokeh_model.depth import get_depth_estimator
        from bokeh_model.depth_models import resolve_depth_model

        depth_model = resolve_depth_model(config.depth_model)
        estimator = get_depth_estimator(depth_model, device)
        ok, reason = estimator.availability()
        if not ok:
            raise ModelUnavailableError(reason)
        depth_estimator = estimator.estimate

    if main_process:
        out.mkdir(parents=True, exist_ok=True)
        for folder in folders.values():  # never leave an old table next to a run that fails half way
            for name in DERIVED_FILES:
                (folder / name).unlink(missing_ok=True)
        shutil.rmtree(shards_dir(out), ignore_errors=True)
    state.wait_for_everyone()
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    ctx = ShardContext(
        out=out,
        profiles=profiles,
        source=source,
        lpips_model=lpips_model,
        depth_estimator=depth_estimator,
        warmup=config.warmup,
        depth_model=depth_model,
        pair_files=config.pair_files,
        times=times,
    )
    times.add("startup", time.perf_counter() - began)
    shard = score_shard(ctx, runs, rank, world, config.limit, show_progress=main_process or world > 1)
    atomic_write(shard_path(out, rank, world), json.dumps(shard, default=float))
    state.wait_for_everyone()
    if not main_process:
        return {}

    records: dict[str, dict[str, Any]] = {}
    with times.timed("tables"):
        for profile in profiles:
            merged = merge_shards(out, world, runs, skipped, ids, source, profile.name)
            remove_other_ids(out, merged.hashes)  # a rerun on fewer ids leaves none of the old ids' files behind
            available = len(all_ids) if all_ids is not None else None
            record = build_run_record(
                merged,
                source=source,
                profile=profile,
                coverage=coverage_of(source, sort_ids(merged.hashes), available, config.limit),
                lpips_info=lpips_info,
                notes=notes + merged.notes,
                command=_command_line(config),
                device=device,
                world=world,
                warmup=config.warmup,
                started=started,
            )
            if depth_model is not None:  # which depth model made the maps that the methods without depth got
                from bokeh_model.depth_models import depth_model_record

                record["depth_model"] = depth_model_record(depth_model)
            records[profile.name] = write_run_files(folders[profile.name], merged.frame, record)
            print_summary(record, folders[profile.name], say)
        drop_shards(out)
    return records


def evaluate_predictions(
    dataset: str,
    split: str,
    predictions_dir: str | os.PathLike,
    *,
    label: str = "submission",
    profile: str | Sequence[str] = DEFAULT_PROFILE,
    out_dir: str | os.PathLike,
    lpips: bool = True,
    require_lpips: bool = False,
    allow_unofficial_lpips: bool = False,
    device: str = "auto",
    limit: int = 0,
    pair_files: bool = True,
    times: StageTimes | None = None,
) -> dict[str, Any]:
    """Score a folder of predictions (``<id>.png|jpg|npy``) on a dataset split: the library form of
    ``python evaluation/run.py --dataset DATASET --split SPLIT --methods none --predictions LABEL=DIR``.

    Writes the usual outputs into ``out_dir`` and returns the run record (the content of ``run.json``:
    ``methods[label]`` holds the metric summaries, ``dataset.fingerprint`` and ``dataset.coverage`` what was
    scored, ``versions`` and ``lpips`` the environment). ``profile`` may name several profiles (a list, or
    ``"pynet,dmshn"``): they are scored in one pass, written to ``out_dir/<profile>/``, and the result is
    ``{profile: run record}``.

    Raises:
        InputError: bad dataset, split, missing or malformed predictions (the message names the files).
        ModelUnavailableError: the dataset cannot be reached, or LPIPS is missing with ``require_lpips``.
    """
    config = EvalConfig(
        dataset=str(dataset),
        split=split,
        methods=["none"],
        predictions=[f"{label}={os.fspath(predictions_dir)}"],
        profile=profile if isinstance(profile, str) else ",".join(profile),
        device=device,
        limit=limit,
        out=os.fspath(out_dir),
        lpips=lpips,
        require_lpips=require_lpips,
        allow_unofficial_lpips=allow_unofficial_lpips,
        pair_files=pair_files,
    )
    return run_evaluation(config, times=times)
