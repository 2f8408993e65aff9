"""Atomic file writes shared by every part of the project (library, evaluation, user study, app).

A file is written under a temporary name in the same folder and renamed into place, so readers (the app,
a resumed run, another process) never see half a file, and an interrupted write leaves the old file intact.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["atomic_directory", "atomic_write", "atomic_writer", "new_file_mode", "safe_cell", "spreadsheet_csv"]

# Spreadsheets run a cell starting with one of these as a formula (a tab, CR or LF start hides one).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, *, suffix: str = "") -> Iterator[BinaryIO]:
    """Binary handle whose content replaces ``path`` when the block ends without an exception.

    The file gets mode 0644 (``mkstemp`` creates 0600): results and images are meant to be read by others,
    e.g. a web server running as another user. Parent folders are created.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            yield handle
        os.chmod(temp, 0o644)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def new_file_mode() -> int:
    """The mode a newly created file gets under this process's umask (0644 under the usual 022): for files
    written through ``mkstemp``, which creates them 0600, so that other users can read an export or a model."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def safe_cell(value: Any) -> Any:
    """Neutralise spreadsheet formulas: a string whose first non-blank character is ``= + - @`` (spreadsheets
    skip leading spaces, so `` =HYPERLINK(...)`` is a formula too) or that starts with a control char gets a
    leading ``'``."""
    if isinstance(value, str) and (value.startswith(_FORMULA_START) or value.lstrip().startswith(_FORMULA_START)):
        return "'" + value
    return value


def spreadsheet_csv(frame: Any) -> str:
    """CSV text of a pandas DataFrame that a spreadsheet reads as written: formula-like text cells neutralised
    (:func:`safe_cell`) and RFC 4180 CRLF line ends, so that every cell holding a CR or an LF is quoted (with
    ``\n`` line ends Python's csv writer leaves a bare CR unquoted, and a spreadsheet starts a new row there)."""
    return frame.map(safe_cell).to_csv(index=False, lineterminator="\r\n")


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` (text is UTF-8, newlines kept as given) to ``path`` atomically; returns the path."""
    with atomic_writer(path) as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder beside ``path`` whose content replaces ``path`` when the block ends without an exception.

    For outputs that are a folder (a converted model, a training checkpoint): a reader sees the old folder or the
    new one, never half of one. Folders end 0755 and files 0644 (``mkdtemp`` makes the folder private and
    safetensors writes 0600 files): weights are meant to be shared. On an exception nothing is left behind.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield temp
        for item in temp.rglob("*"):
            item.chmod(0o755 if item.is_dir() else 0o644)
        temp.chmod(0o755)
        if target.exists():
            shutil.rmtree(target)
        os.replace(temp, target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
