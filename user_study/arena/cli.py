"""``python -m user_study arena {export,report}``: the organizers' copy of what the Space's Arena tab shows.

- ``export --out DIR``: every vote joined with its battle (``arena_votes.csv`` and ``arena_votes.jsonl``;
  ``--include-excluded`` adds excluded votes with their reason).
- ``report --out DIR``: the leaderboard with its intervals (``arena_leaderboard.csv``/``.json``, the same rows
  as the Space and ``GET /arena-api/v1/leaderboard``), votes per pair and per client with the same-side flags,
  refused votes, and the win-rate heatmap (``arena_heatmap.html``); the board is printed too.
- ``exclude --client-hash H --reason TEXT``: leave a client's votes out (kept, marked).
- ``restore FILE_OR_DIR``: put votes back from the Hub JSONL backup (``arena/votes-*.jsonl`` of the study's
  dataset) or from ``export``'s ``arena_votes.jsonl`` into a new or damaged database; repeatable (votes present
  are skipped), all-or-nothing (a bad line is named and nothing is written).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bokeh_model.files import atomic_write

__all__ = ["add_arena_parser", "cmd_arena"]


def add_arena_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``arena`` command to the study CLI's sub-parsers."""
    p = sub.add_parser("arena", help="Bokeh Arena: export the votes, or the leaderboard with intervals and heatmap")
    asub = p.add_subparsers(dest="arena_command", required=True)
    e = asub.add_parser("export", help="every vote with its battle as CSV and JSON lines")
    e.add_argument("--out", required=True, help="output folder")
    e.add_argument("--include-excluded", action="store_true")
    r = asub.add_parser("report", help="leaderboard (Bradley-Terry, 95 %% CIs), pairs, clients, heatmap")
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--include-flagged", action="store_true", help="keep clients flagged for always one side")
    x = asub.add_parser("exclude", help="exclude every vote of a client (nothing is deleted)")
    x.add_argument("--client-hash", required=True)
    x.add_argument("--reason", required=True)
    t = asub.add_parser("restore", help="put votes back from the Hub JSONL backup or an export (repeatable)")
    t.add_argument("file", help="a .jsonl file, or a folder (every .jsonl under it, e.g. the backup's arena/)")
    p.set_defaults(func=cmd_arena)


def cmd_arena(args: argparse.Namespace) -> int:
    """Run ``arena export|report|exclude|restore``."""
    from user_study.arena.leaderboard import client_flags, heatmap_figure, pair_table
    from user_study.arena.service import get_arena_service

    svc = get_arena_service(args.db)
    if args.arena_command == "restore":
        from user_study.transfer import read_jsonl_records

        try:
            counts = svc.restore_records(read_jsonl_records(Path(args.file)))
        except (ValueError, FileNotFoundError) as exc:  # InputError is a ValueError
            print(f"error: nothing restored: {exc}", file=sys.stderr)
            return 2
        print(f"restored {counts['restored']} vote(s); skipped {counts['skipped']} already present")
        return 0
    if args.arena_command == "exclude":
        n = svc.exclude_client(args.client_hash, args.reason)
        print(f"excluded {n} vote(s) of {args.client_hash}")
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.arena_command == "export":
        votes = svc.votes_frame(include_excluded=args.include_excluded)
        atomic_write(out / "arena_votes.csv", votes.to_csv(index=False).encode())
        lines = "".join(json.dumps(r, default=str, sort_keys=True) + "\n" for r in votes.to_dict("records"))
        atomic_write(out / "arena_votes.jsonl", lines.encode())
        print(f"{len(votes)} vote(s) -> {out / 'arena_votes.csv'}, {out / 'arena_votes.jsonl'}")
        return 0
    from user_study.arena.api import board_rows

    board, info = svc.leaderboard(include_flagged=args.include_flagged)
    used = info.pop("used_votes")
    all_votes = svc.votes_frame()
    atomic_write(out / "arena_leaderboard.csv", board.to_csv(index=False).encode())
    atomic_write(out / "arena_leaderboard.json", json.dumps({**info, "rows": board_rows(board)}, indent=1).encode())
    atomic_write(out / "arena_pairs.csv", pair_table(used).to_csv(index=False).encode())
    flags = client_flags(all_votes, min_votes=svc.config.same_side_min_votes, share=svc.config.same_side_share)
    atomic_write(out / "arena_clients.csv", flags.to_csv(index=False).encode())
    atomic_write(out / "arena_refused.csv", svc.refusals().to_csv(index=False).encode())
    html = heatmap_figure(used).to_html(include_plotlyjs=True, full_html=True)  # offline: plotly.js inlined
    atomic_write(out / "arena_heatmap.html", html.encode())
    print(
        f"{info['votes']} vote(s) counted ({info['flagged_votes_left_out']} from {info['flagged_clients']} flagged "
        f"client(s) left out); rank needs >= {info['min_votes_for_rank']} votes"
    )
    print(board.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    print(f"written to {out}")
    return 0
