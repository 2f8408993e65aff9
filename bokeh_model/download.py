"""The one HTTP downloader of the project: resumable, verified, atomic (:func:`download`).

Data goes to ``NAME.part`` (continued with an HTTP ``Range`` request after a cut) and is renamed to ``NAME`` only
when complete and verified, so a cut transfer is never taken for a finished file; its SHA-256 is computed while
it arrives, and one process at a time downloads to a destination (a second one waits for the first, then uses
its file). A refused or dropped connection is retried after a growing pause (1, 2, 4 s), so a short outage does
not end a long download. :mod:`bokeh_model.fetch` uses it for the
PyNET weights and the LPIPS trunk, :mod:`evaluation.ebb` for the EBB! archive. Offline (``HF_HUB_OFFLINE=1``,
``BOKEH_OFFLINE=1``; :func:`is_offline`) callers raise :class:`FetchError` (exit code 3) instead of asking.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError, ModelUnavailableError

__all__ = [
    "OFFLINE_ENV",
    "DownloadResult",
    "FetchError",
    "ProgressCallback",
    "download",
    "exclusive",
    "is_offline",
    "sha256_file",
]

OFFLINE_ENV = "BOKEH_OFFLINE"
ProgressCallback = Callable[[str, int, int | None], None]
"""``callback(label, bytes_done, bytes_total_or_None)``, called as data arrives (the Space's Status tab)."""

_CHUNK = 1 << 20
_TRUE = {"1", "true", "yes", "on"}
RETRY_PAUSE_S = 1.0  # first pause before reconnecting; doubled after each failed try, at most RETRY_PAUSE_MAX_S
RETRY_PAUSE_MAX_S = 30.0
LOCK_WAIT_S = 3600.0  # how long a second process waits for the one already downloading the same file
_sleep = time.sleep  # replaced in tests
_RETRY_HTTP = {429, 500, 502, 503, 504}  # the server is busy or restarting: worth another try


class FetchError(ModelUnavailableError):
    """A model or file could not be fetched (offline, server error, corrupt or unexpected content)."""


def is_offline(offline: bool | None = None) -> bool:
    """``offline`` if given, else whether ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``, which huggingface_hub
    also honours) or ``BOKEH_OFFLINE`` is set to a true value."""
    if offline is not None:
        return bool(offline)
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", OFFLINE_ENV)
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in names)


_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def source_url(location: str) -> str:
    """Where to download from, as a URL: an ``http(s)://`` or ``file://`` URL as given; a local path (a copy made
    by hand, e.g. carried to an offline machine) as its ``file://`` URL, a folder's ending in ``/``.

    Raises:
        InputError: a local path that does not exist.
    """
    text = location.strip()
    if _URL_SCHEME.match(text):
        return text
    path = Path(text).expanduser()
    if not path.exists():
        raise InputError(
            f"{location!r} is neither a URL (http://, https://, file://) nor an existing file or folder on this machine"
        )
    uri = path.resolve().as_uri()
    return uri + "/" if path.is_dir() else uri


def is_local_url(url: str) -> bool:
    """Whether ``url`` reads from this machine's disk (``file://``), which offline mode allows."""
    return url.lower().startswith("file:")


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------- download


@dataclass
class DownloadResult:
    """A completed, verified download."""

    path: Path
    url: str
    bytes: int
    sha256: str
    resumed_from: int = 0  # bytes already on disk from an earlier, interrupted transfer
    seconds: float = 0.0


def _progress_bar(label: str, total: int | None, initial: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=label, disable=not enabled
    )


def _content_range(value: str | None) -> tuple[int, int | None] | None:
    """``bytes START-END/TOTAL`` -> ``(START, TOTAL)`` (``TOTAL`` ``None`` when ``*``)."""
    match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", value or "")
    if not match:
        return None
    return int(match.group(1)), None if match.group(2) == "*" else int(match.group(2))


def _hash_existing(path: Path) -> tuple[Any, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
            size += len(chunk)
    return digest, size


def _open(url: str, start: int, timeout: float) -> Any:
    headers = {"User-Agent": "bokeh-model-fetch/1", "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)  # noqa: S310


def _unreachable(url: str, exc: BaseException) -> FetchError:
    reason = getattr(exc, "reason", exc)
    return FetchError(f"cannot reach {url} ({reason}); check the network or the URL, then run the same command again")


def download(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    sha256_prefix: str | None = None,
    label: str | None = None,
    progress: bool = True,
    callback: ProgressCallback | None = None,
    retries: int = 3,
    timeout: float = 60.0,
) -> DownloadResult:
    """Download ``url`` to ``dest``: resumable, verified, atomic.

    Data goes to ``dest + ".part"``; a later call (or one of the ``retries`` within this call) continues it with
    an HTTP ``Range`` request. Only a transfer that reached the announced size and passed the checks is renamed
    to ``dest`` (mode 0644). A checksum mismatch deletes the partial file (it would never become right).

    Args:
        url: ``http(s)://`` or ``file://`` URL.
        dest: final path; parent folders are created.
        sha256: expected SHA-256 (hex); ``sha256_prefix``: expected first hex digits (torch hub file names).
        label: progress bar text (default: the file name).
        progress: show a tqdm bar on stderr.
        callback: ``callback(label, done, total)`` as bytes arrive.
        retries: how many times a refused connection, a busy server (HTTP 429/5xx) or a cut transfer is tried
            again within this call, after pauses of 1, 2, 4, ... seconds (7 s in all for the default 3: an outage
            of a few seconds does not end the download).
        timeout: seconds without data before giving up on a connection.

    Raises:
        FetchError: unreachable host, HTTP error, cut transfer (the ``.part`` file is kept for resuming) or
            checksum mismatch.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(dest.with_name(dest.name + ".lock"), url) as waited:
        if waited and dest.is_file():  # the other process finished this very file: use it, after the same checks
            digest = sha256_file(dest)
            expected = (sha256 or "").lower()
            if not (expected and digest != expected) and not (
                sha256_prefix and not digest.startswith(sha256_prefix.lower())
            ):
                return DownloadResult(dest, url, dest.stat().st_size, digest)
        return _download_locked(url, dest, sha256, sha256_prefix, label, progress, callback, retries, timeout)


@contextlib.contextmanager
def exclusive(lock_path: str | os.PathLike, what: str, *, wait_s: float | None = None) -> Iterator[bool]:
    """Hold ``lock_path`` (an advisory lock) so that one process at a time works on ``what``; yields whether it
    had to wait for another process first (then what that one made may already be there).

    A second process waits (up to ``wait_s``, default :data:`LOCK_WAIT_S`, saying so once on stderr) instead of
    failing, so two ``fetch`` commands started together both succeed.

    Raises:
        FetchError: still locked after ``wait_s``.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no advisory locks, accept the (rare) race
        yield False
        return
    lock_path = Path(lock_path)
    limit = LOCK_WAIT_S if wait_s is None else wait_s
    deadline, waited = time.monotonic() + limit, False
    while True:
        handle = open(lock_path, "a")  # noqa: SIM115 - closed below or after the block
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            if time.monotonic() >= deadline:
                raise FetchError(
                    f"{what}: another process has been working on it for over {limit:.0f} s ({lock_path}); "
                    "if none is running, delete that file and try again"
                ) from None
            if not waited:
                import sys

                print(f"waiting for another process that is fetching {what} ({lock_path})", file=sys.stderr)
            waited = True
            _sleep(0.5)
            continue
        # the holder before us may have removed the file after we opened it: then lock the new one instead
        try:
            same = os.fstat(handle.fileno()).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        handle.close()
    try:
        yield waited
    finally:
        lock_path.unlink(missing_ok=True)
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _download_locked(
    url: str,
    dest: Path,
    sha256: str | None,
    sha256_prefix: str | None,
    label: str | None,
    progress: bool,
    callback: ProgressCallback | None,
    retries: int,
    timeout: float,
) -> DownloadResult:
    part = dest.with_name(dest.name + ".part")
    label = label or dest.name
    started = time.perf_counter()
    # A partial file is only continued from the URL it came from (another URL could be another file).
    origin = part.with_name(part.name + ".url")
    if part.exists() and (not origin.is_file() or origin.read_text().strip() != url):
        part.unlink()
    resumed_from = part.stat().st_size if part.exists() else 0
    attempt = 0

    def pause() -> None:  # before the next try: 1, 2, 4, ... seconds
        _sleep(min(RETRY_PAUSE_S * 2 ** (attempt - 1), RETRY_PAUSE_MAX_S))

    while True:
        digest, done = _hash_existing(part) if part.exists() else (hashlib.sha256(), 0)
        try:
            response = _open(url, done, timeout)
        except urllib.error.HTTPError as exc:
            if exc.code in _RETRY_HTTP and attempt < retries:
                attempt += 1
                pause()
                continue
            if exc.code == 416 and done:  # our partial file is already complete (or longer than the file)
                total = (_content_range(exc.headers.get("Content-Range")) or (0, None))[1]
                if total == done:
                    break
                part.unlink(missing_ok=True)  # inconsistent with the server: start over
                resumed_from = 0
                attempt += 1
                if attempt > retries:
                    raise FetchError(f"{url}: the server refused to resume the download (HTTP 416)") from None
                continue
            raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:  # refused, reset, DNS: maybe a short outage
            if attempt < retries and not is_local_url(url):  # a missing local file stays missing
                attempt += 1
                pause()
                continue
            raise _unreachable(url, exc) from None
        except ValueError as exc:  # a malformed URL never gets better
            raise _unreachable(url, exc) from None
        with response:
            status = getattr(response, "status", 200)
            length = response.headers.get("Content-Length")
            if done and status == 206:
                crange = _content_range(response.headers.get("Content-Range"))
                if crange is None or crange[0] != done:
                    raise FetchError(f"{url}: the server resumed at the wrong offset ({crange}); delete {part}")
                total = crange[1]
                mode = "ab"
            else:
                if done:  # the server ignored Range: start again from zero
                    digest, done, resumed_from = hashlib.sha256(), 0, 0
                total = int(length) if length is not None and length.isdigit() else None
                mode = "wb"
            origin.write_text(url + "\n")
            bar = _progress_bar(label, total, done, progress)
            cut: BaseException | None = None
            try:
                with open(part, mode) as handle:
                    while True:
                        try:
                            chunk = response.read(_CHUNK)
                        except (OSError, ValueError) as exc:  # IncompleteRead, reset, timeout
                            cut = exc
                            break
                        if not chunk:
                            break
                        handle.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        bar.update(len(chunk))
                        if callback is not None:
                            callback(label, done, total)
            finally:
                bar.close()
        if (total is not None and done < total) or cut is not None:
            attempt += 1
            if attempt > retries:
                raise FetchError(
                    f"{url}: transfer cut at {done:,} of {total if total is not None else '?'} bytes "
                    f"({cut or 'connection closed'}); {part} is kept, run the same command again to resume"
                )
            pause()
            continue
        if total is not None and done > total:
            part.unlink(missing_ok=True)
            raise FetchError(f"{url}: received {done:,} bytes, more than the announced {total:,}; deleted")
        break
    digest_hex = digest.hexdigest()
    size = part.stat().st_size
    expected = (sha256 or "").lower()
    if (expected and digest_hex != expected) or (sha256_prefix and not digest_hex.startswith(sha256_prefix.lower())):
        part.unlink(missing_ok=True)
        origin.unlink(missing_ok=True)
        want = expected or f"{sha256_prefix}..."
        raise FetchError(f"{url}: SHA-256 {digest_hex} does not match the expected {want}; the download was deleted")
    os.chmod(part, 0o644)
    os.replace(part, dest)
    origin.unlink(missing_ok=True)
    return DownloadResult(dest, url, size, digest_hex, resumed_from, time.perf_counter() - started)
