"""``report.html``: one self-contained page (thumbnails inlined) with every aligned pair, its numbers, and every
rejected pair or left-out file with its reason."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from typing import Any

from bokeh_model.files import atomic_write

__all__ = ["write_report"]

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:16px;color:#1d2330;background:#f6f7f9}
h1{font-size:1.4em;margin:0 0 4px}h2{font-size:1.15em;margin:24px 0 8px}
.summary{color:#4a5263;margin:0 0 8px}.settings{font-size:.8em;color:#6b7385}
.grid{display:grid;align-items:start;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:12px}
.card{background:#fff;border:1px solid #dde1e8;border-radius:8px;padding:8px}
.card.bad{border-color:#e3a6a6;background:#fff8f8}
.thumbs{display:flex;gap:4px;overflow:hidden}.thumbs figure{margin:0;flex:1;min-width:0}
.thumbs img{width:100%;height:auto;display:block;border-radius:3px;background:#eee}
.thumbs figcaption{font-size:.7em;color:#6b7385;text-align:center}
.name{font-weight:600;font-size:.9em;word-break:break-all;margin:4px 0}
.tag{display:inline-block;font-size:.7em;padding:1px 6px;border-radius:8px;background:#e6ecf7;margin-left:4px}
table.m{font-size:.78em;border-collapse:collapse;width:100%}table.m td{padding:1px 4px}
table.m td:first-child{color:#6b7385}.reason{color:#a12a2a;font-size:.85em;margin:4px 0}
ul.problems{font-size:.85em}ul.problems li{margin:2px 0}code{font-size:.9em}
"""


def _image(base: Path, folder: str, name: str, caption: str) -> str:
    path = base / folder / name if folder else None
    if path is None or not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(caption)}" src="data:image/jpeg;base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _metrics_table(metrics: dict[str, Any], settings: dict[str, Any]) -> str:
    if not metrics or not metrics.get("matches"):
        return ""
    limits = {
        "reprojection_error": (".2f", " px (max {})", settings.get("max_reprojection_error")),
        "score": (".3f", " (min {})", settings.get("min_score")),
        "in_focus": (".0%", " of the frame", None),
        "overlap": (".0%", " (min {:.0%})", settings.get("min_overlap", 0)),
    }
    labels = {
        "reprojection_error": "reprojection error",
        "score": "alignment score",
        "in_focus": "in focus",
        "overlap": "overlap",
    }
    rows = [("inliers / matches", f"{metrics.get('inliers', 0)} / {metrics.get('matches', 0)}")]
    if metrics.get("model"):
        rows.insert(0, ("warp", metrics["model"]))
    for key, (fmt, suffix, limit) in limits.items():
        if metrics.get(key) is not None:  # numbers not measured before the rejection are left out
            rows.append((labels[key], format(metrics[key], fmt) + suffix.format(limit)))
    if metrics.get("size"):
        rows.append(("output", "{}x{}".format(*metrics["size"])))
    cells = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>" for k, v in rows)
    return f'<table class="m">{cells}</table>'


def write_report(summary: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write the report for a :func:`build_pairs_dataset` summary; returns its path."""
    base = Path(path).parent  # work folders in the summary are relative to the output folder
    settings = summary.get("settings", {})
    accepted, rejected, problems = summary["accepted"], summary["rejected"], summary["problems"]
    cards = []
    for item in accepted:
        thumbs = (
            _image(base, item["folder"], "thumb_narrow.jpg", "narrow (original)")
            + _image(base, item["folder"], "thumb_wide.jpg", "wide, aligned (bokeh)")
            + _image(base, item["folder"], "thumb_overlay.jpg", "overlay: red = narrow, cyan = wide")
        )
        notes = "".join(f'<div class="settings">{html.escape(n)}</div>' for n in item["metrics"].get("notes", []))
        cards.append(
            f'<div class="card"><div class="thumbs">{thumbs}</div><div class="name">#{item["id"]} '
            f'{html.escape(item["name"])}<span class="tag">{html.escape(item["split"])}</span>'
            f'<span class="tag">scene {html.escape(item["scene"])}</span></div>'
            f"{_metrics_table(item['metrics'], settings)}{notes}</div>"
        )
    bad_cards = []
    for item in rejected:
        thumbs = _image(base, item["folder"], "input_narrow.jpg", "narrow (input)")
        thumbs += _image(base, item["folder"], "input_wide.jpg", "wide (input)")
        bad_cards.append(
            f'<div class="card bad"><div class="thumbs">{thumbs}</div><div class="name">'
            f'{html.escape(item["name"])}</div><div class="reason">rejected: {html.escape(item["reason"])}</div>'
            f"{_metrics_table(item['metrics'], settings)}</div>"
        )
    problem_items = "".join(
        f"<li><code>{html.escape(p['what'])}</code>: {html.escape(p['reason'])}</li>" for p in problems
    )
    splits = ", ".join(f"{s}: {len(ids)}" for s, ids in summary.get("splits", {}).items()) or "none"
    title = f"Aperture pairs: {len(accepted)} aligned, {len(rejected)} rejected"
    depth = summary.get("depth_model") or "none (--no-depth)"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="summary">From <code>{html.escape(str(summary.get("pairs_dir")))}</code> (paired by {
        "matching names in two folders" if summary.get("mode") == "folders" else "EXIF capture time and aperture"
    }); splits by scene: {html.escape(splits)}; depth: {html.escape(str(depth))}; {len(problems)} file{
        "" if len(problems) == 1 else "s"
    } left out.</p>
<p class="settings">Thresholds: at least {settings.get("min_inliers")} RANSAC inliers and
{settings.get("min_inlier_ratio", 0):.0%} of the matches, reprojection error at most
{settings.get("max_reprojection_error")} px at the output size, alignment score (gradient-orientation correlation in
the in-focus area, 1 = same edges) at least {settings.get("min_score")}, overlap at least
{settings.get("min_overlap", 0):.0%}; output {settings.get("height")} px high. RAW: {
        html.escape(str(summary.get("raw_support")))
    }.</p>
<h2>Aligned pairs ({len(accepted)})</h2>
<div class="grid">{"".join(cards) or "<p>None.</p>"}</div>
<h2>Rejected pairs ({len(rejected)})</h2>
<div class="grid">{"".join(bad_cards) or "<p>None.</p>"}</div>
<h2>Files left out before alignment ({len(problems)})</h2>
{f'<ul class="problems">{problem_items}</ul>' if problems else "<p>None.</p>"}
</body></html>
"""
    return atomic_write(path, page)
