"""Organizer CLI: ``python -m user_study {create,import,status,aggregate,export,exclude,block,list,serve,arena}``.

Exit codes (:mod:`bokeh_model.errors`): 0 ok, 1 failure, 2 bad input (unknown study, bad file or option),
3 missing data (database, run folder or file not found), 130 interrupted.
The database comes from ``--db`` or ``BOKEH_STUDY_DB`` (default ``<BOKEH_DATA_DIR>/study.db``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

__all__ = ["build_parser", "main", "read_import_frame"]


def _service(args: argparse.Namespace):
    from user_study.config import Settings
    from user_study.hub import sink_from_env
    from user_study.service import StudyService

    settings = Settings.from_env(args.db)
    return StudyService.from_settings(
        settings, sink=sink_from_env(settings.data_dir, settings.hub_repo, settings.hf_token)
    )


def _labels(values: Sequence[str] | None) -> dict[int, str]:
    from user_study.config import DEFAULT_SCALE_LABELS

    labels = dict(DEFAULT_SCALE_LABELS)
    for spec in values or []:
        key, sep, text = spec.partition("=")
        if not sep or key.strip() not in {"1", "2", "3"} or not text.strip():
            raise ValueError(f"--label {spec!r}: use 1=text, 2=text or 3=text (0 and 4 are the paper's labels)")
        labels[int(key)] = text.strip()
    return labels


def cmd_create(args: argparse.Namespace) -> int:
    from user_study.config import StudyConfig

    cfg_data = json.loads(Path(args.config).read_text()) if args.config else {}
    overrides = {
        "title": args.title,
        "mode": args.mode,
        "target_votes_per_item": args.votes_per_item,
        "items_per_session": args.items_per_session,
        "gold_per_session": args.gold_per_session,
        "trap_per_session": args.trap_per_session,
        "hidden_ref_per_session": args.hidden_ref_per_session,
        "min_view_ms": args.min_view_ms,
        "session_ttl_min": args.session_ttl_min,
        "lease_min": args.lease_min,
        "max_sessions_per_rater": args.max_sessions,
        "pairing": args.pairing,
        "completion_code": args.completion_code,
        "completion_url": args.completion_url,
    }
    cfg_data.update({k: v for k, v in overrides.items() if v is not None})
    if args.label:
        cfg_data["scale_labels"] = _labels(args.label)
    cfg = StudyConfig.from_dict(cfg_data)
    svc = _service(args)
    sid = svc.create_study(
        args.run_dir,
        cfg,
        study_id=args.study_id,
        methods=args.methods.split(",") if args.methods else None,
        scenes=args.scenes.split(",") if args.scenes else None,
        n_gold=args.n_gold,
        n_trap=args.n_trap,
        n_hidden_ref=args.n_hidden_ref,
    )
    items = svc.items_frame(sid)
    print(f"created study {sid}: {items['kind'].value_counts().to_dict()} items, config sha256 {cfg.sha256()[:12]}")
    from user_study.rater_api import is_prolific_url, prolific_link, rater_link

    print(f"rater link: <space url>{rater_link(sid)}&rater=<id>")
    print(f"Prolific study URL: <space url>{prolific_link(sid)}")
    if not cfg.completion_code:
        print(
            "warning: no --completion-code: every session gets its own completion code, which Prolific cannot know; "
            "for Prolific, create the study with --completion-code set to the Prolific study's code "
            + (
                "(until then raters are not sent to the Prolific completion URL, only shown their code)"
                if is_prolific_url(cfg.completion_url)
                else "and --completion-url https://app.prolific.com/submissions/complete?cc={code}"
            ),
            file=sys.stderr,
        )
    return 0


def _leading_int(value: object) -> object:
    if isinstance(value, str):
        m = re.match(r"\s*(-?\d+)", value)
        return int(m.group(1)) if m else value
    return value


def read_import_frame(path: str | Path, fmt: str = "auto", columns: dict[str, str] | None = None) -> pd.DataFrame:
    """Read ratings collected elsewhere into columns ``rater, score`` and ``item_id`` or ``method, scene``.

    Formats: ``mturk`` (batch results CSV: ``WorkerId``, ``Answer.*``, ``Input.*``; rejected assignments are
    skipped), ``csv`` (columns named as above), ``auto`` (``mturk`` when a ``WorkerId`` column exists).
    ``columns`` maps our names (``rater``, ``score``, ``item_id``, ``method``, ``scene``) to the file's.
    """
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    if fmt == "auto":
        fmt = "mturk" if "WorkerId" in df.columns else "csv"
    mapping = dict(columns or {})
    if fmt == "mturk":
        if "AssignmentStatus" in df.columns:
            df = df[df["AssignmentStatus"].str.lower() != "rejected"]
        answers = [c for c in df.columns if c.startswith("Answer.")]
        defaults = {
            "rater": "WorkerId",
            "score": "Answer.score" if "Answer.score" in df.columns else (answers[0] if answers else ""),
            "item_id": "Input.item_id",
            "method": "Input.method",
            "scene": "Input.scene" if "Input.scene" in df.columns else "Input.id",
            "submitted_at": "SubmitTime",
        }
        for k, v in defaults.items():
            mapping.setdefault(k, v)
    elif fmt != "csv":
        raise ValueError(f"--format {fmt!r} is not allowed; use auto, mturk or csv")
    out = pd.DataFrame(index=df.index)
    for ours in ("rater", "score", "item_id", "method", "scene", "submitted_at"):
        col = mapping.get(ours, ours)
        if col in df.columns:
            out[ours] = df[col]
    if "score" in out:
        out["score"] = out["score"].map(_leading_int)
    if "item_id" in out and not out["item_id"].astype(bool).any():
        out = out.drop(columns="item_id")
    return out.reset_index(drop=True)


def cmd_import(args: argparse.Namespace) -> int:
    svc = _service(args)
    if args.format == "hub-jsonl":
        from user_study.transfer import read_jsonl_records

        counts = svc.restore_records(args.study, read_jsonl_records(Path(args.file)))
        print(f"restored {counts['restored']} ratings into {args.study}; skipped {counts['skipped']}")
        return 0
    cols = {
        k: v
        for k, v in (
            ("rater", args.rater_column),
            ("score", args.score_column),
            ("item_id", args.item_column),
            ("method", args.method_column),
            ("scene", args.scene_column),
        )
        if v
    }
    frame = read_import_frame(args.file, args.format, cols)
    source = (
        "mturk"
        if args.format == "mturk" or (args.format == "auto" and "WorkerId" in pd.read_csv(args.file, nrows=0).columns)
        else args.source
    )
    counts = svc.import_ratings(args.study, frame, source=source)
    print(f"imported {counts['imported']} ratings into {args.study}; skipped {counts['duplicates']} duplicates")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from user_study.report import qc_tables

    svc = _service(args)
    info = svc.status(args.study)
    decisions, _ = qc_tables(svc, args.study)
    failed = decisions[decisions["excluded"]] if len(decisions) else decisions
    if args.json:
        print(
            json.dumps(
                {
                    "study_id": info["study_id"],
                    "mode": info["mode"],
                    "n_ratings": info["n_ratings"],
                    "n_raters": info["n_raters"],
                    "sessions": info["sessions"],
                    "excluded_manual": info["excluded_manual"],
                    "per_method": info["per_method"].to_dict(orient="records"),
                    "qc_failed": failed.groupby("rule").size().to_dict() if len(failed) else {},
                },
                indent=2,
                default=str,
            )
        )
        return 0
    s = info["sessions"]
    print(
        f"study {info['study_id']} ({info['mode']}): {info['n_ratings']} ratings, {info['n_raters']} raters; "
        f"sessions open {s['open']}, completed {s['completed']}, expired {s['expired']}"
    )
    print("\nprogress per method:")
    print(info["per_method"].to_string(index=False))
    print("\nratings per item kind:")
    print(info["per_kind"].to_string(index=False))
    print(f"\nmanual exclusions: {info['excluded_manual']}")
    print("QC checks failed (each excludes its session or rater):")
    print(failed.groupby(["level", "rule"]).size().to_string() if len(failed) else "  none")
    if args.items:
        print("\nper item:")
        print(info["per_item"].to_string(index=False))
    return 0


def cmd_aggregate(args: argparse.Namespace) -> int:
    from user_study.report import write_aggregate

    svc = _service(args)
    res = write_aggregate(svc, args.study, args.out, rounds=args.rounds, rebuild=not args.no_rebuild)
    if res["mode"] == "mos":
        print(
            res["mos"][["method", "mos_cell", "mos", "ci_low", "ci_high", "rank", "sig_rank", "n_ratings"]].to_string(
                index=False
            )
        )
        rel = res["reliability"]
        print(
            f"Krippendorff alpha: interval {rel['alpha_interval']:.3f}, ordinal {rel['alpha_ordinal']:.3f} "
            f"({rel['n_raters']} raters, {rel['n_items']} items)"
        )
        if "correlations" in res:
            print(res["correlations"].to_string(index=False))
    else:
        print(res["pairwise"].to_string(index=False))
        print(res["bt"].to_string(index=False))
    print(f"leaderboard: {res['rebuild']}")
    print("wrote: " + ", ".join(p.name for p in res["files"]))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from user_study.report import export_ratings

    svc = _service(args)
    fmt = args.format or ("json" if str(args.out).endswith((".json", ".jsonl")) else "csv")
    path = export_ratings(svc, args.study, args.out, fmt=fmt)
    print(f"wrote {path}")
    return 0


def cmd_exclude(args: argparse.Namespace) -> int:
    svc = _service(args)
    raters = [svc.rater_id(x, args.source) for x in (args.rater or [])] + list(args.rater_hash or [])
    if not args.rating and not raters:
        raise ValueError("give --rating ID (repeatable), --rater EXTERNAL_ID or --rater-hash HASH")
    n = svc.exclude(args.study, reason=args.reason, rating_ids=args.rating or [], rater_ids=raters)
    print(f"excluded {n} ratings (kept in the database with reason {args.reason!r})")
    return 0


def cmd_block(args: argparse.Namespace) -> int:
    svc = _service(args)
    rid = args.rater_hash or svc.rater_id(args.rater, args.source)
    svc.block_rater(rid, not args.unblock, args.note or "")
    print(f"{'unblocked' if args.unblock else 'blocked'} rater {rid}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    for st in _service(args).list_studies():
        print(f"{st['id']}\t{st['mode']}\t{st['created_at']:%Y-%m-%d %H:%M}\t{st['title']}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from user_study.rater_api import PAGE_PATH, create_rater_app

    app = create_rater_app(args.db)
    print(f"rater page: http://{args.host}:{args.port}{PAGE_PATH}?study=<id>&rater=<id>", flush=True)
    # client_key trusts exactly BOKEH_TRUSTED_PROXY_HOPS X-Forwarded-For entries itself; uvicorn's proxy-headers
    # default would also let a client on 127.0.0.1 choose its address
    uvicorn.run(app, host=args.host, port=args.port, proxy_headers=False)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (sub-commands with their options)."""
    from bokeh_model.errors import program_name

    p = argparse.ArgumentParser(
        prog=program_name("python -m user_study"),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--db", help="SQLAlchemy URL (default: BOKEH_STUDY_DB or <BOKEH_DATA_DIR>/study.db)")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("create", help="create a study from an evaluation run folder")
    c.add_argument("run_dir", help="evaluation run folder with predictions/<method>/ and targets/")
    c.add_argument("--study-id", help="id to use in rater links (default: random)")
    c.add_argument("--config", help="JSON file with StudyConfig fields (options below override it)")
    c.add_argument("--title")
    c.add_argument("--mode", choices=["mos", "pairwise"])
    c.add_argument("--methods", help="comma-separated methods (default: all)")
    c.add_argument("--scenes", help="comma-separated scene ids (default: all complete ones)")
    c.add_argument("--votes-per-item", type=int, dest="votes_per_item")
    c.add_argument("--items-per-session", type=int)
    c.add_argument("--gold-per-session", type=int)
    c.add_argument("--trap-per-session", type=int)
    c.add_argument("--hidden-ref-per-session", type=int)
    c.add_argument("--n-gold", type=int, help="gold items to build (default: one per scene)")
    c.add_argument("--n-trap", type=int, help="trap items to build (default: one per scene)")
    c.add_argument("--n-hidden-ref", type=int, help="hidden references to build (default: one per scene)")
    c.add_argument("--min-view-ms", type=int)
    c.add_argument("--session-ttl-min", type=float, help="minutes a session accepts ratings (default 60)")
    c.add_argument(
        "--lease-min",
        type=float,
        help="minutes a session reserves its unrated items, renewed by each rating (default 5)",
    )
    c.add_argument("--max-sessions", type=int)
    c.add_argument("--pairing", choices=["spread", "balanced_block"])
    c.add_argument("--completion-code", help="fixed code (e.g. Prolific's); default: one per session")
    c.add_argument("--completion-url", help="link shown at the end; {code} is replaced")
    c.add_argument("--label", action="append", metavar="K=TEXT", help="intermediate scale label (K = 1, 2 or 3)")
    c.set_defaults(func=cmd_create)

    i = sub.add_parser(
        "import", help="import ratings collected elsewhere (MTurk batch CSV, plain CSV) or restore a Hub backup"
    )
    i.add_argument("study")
    i.add_argument("file", help="CSV file, or for hub-jsonl a .jsonl file or a folder of them (the Hub dataset)")
    i.add_argument(
        "--format",
        choices=["auto", "mturk", "csv", "hub-jsonl"],
        default="auto",
        help="hub-jsonl: the ratings/*.jsonl written by the Hub backup (BOKEH_STUDY_HUB_REPO)",
    )
    i.add_argument("--source", default="import", help="rater id source for plain CSV (default: import)")
    for name in ("rater", "score", "item", "method", "scene"):
        i.add_argument(f"--{name}-column", help=f"column holding the {name}")
    i.set_defaults(func=cmd_import)

    s = sub.add_parser("status", help="progress per method/item, raters, QC exclusions")
    s.add_argument("study")
    s.add_argument("--items", action="store_true", help="also list every item")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    a = sub.add_parser("aggregate", help="MOS, CIs, ranks, alpha, correlations, chart; updates the leaderboard")
    a.add_argument("study")
    a.add_argument("--out", required=True, help="output folder (may be the evaluation run folder)")
    a.add_argument("--rounds", type=int, help="bootstrap rounds (default: study config, 1000)")
    a.add_argument("--no-rebuild", action="store_true", help="do not call evaluation.leaderboard.rebuild_tables")
    a.set_defaults(func=cmd_aggregate)

    e = sub.add_parser("export", help="ratings with QC flags as CSV or JSON lines")
    e.add_argument("study")
    e.add_argument("--out", required=True)
    e.add_argument("--format", choices=["csv", "json"])
    e.set_defaults(func=cmd_export)

    x = sub.add_parser("exclude", help="exclude ratings with a reason (nothing is deleted)")
    x.add_argument("study")
    x.add_argument("--reason", required=True)
    x.add_argument("--rating", action="append", help="rating id (repeatable)")
    x.add_argument("--rater", action="append", help="external rater id (hashed here)")
    x.add_argument("--rater-hash", action="append", help="hashed rater id as shown in exports")
    x.add_argument("--source", default="link", help="source of --rater ids (link, prolific, mturk, invite)")
    x.set_defaults(func=cmd_exclude)

    b = sub.add_parser("block", help="block or unblock a rater")
    g = b.add_mutually_exclusive_group(required=True)
    g.add_argument("--rater", help="external rater id")
    g.add_argument("--rater-hash", help="hashed rater id")
    b.add_argument("--source", default="link")
    b.add_argument("--unblock", action="store_true")
    b.add_argument("--note")
    b.set_defaults(func=cmd_block)

    li = sub.add_parser("list", help="list studies")
    li.set_defaults(func=cmd_list)

    sv = sub.add_parser(
        "serve",
        help="serve the rater page (/rate) and its JSON API for raters; organizers use the Space's Study tab or "
        "this CLI",
        description="Serve the rater page /rate?study=<id>&rater=<id> and its JSON API (/study-api/v1, including "
        "the organizer export when BOKEH_ORGANIZER_TOKEN is set) with uvicorn. There is no organizer view here: "
        "use the Space's Study tab (python app.py) or the other commands of this CLI.",
    )
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    sv.add_argument("--port", type=int, default=7861, help="port (default: 7861)")
    sv.set_defaults(func=cmd_serve)

    from user_study.arena.cli import add_arena_parser

    add_arena_parser(sub)  # python -m user_study arena export|report|exclude
    return p


def _run_command(args: argparse.Namespace) -> int:
    """Run the chosen command; errors not raised as :class:`~bokeh_model.errors.BokehError` get their exit code."""
    from bokeh_model.errors import EXIT_FAILURE, EXIT_MISSING, BokehError, InputError

    try:
        return int(args.func(args))
    except BokehError:  # StudyError is an InputError: exit 2
        raise
    except FileNotFoundError as exc:  # a missing database, run folder or input file: missing data
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_MISSING
    except (ValueError, KeyError) as exc:  # a bad option or file content
        raise InputError(str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - the organizer CLI reports every failure as one line
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (see :mod:`bokeh_model.errors`)."""
    from bokeh_model.errors import run_reporting_errors

    args = build_parser().parse_args(argv)
    return run_reporting_errors(lambda: _run_command(args))


if __name__ == "__main__":
    sys.exit(main())
