"""What a visitor reads: short lines without server paths or command-line recipes.

The recipes (how to fetch PyNET, which command builds a dataset) stay in the README and in the operator's views;
the page says in one line what is missing and whether it is on its way.
"""

from __future__ import annotations

import re

import gradio as gr

from .fetching import fetch_snapshot

__all__ = ["PYNET_ITEM", "error_text", "fetch_state", "hide_paths", "visitor_reason"]

PYNET_ITEM = "PyNET-Bokeh weights"
_BUSY = ("waiting", "downloading", "converting")
# an absolute path (/a/b/c, ~/a/b) or a Windows one; what a visitor may see of it is its last part
_PATH = re.compile(r"(?<![:/\\\w.])(?:~|[A-Za-z]:)?(?:[/\\][^/\\\s'\"`(),;]+){2,}")  # not inside a URL


def hide_paths(text: str) -> str:
    """``text`` with every server path shortened to its last part (``/root/.cache/x/pynet`` -> ``pynet``)."""
    return _PATH.sub(lambda m: re.split(r"[/\\]", m.group(0).rstrip("/\\"))[-1], str(text))


def error_text(exc: BaseException) -> str:
    """An exception's message as plain text (``str(gr.Error)`` is the quoted repr of its message)."""
    return str(exc.message) if isinstance(exc, gr.Error) else str(exc)


def fetch_state(item: str) -> str | None:
    """The background fetch's state of ``item`` (waiting, downloading, converting, ready, failed) or ``None``."""
    return next((entry["state"] for entry in fetch_snapshot() if entry["item"] == item), None)


def visitor_reason(name: str, reason: str) -> str:
    """One short line saying why method ``name`` cannot run here (no paths, no commands)."""
    if name == "pynet":
        state = fetch_state(PYNET_ITEM)
        if state in _BUSY:
            return "PyNET-Bokeh weights are being fetched; PyNET becomes available when they are ready."
        if state == "failed":
            return "PyNET-Bokeh weights could not be fetched on this Space (the Status tab says why)."
        return "PyNET-Bokeh weights are not installed on this Space."
    # the first sentence of the library's reason, without paths and without the recipe in backticks
    first = re.split(r"(?<=[.!?])\s", hide_paths(reason).strip(), maxsplit=1)[0]
    if "`" in first:
        first = re.sub(r"\s*\([^)]*\)", "", first)
        # "X weights are not installed; run `python -m ...` to put them in F": the clause with the recipe goes
        first = "; ".join(part for part in first.split("; ") if "`" not in part) or first
    return first.replace("`", "") or f"{name} is not installed on this Space."
