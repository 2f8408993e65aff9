"""Published weights of the field's methods (Bokehlicious, BokehMe, ...): where they come from, where they go.

A method module declares its checkpoints once with :func:`register_weights`; ``python -m bokeh_model fetch
<method> [--variant V] [--url URL]``, the Space's background fetch and the method's ``availability()`` all read
that one declaration. Files are downloaded with the project's resumable downloader (:func:`bokeh_model.download.
download`: progress bar, ``.part`` + HTTP ``Range``, one process per file, SHA-256) into
``<cache>/downloads/<method>-<variant>/`` and then moved, together with a ``source.json`` (URL, size, SHA-256,
licence, citation, time), into ``<cache>/<method>/<variant>/`` in one atomic folder swap: a loader sees a complete
variant or none.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .download import FetchError, ProgressCallback, download, exclusive, is_local_url, is_offline, source_url
from .errors import InputError

__all__ = [
    "MethodWeights",
    "WeightsFile",
    "fetch_method_weights",
    "get_weights_spec",
    "installed_weights",
    "method_weights_dir",
    "register_weights",
    "weights_availability",
    "weights_spec_names",
]

SOURCE_FILE = "source.json"


@dataclass(frozen=True)
class WeightsFile:
    """One file of a published checkpoint."""

    filename: str  # saved under this name in the variant's folder
    url: str  # the authors' public URL
    sha256: str | None = None  # a known digest (e.g. from a Git LFS pointer); None: recorded at the first fetch
    size: int | None = None  # bytes, when known (shown before the download)


@dataclass(frozen=True)
class MethodWeights:
    """The published checkpoints of one registered method."""

    method: str  # the registry name, which is also the ``fetch`` item
    variants: Mapping[str, tuple[WeightsFile, ...]]
    default_variant: str
    source: str  # the repository the files come from
    license: str  # the licence as found there, in plain words
    citation: str

    def __post_init__(self) -> None:
        if self.default_variant not in self.variants:
            raise ValueError(f"{self.method}: default variant {self.default_variant!r} is not one of its variants")

    def files(self, variant: str | None = None) -> tuple[WeightsFile, ...]:
        return self.variants[self.check_variant(variant)]

    def check_variant(self, variant: str | None) -> str:
        chosen = variant or self.default_variant
        if chosen not in self.variants:
            known = ", ".join(self.variants)
            raise InputError(f"{self.method} has no weights variant {chosen!r}; known variants: {known}")
        return chosen


_SPECS: dict[str, MethodWeights] = {}


def register_weights(spec: MethodWeights) -> MethodWeights:
    """Declare a method's published weights (called when its module is imported)."""
    _SPECS[spec.method] = spec
    return spec


def _ensure_methods_loaded() -> None:
    # The specs live in the method modules, which the registry imports on its first lookup.
    from .registry import list_methods

    list_methods()


def weights_spec_names() -> list[str]:
    """The methods whose weights ``fetch`` can download, in registration order."""
    _ensure_methods_loaded()
    return list(_SPECS)


def get_weights_spec(method: str) -> MethodWeights:
    if method not in _SPECS:
        _ensure_methods_loaded()
    try:
        return _SPECS[method]
    except KeyError:
        known = ", ".join(_SPECS) or "none"
        raise InputError(f"no published weights are declared for {method!r}; methods with weights: {known}") from None


def method_weights_dir(method: str, variant: str) -> Path:
    """``<cache>/<method>/<variant>``; the cache is ``$BOKEH_CACHE``, else ``~/.cache/bokeh_model``."""
    from .pynet import bokeh_cache_dir

    return bokeh_cache_dir() / method / variant


def _complete(folder: Path, files: tuple[WeightsFile, ...]) -> bool:
    return (folder / SOURCE_FILE).is_file() and all((folder / f.filename).is_file() for f in files)


def installed_weights(method: str, variant: str | None = None) -> Path | None:
    """The variant's folder when every file and its ``source.json`` are there, else ``None``."""
    spec = get_weights_spec(method)
    variant = spec.check_variant(variant)
    folder = method_weights_dir(method, variant)
    return folder if _complete(folder, spec.variants[variant]) else None


def weights_availability(method: str, variant: str | None = None) -> tuple[bool, str]:
    """``(True, folder line)`` or ``(False, what is missing and the command that fetches it)``."""
    spec = get_weights_spec(method)
    variant = spec.check_variant(variant)
    folder = installed_weights(method, variant)
    if folder is not None:
        return True, f"{method} weights ({variant}) in {folder}"
    flag = "" if variant == spec.default_variant else f" --variant {variant}"
    return False, (
        f"{method} weights ({variant}) are not installed; run `python -m bokeh_model fetch {method}{flag}` "
        f"(downloads from {spec.source}; `--url URL_OR_PATH` for a copy elsewhere) to put them in "
        f"{method_weights_dir(method, variant)}"
    )


def _file_url(base_or_file: str, weights: tuple[WeightsFile, ...], item: WeightsFile) -> str:
    if len(weights) == 1 and not base_or_file.endswith("/"):
        return base_or_file
    return urllib.parse.urljoin(base_or_file if base_or_file.endswith("/") else base_or_file + "/", item.filename)


def fetch_method_weights(
    method: str,
    variant: str | None = None,
    url: str | None = None,
    *,
    dest: str | os.PathLike | None = None,
    overwrite: bool = False,
    offline: bool | None = None,
    progress: bool = True,
    callback: ProgressCallback | None = None,
    log: Callable[[str], None] | None = None,
) -> Any:
    """Download a method's published weights and install them where its ``availability()`` looks.

    Args:
        method: a name from :func:`weights_spec_names`.
        variant: one of the spec's variants (default: its default variant).
        url: a copy elsewhere: for a one-file variant the file's URL, for several files a folder URL to which each
            file name is appended (``file://`` works).
        dest: install folder (default :func:`method_weights_dir`).

    Returns:
        :class:`bokeh_model.fetch.FetchResult`.

    Raises:
        FetchError: offline, unreachable, or a file whose SHA-256 differs from the declared one.
        InputError: an unknown method or variant.
    """
    from .fetch import FetchResult

    say = log or (lambda line: None)
    spec = get_weights_spec(method)
    variant = spec.check_variant(variant)
    files = spec.variants[variant]
    folder = Path(dest) if dest is not None else method_weights_dir(method, variant)
    if not overwrite and _complete(folder, files):
        return FetchResult(method, folder, "already installed", _source_details(folder))
    url = source_url(url) if url else None
    if is_offline(offline) and not (url and is_local_url(url)):  # a copy on this machine's disk is fine offline
        copy = "the file" if len(files) == 1 else "a folder holding " + ", ".join(f.filename for f in files)
        raise FetchError(
            f"{method}: weights ({variant}) not installed ({folder}) and this machine is offline "
            "(HF_HUB_OFFLINE / BOKEH_OFFLINE / --offline); run the same command on a machine with internet, "
            f"or copy the folder there, or give a copy of {copy}: --url PATH"
        )
    from .pynet import bokeh_cache_dir

    downloads = bokeh_cache_dir() / "downloads" / f"{method}-{variant}"
    downloads.mkdir(parents=True, exist_ok=True)
    # One process installs a variant at a time; one that waited finds the folder complete and uses it.
    with exclusive(downloads.with_name(downloads.name + ".lock"), f"{method} weights ({variant})") as waited:
        if waited and not overwrite and _complete(folder, files):
            return FetchResult(method, folder, "already installed", _source_details(folder))
        _download_and_install(spec, variant, url, folder, downloads, overwrite, progress, callback, say)
    return FetchResult(method, folder, "installed", _source_details(folder))


def _download_and_install(
    spec: MethodWeights,
    variant: str,
    url: str | None,
    folder: Path,
    downloads: Path,
    overwrite: bool,
    progress: bool,
    callback: ProgressCallback | None,
    say: Callable[[str], None],
) -> None:
    from .fetch import _replace_dir

    method, files = spec.method, spec.variants[variant]
    records = []
    for item in files:
        file_url = _file_url(url, files, item) if url else item.url
        target = downloads / item.filename
        if overwrite:
            target.unlink(missing_ok=True)
        say(f"downloading {file_url}")
        got = download(
            file_url,
            target,
            sha256=item.sha256,
            label=f"{method} {item.filename}",
            progress=progress,
            callback=callback,
        )
        records.append(
            {
                "file": item.filename,
                "url": file_url,
                "bytes": got.bytes,
                "sha256": got.sha256,
                "declared_sha256": item.sha256,
            }
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for item in files:
            shutil.move(str(downloads / item.filename), staged / item.filename)
        source = {
            "method": method,
            "variant": variant,
            "source": spec.source,
            "files": records,
            "license": spec.license,
            "citation": spec.citation,
            "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (staged / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n")
        staged.chmod(0o755)
        _replace_dir(staged, folder)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    shutil.rmtree(downloads, ignore_errors=True)


def _source_details(folder: Path) -> dict[str, Any]:
    try:
        record = json.loads((folder / SOURCE_FILE).read_text())
    except (OSError, ValueError):
        return {"source": "no source.json (installed by hand)"}
    details: dict[str, Any] = {"variant": record.get("variant"), "source": record.get("source")}
    for entry in record.get("files", []):
        details[entry.get("file", "?")] = f"{entry.get('bytes', 0):,} bytes, SHA-256 {entry.get('sha256')}"
    details["licence"] = record.get("license")
    return details
