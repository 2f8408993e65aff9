"""What a run prints: the synthetic-sample banner and, at the end, one line per method and per skipped method."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from evaluation.run_layout import REPORT, TABLE_MD

__all__ = ["print_summary", "synthetic_banner"]


def synthetic_banner(description: str) -> str:
    """The banner shown when no ``--dataset`` was given: these numbers are not EBB! results."""
    return "=" * 78 + f"\n  {description}\n  No --dataset given: these numbers are NOT EBB! results.\n" + "=" * 78


def print_summary(record: dict[str, Any], out: Path, say: Callable[[str], None] = print) -> None:
    """Coverage warning, each method's means and runtime, the skipped methods and where the tables are."""
    coverage = record["dataset"]["coverage"]
    if not coverage["complete"]:
        say(f"warning: incomplete split: {coverage['n']} of {coverage['expected']} images scored")
    for label, summary in record["methods"].items():
        metrics = summary["metrics"]
        runtime = summary["runtime_s"]
        lpips_text = "n/a" if metrics["lpips"]["n"] == 0 else f"{metrics['lpips']['mean']:.4f}"
        say(
            f"{label:>16}: PSNR {metrics['psnr']['mean']:.2f}  SSIM {metrics['ssim']['mean']:.4f}  "
            f"LPIPS {lpips_text}  runtime "
            + (f"{runtime['mean']:.4f} s" if runtime else "n/a")
            + f"  ({summary['n_images']} images)"
        )
    for entry in record["skipped_methods"]:
        say(f"{entry['method']:>16}: not scored ({entry['reason']})")
    say(f"wrote {out / TABLE_MD}, {out / REPORT} and per-image results")
