"""Table 1 leaderboards: the paper's six rows plus the measured methods of a run, with MOS when available.

Everything here is re-derived from files in a run's output folder: ``run.json`` (written by
``evaluation/run.py``), ``per_image.csv`` and an optional ``mos.csv`` (written by the user-study module;
columns ``method, mos, ci_low, ci_high, rank, sig_rank, n_ratings``; lower MOS is better). So after a user
study, :func:`rebuild_tables` refreshes ``table.md``, ``table.csv``, ``leaderboard.json`` and
``report.html`` without recomputing anything.

>>> # rebuild_tables("runs/val294")          # after mos.csv appeared
>>> # load_leaderboard("runs/val294")        # -> pandas.DataFrame (the Space shows it)
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from bokeh_model.files import atomic_write, spreadsheet_csv
from evaluation.run_layout import LEADERBOARD, PER_IMAGE, REPORT, RUN_RECORD, TABLE_CSV, TABLE_MD

from .paper_table import PAPER_ROWS
from .report import distribution_figure, method_colors, mos_figure, runtime_quality_figure, write_report

__all__ = [
    "MOS_COLUMNS",
    "finite_or_none",
    "is_ebb_run",
    "PAPER_PROFILE",
    "PAPER_ROWS",
    "PAPER_SOURCE",
    "TABLE_COLUMNS",
    "leaderboard_figures",
    "leaderboard_rows",
    "load_leaderboard",
    "read_mos",
    "rebuild_tables",
    "render_markdown",
]

PAPER_SOURCE = "reported in paper"
# The metric profile that follows the paper's protocol; its Table 1 rows are shown only beside this one.
PAPER_PROFILE = "pynet"
TABLE_COLUMNS = ["Method", "Hardware", "Runtime s", "PSNR ↑", "SSIM ↑", "LPIPS ↓", "MOS ↓", "Source"]
MOS_COLUMNS = ["method", "mos", "ci_low", "ci_high", "rank", "sig_rank", "n_ratings"]

_SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def _read_run(out_dir: Path) -> dict[str, Any]:
    path = out_dir / RUN_RECORD
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; run `python evaluation/run.py --out {out_dir}` first")
    run = json.loads(path.read_text(encoding="utf-8"))
    if run.get("status") != "complete":
        raise ValueError(f"{path} describes an incomplete run (status {run.get('status')!r}); rerun the evaluation")
    return run


def read_mos(out_dir: str | os.PathLike) -> pd.DataFrame | None:
    """The user study's ``mos.csv`` in ``out_dir``, or ``None`` when there is none.

    Raises:
        ValueError: the file lacks a required column (``method``, ``mos``).
    """
    path = Path(out_dir) / "mos.csv"
    if not path.is_file():
        return None
    mos = pd.read_csv(path)
    missing = [c for c in ("method", "mos") if c not in mos.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}; expected {MOS_COLUMNS}")
    for column in MOS_COLUMNS:
        if column not in mos.columns:
            mos[column] = float("nan")
    if mos["rank"].isna().all():
        mos["rank"] = mos["mos"].rank(method="min")
    mos["method"] = mos["method"].astype(str)
    return mos


def finite_or_none(value: Any) -> float | None:
    """``value`` as a float, or ``None`` when it is missing, not a number, NaN or infinite."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def is_ebb_run(run: dict[str, Any]) -> bool:
    """Whether a run was measured on EBB! (the data of the paper's Table 1), not on a synthetic or other set."""
    dataset = run.get("dataset", {}) or {}
    if dataset.get("synthetic"):
        return False
    # val294 is EBB!'s community split; otherwise the dataset's name (e.g. the folder `evaluation.ebb` wrote) says it
    return dataset.get("split") == "val294" or "ebb" in str(dataset.get("name", "")).lower()


def shows_paper_rows(run: dict[str, Any]) -> bool:
    """Whether the paper's rows belong beside this run: only beside EBB! data under the paper's protocol
    (``pynet``), or with no run at all (the paper's rows alone)."""
    if not run:
        return True
    return run.get("profile") == PAPER_PROFILE and is_ebb_run(run)


def _lpips_unofficial(run: dict[str, Any]) -> bool:
    """The run's LPIPS came from an AlexNet trunk that is not torchvision's published file."""
    lpips = run.get("lpips") or {}
    return bool(lpips.get("available")) and (lpips.get("trunk") or {}).get("official") is False


# Marks a measured LPIPS cell scored with an unofficial AlexNet trunk (explained in the notes).
UNOFFICIAL_MARK = " †"


def leaderboard_rows(run: dict[str, Any], mos: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """Rows of the leaderboard: the paper's six (marked :data:`PAPER_SOURCE`, only under the ``pynet``
    profile, whose protocol they were measured with) then the run's measured methods.

    Measured rows are sorted by MOS when the user study rated them, else by PSNR (higher first).
    """
    rows: list[dict[str, Any]] = (
        [{**row, "source": PAPER_SOURCE, "n_images": 200, "mos_ci": None} for row in PAPER_ROWS]
        if shows_paper_rows(run)
        else []
    )
    dataset = run.get("dataset", {})
    where = (
        "synthetic sample, not EBB!" if dataset.get("synthetic") else f"{dataset.get('name')} / {dataset.get('split')}"
    )
    lookup = {} if mos is None else {str(r["method"]): r for _, r in mos.iterrows()}
    measured = []
    for label, entry in run.get("methods", {}).items():
        metrics = entry.get("metrics", {})
        runtime = entry.get("runtime_s") or {}
        study = lookup.get(label)
        rank = finite_or_none(study["rank"]) if study is not None else None
        measured.append(
            {
                "method": label,
                "hardware": entry.get("hardware") or "",
                "runtime_s": finite_or_none(runtime.get("mean")),
                "runtime_median_s": finite_or_none(runtime.get("median")),
                "normalized_runtime_s": None,
                "psnr": finite_or_none(metrics.get("psnr", {}).get("mean")),
                "ssim": finite_or_none(metrics.get("ssim", {}).get("mean")),
                "lpips": finite_or_none(metrics.get("lpips", {}).get("mean")),
                "mos": finite_or_none(study["mos"]) if study is not None else None,
                "mos_rank": int(rank) if rank is not None else None,
                "mos_ci": (
                    [finite_or_none(study["ci_low"]), finite_or_none(study["ci_high"])] if study is not None else None
                ),
                "n_images": entry.get("n_images"),
                "source": f"measured: {where}, profile {run.get('profile')}, {entry.get('n_images')} images",
            }
        )
    if any(row["mos"] is not None for row in measured):
        measured.sort(key=lambda r: (r["mos"] is None, r["mos"] if r["mos"] is not None else 0.0))
        # One ranking per table: the paper's MOS come from its own study, so beside this run's study they keep
        # their values but not their ranks (two "1"s in one column read as one ranking).
        rows = [{**row, "mos_rank": None} for row in rows]
    else:
        measured.sort(key=lambda r: -(r["psnr"] if r["psnr"] is not None else -math.inf))
    return rows + measured


def _fmt(value: Any, digits: int) -> str:
    number = finite_or_none(value)
    return "–" if number is None else f"{number:.{digits}f}"


def _fmt_runtime(value: Any) -> str:
    number = finite_or_none(value)
    if number is None:
        return "–"
    return f"{number:.2f}" if number >= 0.1 else f"{number:.3g}"


def _display(row: dict[str, Any], lpips_available: bool, lpips_unofficial: bool = False) -> dict[str, str]:
    mos = "–" if row["mos"] is None else f"{row['mos']:.2f}"
    if row["mos"] is not None and row.get("mos_rank") is not None:
        mos += str(int(row["mos_rank"])).translate(_SUBSCRIPTS)
    lpips = _fmt(row["lpips"], 4)
    if lpips == "–" and row["source"] != PAPER_SOURCE and not lpips_available:
        lpips = "n/a"
    elif lpips != "–" and row["source"] != PAPER_SOURCE and lpips_unofficial:
        lpips += UNOFFICIAL_MARK
    return {
        "Method": row["method"],
        "Hardware": row["hardware"],
        "Runtime s": _fmt_runtime(row["runtime_s"]),
        "PSNR ↑": _fmt(row["psnr"], 2),
        "SSIM ↑": _fmt(row["ssim"], 4),
        "LPIPS ↓": lpips,
        "MOS ↓": mos,
        "Source": row["source"],
    }


def _banners(run: dict[str, Any]) -> list[str]:
    """Warnings that belong above the table: synthetic data, an incomplete split."""
    dataset = run.get("dataset", {})
    banners = []
    if dataset.get("synthetic"):
        banners.append(
            "SYNTHETIC SAMPLE, NOT EBB!: measured rows come from procedural scenes with thin-lens targets; "
            "they are not comparable with the paper's rows."
        )
    coverage = dataset.get("coverage") or {}
    if coverage and coverage.get("complete") is False:
        missing = coverage.get("missing_ids") or []
        unexpected = coverage.get("unexpected_ids") or []
        details = []
        if missing:
            details.append(f"{len(missing)} missing: " + ", ".join(missing[:8]) + (", ..." if len(missing) > 8 else ""))
        if unexpected:
            outside = ", ".join(unexpected[:8]) + (", ..." if len(unexpected) > 8 else "")
            details.append(f"{len(unexpected)} ids outside {coverage.get('expected_ids')}: {outside}")
        if coverage.get("limit"):
            details.append(f"limited with --limit {coverage['limit']}")
        of = f" of {coverage['expected']}" if coverage.get("expected") else ""
        banners.append(
            f"INCOMPLETE SPLIT: {coverage.get('n')}{of} {dataset.get('split')} images scored"
            + (f" ({'; '.join(details)})" if details else "")
            + "; these means are not comparable with results on the full split."
        )
    return banners


def _notes(run: dict[str, Any], rows: list[dict[str, Any]] | None = None) -> list[str]:
    dataset = run.get("dataset", {})
    notes = list(run.get("notes") or [])
    fingerprint = dataset.get("fingerprint", {})
    notes.append(
        f"Measured on {dataset.get('description', dataset.get('name'))}: {fingerprint.get('n')} images, "
        f"fingerprint sha256 {str(fingerprint.get('sha256', ''))[:16]}."
    )
    notes.append(f"Metric profile {run.get('profile')!r}: {run.get('profile_description', '')}.")
    lpips = run.get("lpips", {})
    if not lpips.get("available", False):
        notes.append(f"LPIPS not computed: {lpips.get('reason', 'unavailable')}")
    elif _lpips_unofficial(run):
        notes.append(
            f"LPIPS values marked{UNOFFICIAL_MARK} were computed with an unofficial AlexNet trunk (SHA-256 "
            f"{str((lpips.get('trunk') or {}).get('sha256', ''))[:16]}...): not comparable with published LPIPS."
        )
    notes.append(
        "Runtime: mean seconds per image of the method call after warm-up (CUDA synchronised), on the "
        "hardware shown; never compare runtimes across devices."
    )
    if shows_paper_rows(run):
        if any(r["mos"] is not None for r in rows or [] if r["source"] != PAPER_SOURCE):
            notes.append(
                "MOS ranks (subscripts) rank this run's user study; the paper's MOS come from its own study and "
                "are shown without ranks."
            )
        notes.append(
            "Rows marked 'reported in paper' are Table 1 of Ignatov et al. (CVPRW 2020), measured with the "
            "authors' protocol (which the 'pynet' profile follows) on the 200-image EBB! test subset with "
            "private targets: not the same images as the measured rows. Paper runtimes normalised by the GPU "
            "index: " + ", ".join(f"{r['method']} {r['normalized_runtime_s']}" for r in PAPER_ROWS) + " s."
        )
    elif run.get("profile") != PAPER_PROFILE:
        notes.append(
            f"The paper's Table 1 rows are not shown: they were measured with the authors' protocol (profile "
            f"'{PAPER_PROFILE}': 32-px border crop, Gaussian SSIM) on other images, so they are not the same "
            f"metric as profile {run.get('profile')!r}. Run with --profile {PAPER_PROFILE} to see them."
        )
    else:
        notes.append(
            "The paper's Table 1 rows are not shown: they were measured on EBB!, and this run is not on EBB! data, "
            "so its numbers are not comparable with them."
        )
    notes.append(
        "MOS ↓: user-study mean opinion score, 0 = almost identical to the target ... 4 = mostly different; "
        "subscripts are ranks (1 = best)."
    )
    return notes


def _profile_line(run: dict[str, Any]) -> str:
    dataset = run.get("dataset", {})
    where = (
        "the synthetic sample (not EBB!)"
        if dataset.get("synthetic")
        else f"{dataset.get('name')}, split {dataset.get('split')}"
    )
    return f"Profile **{run.get('profile')}** on {where}"


def render_markdown(run: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """``table.md``: a title, banners, the profile, the Table 1 layout, methods not scored and notes."""
    lpips_available = bool(run.get("lpips", {}).get("available"))
    display = [_display(row, lpips_available, _lpips_unofficial(run)) for row in rows]
    lines = ["# Bokeh rendering: Table 1 leaderboard", ""]
    for banner in _banners(run):
        lines += [f"> **{banner}**", ""]
    lines += [_profile_line(run) + ".", ""]
    lines.append("| " + " | ".join(TABLE_COLUMNS) + " |")
    lines.append("|" + "|".join(["---"] * len(TABLE_COLUMNS)) + "|")
    for row in display:
        lines.append("| " + " | ".join(row[c].replace("|", "\\|") for c in TABLE_COLUMNS) + " |")
    lines.append("")
    skipped = run.get("skipped_methods") or []
    if skipped:
        lines += ["**Not scored:**", ""]
        lines += [f"- **{entry.get('method')}**: {entry.get('reason')}" for entry in skipped]
        lines.append("")
    lines += [f"- {note}" for note in _notes(run, rows)]
    return "\n".join(lines) + "\n"


def _table_frame(rows: list[dict[str, Any]], lpips_available: bool, lpips_unofficial: bool = False) -> pd.DataFrame:
    frame = pd.DataFrame([_display(row, lpips_available, lpips_unofficial) for row in rows], columns=TABLE_COLUMNS)
    return frame


def _csv_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Numbers (not formatted strings) in the Table 1 column names, plus MOS rank and the image count."""
    return pd.DataFrame(
        {
            "Method": [r["method"] for r in rows],
            "Hardware": [r["hardware"] for r in rows],
            "Runtime s": [r["runtime_s"] for r in rows],
            "PSNR ↑": [r["psnr"] for r in rows],
            "SSIM ↑": [r["ssim"] for r in rows],
            "LPIPS ↓": [r["lpips"] for r in rows],
            "MOS ↓": [r["mos"] for r in rows],
            "MOS rank": [r["mos_rank"] for r in rows],
            "Images": [r["n_images"] for r in rows],
            "Source": [r["source"] for r in rows],
        }
    )


def leaderboard_figures(out_dir: str | os.PathLike) -> list[Any]:
    """Plotly figures of a run folder, in this order: runtime vs PSNR of the measured methods, per-image metric
    distributions, and MOS with its interval when ``mos.csv`` exists (figures without data are left out).
    """
    folder = Path(out_dir)
    run = _read_run(folder)
    mos = read_mos(folder)
    colors = _colors(run, mos)
    figures: list[Any] = []
    measured = [r for r in leaderboard_rows(run, mos) if r["source"] != PAPER_SOURCE]
    # Runtime vs PSNR only for methods that were run here: prediction folders have no runtime.
    timed = [r for r in measured if r["runtime_s"] is not None and r["psnr"] is not None]
    if timed:
        figures.append(runtime_quality_figure(pd.DataFrame(timed), colors=colors))
    per_image_path = folder / PER_IMAGE
    if per_image_path.is_file():
        per_image = pd.read_csv(per_image_path, dtype={"id": str, "method": str})
        metrics = [m for m in ("psnr", "ssim", "lpips") if m in per_image]
        if len(per_image) and per_image[metrics].notna().any().any():
            figures.append(distribution_figure(per_image, colors=colors))
    if mos is not None and len(mos):
        figures.append(mos_figure(mos, colors=colors))
    return figures


def _colors(run: dict[str, Any], mos: pd.DataFrame | None) -> dict[str, str]:
    """The page's one method -> colour map: the run's methods in run order, then methods only in mos.csv."""
    methods = list(run.get("methods", {}))
    if mos is not None:
        methods += [str(m) for m in mos["method"]]
    return method_colors(methods)


def rebuild_tables(out_dir: str | os.PathLike) -> None:
    """Re-render ``table.md``, ``table.csv``, ``leaderboard.json`` and ``report.html`` of a run folder.

    Reads ``run.json`` and, when present, ``mos.csv`` and ``per_image.csv``.

    Raises:
        FileNotFoundError: no ``run.json`` in ``out_dir``.
        ValueError: ``run.json`` is from an incomplete run, or ``mos.csv`` lacks required columns.
    """
    folder = Path(out_dir)
    run = _read_run(folder)
    mos = read_mos(folder)
    rows = leaderboard_rows(run, mos)
    lpips_available = bool(run.get("lpips", {}).get("available"))
    atomic_write(folder / TABLE_CSV, spreadsheet_csv(_csv_frame(rows)))  # method labels are free text
    atomic_write(folder / TABLE_MD, render_markdown(run, rows))
    board = {
        "columns": TABLE_COLUMNS,
        "directions": {
            "PSNR ↑": "higher",
            "SSIM ↑": "higher",
            "LPIPS ↓": "lower",
            "MOS ↓": "lower",
            "Runtime s": "lower",
        },
        "profile": run.get("profile"),
        "dataset": {k: v for k, v in run.get("dataset", {}).items() if k != "fingerprint"}
        | {
            "sha256": run.get("dataset", {}).get("fingerprint", {}).get("sha256"),
            "n": run.get("dataset", {}).get("fingerprint", {}).get("n"),
        },
        "synthetic": bool(run.get("dataset", {}).get("synthetic")),
        "lpips": run.get("lpips"),
        "has_mos": mos is not None,
        "rows": rows,
        "table": _table_frame(rows, lpips_available, _lpips_unofficial(run)).to_dict(orient="records"),
        "banners": _banners(run),
        "coverage": run.get("dataset", {}).get("coverage"),
        "skipped_methods": run.get("skipped_methods") or [],
        "notes": _notes(run, rows),
    }
    atomic_write(folder / LEADERBOARD, json.dumps(board, indent=2, ensure_ascii=False))
    title = "Bokeh evaluation: " + (
        "synthetic sample, not EBB!"
        if board["synthetic"]
        else f"{run['dataset'].get('name')} / {run['dataset'].get('split')}"
    )
    write_report(
        folder / REPORT,
        leaderboard_figures(folder),
        title=f"{title} (profile {run.get('profile')})",
        banners=board["banners"],
        table=_table_frame(rows, lpips_available, _lpips_unofficial(run)),
        skipped=board["skipped_methods"],
        notes=board["notes"],
        colors=_colors(run, mos),
        paper_source=PAPER_SOURCE,
    )


def load_leaderboard(out_dir: str | os.PathLike | None) -> pd.DataFrame:
    """The leaderboard of a run folder as a DataFrame in the Table 1 layout (display strings).

    ``None`` gives the paper's reported rows alone (nothing has been evaluated yet).

    Uses ``leaderboard.json`` when present and newer than ``run.json`` / ``mos.csv``; otherwise the rows are
    derived from ``run.json`` (and ``mos.csv``) in memory, without writing anything.
    """
    if out_dir is None:
        return _table_frame(leaderboard_rows({}), lpips_available=False)
    folder = Path(out_dir)
    board_path = folder / LEADERBOARD
    inputs = [p for p in (folder / RUN_RECORD, folder / "mos.csv") if p.is_file()]
    if board_path.is_file() and all(board_path.stat().st_mtime >= p.stat().st_mtime for p in inputs):
        board = json.loads(board_path.read_text(encoding="utf-8"))
        return pd.DataFrame(board["table"], columns=board.get("columns", TABLE_COLUMNS))
    run = _read_run(folder)
    rows = leaderboard_rows(run, read_mos(folder))
    return _table_frame(rows, bool(run.get("lpips", {}).get("available")), _lpips_unofficial(run))
