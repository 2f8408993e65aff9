"""The portal's leaderboard: submitted methods beside our measured rows, the paper's rows in their own block.

Numbers come only from stored results (``results/<id>/<profile>.json``, written from ``run.json``) and, for
measured rows, from an ``evaluation/run.py`` output folder scored on the same data (same dataset fingerprint)
under the same profile. Runtime and hardware of submissions are as reported by the submitter.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from evaluation.leaderboard import finite_or_none
from evaluation.run_layout import RUN_RECORD

if TYPE_CHECKING:
    from .models import PortalState

__all__ = ["BOARD_COLUMNS", "PAPER_COLUMNS", "SORT_KEYS", "leaderboard_frames"]

BOARD_COLUMNS = [
    "Rank",
    "Method",
    "PSNR ↑",
    "SSIM ↑",
    "LPIPS ↓",
    "Runtime s",
    "Hardware",
    "Uses depth",
    "Extra data",
    "Authors",
    "Licence",
    "Link",
    "Source",
    "Id",
]
PAPER_COLUMNS = ["Method", "PSNR ↑", "SSIM ↑", "LPIPS ↓", "MOS ↓", "Runtime s", "Hardware", "Source"]
# sort key -> (row field, higher is better)
SORT_KEYS = {"psnr": ("psnr", True), "ssim": ("ssim", True), "lpips": ("lpips", False), "runtime": ("runtime_s", False)}


def _fmt(value: Any, digits: int) -> str:
    number = finite_or_none(value)
    return "–" if number is None else f"{number:.{digits}f}"


def _submitted_rows(portal: PortalState, profile: str) -> list[dict[str, Any]]:
    rows = []
    for record in portal.store.submissions():
        if record.get("status") != "scored" or record.get("visibility") != "public":
            continue
        result = portal.store.result(record["id"], profile)
        if result is None:
            continue
        metrics = result["summary"]["metrics"]
        meta = record["meta"]
        rows.append(
            {
                "method": meta["method"],
                "psnr": finite_or_none(metrics["psnr"]["mean"]),
                "ssim": finite_or_none(metrics["ssim"]["mean"]),
                "lpips": finite_or_none(metrics["lpips"]["mean"]) if metrics["lpips"]["n"] else None,
                "runtime_s": finite_or_none(meta.get("runtime_s")),
                "hardware": meta.get("hardware") or "",
                "uses_depth": bool(meta.get("uses_depth")),
                "extra_data": bool(meta.get("extra_data")),
                "authors": meta.get("authors", ""),
                "license": meta.get("license", ""),
                "link": meta.get("link", ""),
                "source": f"submitted by @{record['submitter']['username']} on {record['submitted_at'][:10]}; "
                "runtime as reported",
                "id": record["id"],
                "fingerprint": result.get("dataset_fingerprint", ""),
                "split": record.get("split", ""),
            }
        )
    return rows


def _needs_depth(name: str) -> bool:
    from bokeh_model.registry import get_method_class

    try:
        return bool(getattr(get_method_class(name), "needs_depth", True))
    except KeyError:
        return True


def _measured_rows(folder: Path | None, profile: str, fingerprints: set[str]) -> tuple[list[dict[str, Any]], str]:
    if folder is None or not (Path(folder) / RUN_RECORD).is_file():
        return [], ""
    run = json.loads((Path(folder) / RUN_RECORD).read_text(encoding="utf-8"))
    if run.get("status") != "complete":
        return [], ""
    dataset = run.get("dataset", {})
    fingerprint = dataset.get("fingerprint", {}).get("sha256", "")
    if run.get("profile") != profile:
        return [], f"Our measured rows ({folder}) use profile {run.get('profile')!r}; switch profile to see them."
    if fingerprints and fingerprint not in fingerprints:
        return [], f"Our measured rows ({folder}) were scored on other data than the submissions; not shown."
    if dataset.get("synthetic"):
        return [], "Our measured rows come from the synthetic sample (not EBB!); not shown."
    rows = []
    for label, entry in run.get("methods", {}).items():
        if entry.get("kind") == "external":
            continue
        metrics = entry.get("metrics", {})
        runtime = entry.get("runtime_s") or {}
        rows.append(
            {
                "method": label,
                "psnr": finite_or_none(metrics.get("psnr", {}).get("mean")),
                "ssim": finite_or_none(metrics.get("ssim", {}).get("mean")),
                "lpips": finite_or_none(metrics.get("lpips", {}).get("mean"))
                if metrics.get("lpips", {}).get("n")
                else None,
                "runtime_s": finite_or_none(runtime.get("mean")),
                "hardware": entry.get("hardware") or "",
                "uses_depth": _needs_depth(str(entry.get("method"))),
                "extra_data": False,
                "authors": "this project",
                "license": "",
                "link": "",
                "source": f"measured by evaluation/run.py ({entry.get('n_images')} images, runtime measured)",
                "id": "",
                "fingerprint": fingerprint,
                "split": dataset.get("split", ""),
            }
        )
    return rows, ""


def _display(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "Rank": i + 1,
                "Method": r["method"],
                "PSNR ↑": _fmt(r["psnr"], 2),
                "SSIM ↑": _fmt(r["ssim"], 4),
                "LPIPS ↓": _fmt(r["lpips"], 4) if r["lpips"] is not None else "n/a",
                "Runtime s": _fmt(r["runtime_s"], 3),
                "Hardware": r["hardware"],
                "Uses depth": "yes" if r["uses_depth"] else "no",
                "Extra data": "yes" if r["extra_data"] else "no",
                "Authors": r["authors"],
                "Licence": r["license"],
                "Link": r["link"],
                "Source": r["source"],
                "Id": r["id"],
            }
            for i, r in enumerate(rows)
        ],
        columns=BOARD_COLUMNS,
    )


def _paper_frame() -> pd.DataFrame:
    from evaluation.leaderboard import PAPER_ROWS

    return pd.DataFrame(
        [
            {
                "Method": r["method"],
                "PSNR ↑": _fmt(r["psnr"], 2),
                "SSIM ↑": _fmt(r["ssim"], 4),
                "LPIPS ↓": _fmt(r["lpips"], 4),
                "MOS ↓": _fmt(r["mos"], 2),
                "Runtime s": _fmt(r["runtime_s"], 2),
                "Hardware": r["hardware"],
                "Source": "reported in paper (200-image EBB! test set, private targets)",
            }
            for r in PAPER_ROWS
        ],
        columns=PAPER_COLUMNS,
    )


def leaderboard_frames(
    portal: PortalState,
    profile: str,
    *,
    sort_by: str = "psnr",
    uses_depth: str = "any",
    hardware: str = "",
    include_measured: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """See :meth:`Portal.leaderboard`."""
    from .models import PROFILES, PortalError

    if profile not in PROFILES:
        raise PortalError(f"profile {profile!r} is unknown; use one of {list(PROFILES)}")
    if sort_by not in SORT_KEYS:
        raise PortalError(f"sort key {sort_by!r} is unknown; use one of {list(SORT_KEYS)}")
    if uses_depth not in ("any", "yes", "no"):
        raise PortalError("uses_depth must be 'any', 'yes' or 'no'")
    rows = _submitted_rows(portal, profile)
    notes: list[str] = []
    fingerprints = {r["fingerprint"] for r in rows if r["fingerprint"]}
    if include_measured:
        measured, note = _measured_rows(portal.settings.measured_dir, profile, fingerprints)
        rows += measured
        if note:
            notes.append(note)
    if len(fingerprints) > 1:
        notes.append(
            f"Rows were scored on {len(fingerprints)} different versions of the data (see each result's "
            "dataset fingerprint); compare only rows of the same version."
        )
    if uses_depth != "any":
        rows = [r for r in rows if r["uses_depth"] == (uses_depth == "yes")]
    if (hardware or "").strip():
        needle = hardware.strip().lower()
        rows = [r for r in rows if needle in r["hardware"].lower()]
    key, higher = SORT_KEYS[sort_by]
    rows.sort(key=lambda r: (r[key] is None, -(r[key] or 0.0) if higher else (r[key] or 0.0)))
    notes.append(
        f"Profile {profile!r}: "
        + (
            "the PyNET-Bokeh authors' protocol (32-px border crop, Gaussian SSIM)."
            if profile == "pynet"
            else "DMSHN-style (no crop, scikit-image defaults), as in published Val294 tables."
        )
        + " Numbers of the two profiles are not comparable."
    )
    notes.append(
        "Runtime and hardware of submitted rows are as reported by the submitter; never compare runtimes "
        "across devices. The paper's rows are on a different, private test set."
    )
    return _display(rows), _paper_frame(), notes
