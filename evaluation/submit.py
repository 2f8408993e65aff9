"""``python -m evaluation.submit``: the evaluation portal from the command line (scripts and organizers).

Examples::

    python -m evaluation.submit submit preds.zip --method MyNet --authors "A. B., C. D." --license MIT \\
        --link https://arxiv.org/abs/0000.00000 --hardware "RTX 4090" --runtime 0.05 --uses-depth --wait
    python -m evaluation.submit work                      # score queued submissions (until Ctrl-C; --once)
    python -m evaluation.submit status ID
    python -m evaluation.submit leaderboard --profile dmshn --sort ssim
    python -m evaluation.submit withdraw ID --user alice
    python -m evaluation.submit hide ID --reason "predictions copied from another entry"
    python -m evaluation.submit study ID1 ID2 --out runs/portal-mos   # then the printed `python -m user_study create`

The portal folder, dataset, results repo and organizer token come from the options or from the environment
(``BOKEH_PORTAL_DIR``, ``BOKEH_PORTAL_DATASET``, ``BOKEH_PORTAL_HUB_REPO`` + ``HF_TOKEN``,
``BOKEH_ORGANIZER_TOKEN``). Off a Space, submitting and organizer actions need the organizer token when one is
configured. Exit codes: 0 ok, 1 failure, 2 bad input or refused submission, 3 dataset or model missing.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bokeh_model.errors import EXIT_BAD_INPUT, program_name, run_reporting_errors

__all__ = ["build_parser", "main", "portal_from_args", "study_command"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program_name("python -m evaluation.submit"),
        description="EBB! evaluation portal: submit predictions, score them under both profiles, list results.",
        epilog="Exit codes: 0 ok, 1 failure, 2 bad input or refused submission, 3 dataset or model missing.",
    )
    parser.add_argument("--portal-dir", help="portal folder (default: $BOKEH_PORTAL_DIR or <BOKEH_DATA_DIR>/portal)")
    parser.add_argument("--dataset", help="dataset submissions are scored on (default: $BOKEH_PORTAL_DATASET)")
    parser.add_argument("--hub-repo", help="results dataset repo (default: $BOKEH_PORTAL_HUB_REPO; needs HF_TOKEN)")
    parser.add_argument("--token", help="organizer token (default: $BOKEH_ORGANIZER_TOKEN)")
    parser.add_argument("--no-lpips", action="store_true", help="do not compute LPIPS even if the trunk is present")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("submit", help="check a zip or folder of <id>.png|jpg predictions and queue it")
    p.add_argument("path", help="zip archive or folder")
    p.add_argument("--split", help="split the predictions are for (default: the first open split, val294)")
    p.add_argument("--method", required=True, help="method name shown on the leaderboard")
    p.add_argument("--authors", required=True)
    p.add_argument("--license", required=True, help="licence of the method or predictions, e.g. MIT, CC BY 4.0")
    p.add_argument("--link", default="", help="paper or code URL")
    p.add_argument("--hardware", default="", help="hardware the runtime was measured on, as you report it")
    p.add_argument("--runtime", type=float, help="seconds per image, as you report it")
    p.add_argument("--uses-depth", action="store_true", help="the method uses a depth map")
    p.add_argument("--extra-data", action="store_true", help="trained on data beyond EBB! train (ids 0-4399)")
    p.add_argument("--extra-data-note", default="", help="which extra data")
    p.add_argument("--description", default="")
    p.add_argument("--user", required=True, help="the submitter, recorded and shown (their Hugging Face username)")
    p.add_argument("--wait", action="store_true", help="score it now in this process and print the result")

    p = sub.add_parser("work", help="score queued submissions")
    p.add_argument("--once", action="store_true", help="stop when the queue is empty")

    p = sub.add_parser("status", help="state and progress of a submission")
    p.add_argument("id")

    sub.add_parser("list", help="every submission with its state and visibility")

    p = sub.add_parser("leaderboard", help="print the leaderboard of one profile")
    p.add_argument("--profile", default="pynet", choices=["pynet", "dmshn"])
    p.add_argument("--sort", default="psnr", choices=["psnr", "ssim", "lpips", "runtime"])
    p.add_argument("--uses-depth", default="any", choices=["any", "yes", "no"])
    p.add_argument("--hardware", default="", help="only rows whose hardware contains this text")
    p.add_argument("--csv", help="also write the table to this CSV file")

    p = sub.add_parser("withdraw", help="take a submission off the leaderboard (kept in the audit log)")
    p.add_argument("id")
    p.add_argument("--user", required=True, help="the submitter's username")

    for name, text in (("hide", "hide a submission with a reason (organizers)"), ("unhide", "show it again")):
        p = sub.add_parser(name, help=text)
        p.add_argument("id")
        p.add_argument("--reason", required=name == "hide", default="")

    p = sub.add_parser("audit", help="print the audit log (all, or of one submission)")
    p.add_argument("id", nargs="?")

    p = sub.add_parser(
        "study",
        help="write scored submissions as a run folder for a MOS study (then: python -m user_study create)",
        description="Writes a run folder of the submissions' predictions and targets and prints the "
        "`python -m user_study create` command that makes the study from it.",
    )
    p.add_argument("ids", nargs="+", help="submission ids")
    p.add_argument("--out", required=True, help="run folder to write (must not exist or be empty)")
    p.add_argument("--measured", nargs="*", default=[], help="measured methods to rate too, e.g. lens pynet")
    return parser


def study_command(folder: str | os.PathLike) -> str:
    """The command that creates a user study from a study run folder; its id is the folder's name."""
    study_id = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(folder).name).strip("-") or "portal-mos"
    return f"python -m user_study create {shlex.quote(os.fspath(folder))} --study-id {study_id}"


def portal_from_args(args: argparse.Namespace, *, hf_api: object = None):
    """A :class:`~evaluation.portal.Portal` from the environment, overridden by the global options."""
    from evaluation.portal import Portal, PortalSettings

    settings = PortalSettings.from_env()
    changes = {}
    if args.portal_dir:
        changes["root"] = Path(args.portal_dir)
    if args.dataset:
        changes["dataset"] = args.dataset
    if args.hub_repo:
        changes["hub_repo"] = args.hub_repo
    if args.no_lpips:
        changes["lpips"] = False
    return Portal(dataclasses.replace(settings, **changes), hf_api=hf_api)


def _print_status(status: dict) -> None:
    line = f"{status['id']}: {status['status']}"
    if status["stage"] and status["stage"] != status["status"]:
        line += f" ({status['stage']})"
    if status["status"] == "queued":
        line += f", {status['queue_position']} ahead in the queue"
    if status["message"]:
        line += f" - {status['message']}"
    print(line)
    for profile, numbers in status.get("profiles", {}).items():
        lpips = "n/a" if numbers.get("lpips") is None else f"{numbers['lpips']:.4f}"
        print(f"  {profile:>6}: PSNR {numbers['psnr']:.2f}  SSIM {numbers['ssim']:.4f}  LPIPS {lpips}")


def _organizer(portal, args: argparse.Namespace) -> None:
    """Off a Space, acting as an organizer needs the configured token (a portal without one is local-only)."""
    if portal.settings.organizer_token:
        portal.check_organizer(args.token or os.environ.get("BOKEH_ORGANIZER_TOKEN"))


def run(args: argparse.Namespace, argv: Sequence[str] | None = None, *, hf_api: object = None) -> int:
    from evaluation.portal import SubmissionMeta, SubmissionRefused, Submitter

    portal = portal_from_args(args, hf_api=hf_api)
    if portal.pull_error:
        print(f"warning: {portal.pull_error}", file=sys.stderr)
    command = args.command
    if command == "submit":
        _organizer(portal, args)
        meta = SubmissionMeta(
            method=args.method,
            authors=args.authors,
            license=args.license,
            link=args.link,
            hardware=args.hardware,
            runtime_s=args.runtime,
            uses_depth=args.uses_depth,
            extra_data=args.extra_data,
            extra_data_note=args.extra_data_note,
            description=args.description,
        )
        try:
            sub_id = portal.submit(args.path, meta, Submitter(args.user, via="organizer"), split=args.split)
        except SubmissionRefused as exc:
            print(exc.report.render(), file=sys.stderr)
            return EXIT_BAD_INPUT
        print(f"accepted and queued: {sub_id}")
        if args.wait:
            while portal.process_next() not in (sub_id, None):
                pass
            status = portal.status(sub_id)
            _print_status(status)
            return 0 if status["status"] == "scored" else 1
        return 0
    if command == "work":
        done = 0
        try:
            while True:
                sub_id = portal.process_next()
                if sub_id is None:
                    if args.once:
                        break
                    time.sleep(2)
                    continue
                done += 1
                _print_status(portal.status(sub_id))
        finally:
            print(f"scored {done} submission(s)")
        return 0
    if command == "status":
        _print_status(portal.status(args.id))
        return 0
    if command == "list":
        for record in portal.store.submissions():
            print(
                f"{record['id']}  {record['status']:>9}  {record['visibility']:>9}  "
                f"@{record['submitter']['username']}  {record['meta']['method']}"
            )
        return 0
    if command == "leaderboard":
        board, paper, notes = portal.leaderboard(
            args.profile, sort_by=args.sort, uses_depth=args.uses_depth, hardware=args.hardware
        )
        print(board.drop(columns=["Authors", "Licence", "Link"]).to_string(index=False))
        print("\nReported in the paper (not comparable):")
        print(paper.to_string(index=False))
        for note in notes:
            print(f"- {note}")
        if args.csv:  # submitters' free text (method, authors): neutralised for spreadsheets
            from bokeh_model.files import atomic_write, spreadsheet_csv

            atomic_write(args.csv, spreadsheet_csv(board))
        return 0
    if command == "withdraw":
        _organizer(portal, args)
        portal.withdraw(args.id, Submitter(args.user, via="oauth"))
        print(f"withdrawn: {args.id}")
        return 0
    if command in ("hide", "unhide"):
        token = args.token or os.environ.get("BOKEH_ORGANIZER_TOKEN")
        getattr(portal, command)(args.id, args.reason, token, actor=os.environ.get("USER", "organizer"))
        print(f"{command}: {args.id}")
        return 0
    if command == "audit":
        for event in portal.store.audit_log(args.id):
            details = {k: v for k, v in event.items() if k not in ("time", "event", "submission", "actor")}
            print(f"{event['time']}  {event['event']:>9}  {event['submission']}  by {event['actor']}  {details or ''}")
        return 0
    if command == "study":
        _organizer(portal, args)
        folder = portal.study_run_folder(args.ids, args.out, with_measured=args.measured)
        print(f"wrote the study run folder {folder}; create the study with (options: python -m user_study create -h):")
        print(study_command(folder))
        return 0
    raise AssertionError(command)


def main(argv: Sequence[str] | None = None, *, hf_api: object = None) -> int:
    """Command-line entry point; returns the exit code (``hf_api``: a stand-in Hub client for tests)."""
    words = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(words)
    return run_reporting_errors(lambda: run(args, words, hf_api=hf_api))


if __name__ == "__main__":
    sys.exit(main())
