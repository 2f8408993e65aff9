"""Fetch what the project needs from the internet, on request: PyNET weights, the depth model, the LPIPS trunk.

``python -m bokeh_model fetch {pynet,depth,lpips,all}`` (and the Space's background fetch) call this module.
Nothing here runs implicitly in the middle of a render or a test; every download is asked for.

* :func:`~bokeh_model.download.download` (:mod:`bokeh_model.download`, re-exported here) is the one HTTP
  downloader: a progress bar, resumable with HTTP ``Range``, verified, renamed into place only when complete.
* :func:`fetch_pynet`: the authors' ``PyNET_Bokeh_pretrained.zip`` -> its TF checkpoint (found by its
  ``.index`` file anywhere in the zip) -> the strict converter -> a ``save_pretrained`` folder in
  :func:`~bokeh_model.pynet.default_pynet_dir`, with ``source.json`` (URL, size, SHA-256, conversion).
* :func:`fetch_depth`: a ``huggingface_hub`` snapshot of the depth model into the Hugging Face cache.
* :func:`fetch_lpips`: torchvision's AlexNet trunk into ``$TORCH_HOME/hub/checkpoints/``, checked against the
  SHA-256 prefix in its file name (the file is described in :mod:`bokeh_model.lpips_trunk`).

Offline (``HF_HUB_OFFLINE=1``, ``BOKEH_OFFLINE=1``, ``offline=True`` or no network) each function raises
:class:`FetchError` (a :class:`ModelUnavailableError`: exit code 3) with one readable line.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .download import (
    OFFLINE_ENV,
    DownloadResult,
    FetchError,
    ProgressCallback,
    download,
    exclusive,
    is_local_url,
    is_offline,
    sha256_file,
    source_url,
)
from .errors import InputError
from .lpips_trunk import ALEXNET_URL, alexnet_trunk_path, official_sha256_prefix
from .pynet import bokeh_cache_dir, default_pynet_dir, weights_status

__all__ = [
    "ALEXNET_URL",
    "DEFAULT_PYNET_URL",
    "OFFLINE_ENV",
    "PYNET_ATTRIBUTION",
    "PYNET_LICENSE",
    "PYNET_URL_ENV",
    "DownloadResult",
    "FetchError",
    "FetchResult",
    "ProgressCallback",
    "download",
    "fetch_depth",
    "fetch_lpips",
    "fetch_pynet",
    "is_offline",
    "pynet_source_url",
    "sha256_file",
]

# From the authors' README (aiff22/PyNET-Bokeh, "Pre-trained model").
DEFAULT_PYNET_URL = "https://data.vision.ee.ethz.ch/ihnatova/public/ebb/PyNET_Bokeh_pretrained.zip"
PYNET_URL_ENV = "BOKEH_PYNET_URL"
_CHUNK = 1 << 20
PYNET_LICENSE = (
    "The PyNET-Bokeh weights are by Andrey Ignatov, Jagruti Patel and Radu Timofte (ETH Zurich) and are licensed "
    "CC BY-NC-SA 4.0: academic, non-commercial use only, with attribution, share-alike "
    "(https://creativecommons.org/licenses/by-nc-sa/4.0/)."
)
PYNET_ATTRIBUTION = (
    "Cite: A. Ignatov, J. Patel, R. Timofte, 'Rendering Natural Camera Bokeh Effect with Deep Learning', "
    "CVPR Workshops 2020 (https://arxiv.org/abs/2006.05698); original code and weights: "
    "https://github.com/aiff22/PyNET-Bokeh"
)


def _offline_line(what: str, where: Path | str) -> str:
    return (
        f"{what}: not installed ({where}) and this machine is offline (HF_HUB_OFFLINE / BOKEH_OFFLINE / --offline); "
        "run the same command on a machine with internet, or copy the files there"
    )


# ------------------------------------------------------------------------------------------------ PyNET


@dataclass
class FetchResult:
    """What one ``fetch`` did; ``lines()`` is what the CLI prints."""

    item: str
    path: Path
    status: str  # "installed", "already installed"
    details: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> list[str]:
        return [f"{self.item}: {self.status} at {self.path}"] + [f"  {k}: {v}" for k, v in self.details.items()]


def pynet_source_url(url: str | None = None) -> str:
    """``url``, else ``$BOKEH_PYNET_URL``, else the authors' URL; a local path becomes its ``file://`` URL."""
    return source_url((url or "").strip() or os.environ.get(PYNET_URL_ENV, "").strip() or DEFAULT_PYNET_URL)


def _find_checkpoint(names: list[str]) -> str:
    """The checkpoint prefix inside the zip: the member ending in ``.index`` (``pynet_bokeh_level_0`` first)."""
    indexes = [n for n in names if n.endswith(".index") and not n.startswith("__MACOSX/")]
    if not indexes:
        shown = ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")
        raise FetchError(
            f"no TensorFlow checkpoint (.index file) in the zip ({len(names)} files: {shown}); "
            "is this the PyNET-Bokeh archive?"
        )
    preferred = [n for n in indexes if Path(n).name == "pynet_bokeh_level_0.index"]
    if preferred:
        return preferred[0][: -len(".index")]
    if len(indexes) > 1:
        raise FetchError(f"the zip holds {len(indexes)} checkpoints ({', '.join(indexes)}); cannot tell which one")
    return indexes[0][: -len(".index")]


def _extract_checkpoint(archive: zipfile.ZipFile, prefix: str, folder: Path) -> Path:
    """Copy ``prefix.index`` + ``prefix.data-*`` out of the zip under their base names (no path from the zip
    is ever used as a path here, so a hostile archive cannot write outside ``folder``)."""
    base = Path(prefix).name
    members = [n for n in archive.namelist() if n.startswith(prefix + ".") and "/" not in n[len(prefix) :]]
    if not any(n.endswith(".index") for n in members) or not any(".data-" in n for n in members):
        raise FetchError(f"the checkpoint {prefix} in the zip has no .data-* file next to its .index")
    for name in members:
        target = folder / (base + name[len(prefix) :])
        with archive.open(name) as source, open(target, "wb") as out:
            shutil.copyfileobj(source, out, _CHUNK)
    return folder / base


def fetch_pynet(
    url: str | None = None,
    *,
    dest: str | os.PathLike | None = None,
    overwrite: bool = False,
    offline: bool | None = None,
    keep_zip: bool = False,
    progress: bool = True,
    callback: ProgressCallback | None = None,
    log: Callable[[str], None] | None = None,
) -> FetchResult:
    """Download the authors' PyNET-Bokeh zip, convert its checkpoint and install it where every entry point looks.

    Args:
        url: the zip's URL (default ``$BOKEH_PYNET_URL``, else :data:`DEFAULT_PYNET_URL`); ``file://`` works.
        dest: weights folder (default :func:`~bokeh_model.pynet.default_pynet_dir`).
        overwrite: fetch and convert again even when the folder already holds weights.
        offline: force offline mode (default: ``HF_HUB_OFFLINE`` / ``BOKEH_OFFLINE``).
        keep_zip: keep the downloaded zip in ``<cache>/downloads`` (it is deleted after a successful conversion).
        progress: tqdm bars; ``callback`` gets byte counts (the Space); ``log`` gets status lines.

    Returns:
        A :class:`FetchResult`; the folder holds ``config.json``, ``model.safetensors``, ``conversion.json`` and
        ``source.json`` (URL, byte size and SHA-256 of the zip, checkpoint name, licence).

    Raises:
        FetchError: offline, unreachable, not a zip, no checkpoint in it, or a conversion failure. The weights
            folder is only ever replaced by a complete, verified conversion.
    """
    say = log or (lambda line: None)
    dest = Path(dest) if dest is not None else default_pynet_dir()
    if not overwrite and dest.is_dir() and weights_status(dest)[0]:
        return FetchResult("pynet", dest, "already installed", _read_source(dest))
    dest.parent.mkdir(parents=True, exist_ok=True)
    # A second fetch (another terminal, the Space's background fetch) waits for the first and then uses its result.
    with exclusive(dest.with_name(f".{dest.name}.fetch.lock"), "the PyNET weights") as waited:
        if waited and dest.is_dir() and weights_status(dest)[0]:
            return FetchResult("pynet", dest, "already installed", _read_source(dest))
        return _fetch_pynet(url, dest, overwrite, offline, keep_zip, progress, callback, say)


def _fetch_pynet(
    url: str | None,
    dest: Path,
    overwrite: bool,
    offline: bool | None,
    keep_zip: bool,
    progress: bool,
    callback: ProgressCallback | None,
    say: Callable[[str], None],
) -> FetchResult:
    url = pynet_source_url(url)
    if is_offline(offline) and not is_local_url(url):  # a copy on this machine's disk is fine offline
        raise FetchError(_offline_line("pynet", dest) + "; or give a copy of the zip: --url PATH")
    downloads = bokeh_cache_dir() / "downloads"
    zip_name = Path(urllib.request.url2pathname(url.split("?")[0].rstrip("/").rsplit("/", 1)[-1])).name
    zip_path = downloads / (zip_name or "PyNET_Bokeh_pretrained.zip")
    record_path = zip_path.with_name(zip_path.name + ".json")  # written with --keep-zip: which URL it came from
    kept = _read_json(record_path)
    if zip_path.is_file() and not overwrite and kept.get("url") == url and kept.get("bytes") == zip_path.stat().st_size:
        got = DownloadResult(zip_path, url, zip_path.stat().st_size, sha256_file(zip_path))
        say(f"using the zip downloaded before: {zip_path}")
    else:
        zip_path.unlink(missing_ok=True)
        record_path.unlink(missing_ok=True)
        say(f"downloading {url}")
        got = download(url, zip_path, label="PyNET-Bokeh zip", progress=progress, callback=callback)
    try:
        record = _install_from_zip(got, zip_name, dest, say)
    except BaseException:
        # A wrong archive must not be reused by the next run; a half-built folder never reaches ``dest``.
        zip_path.unlink(missing_ok=True)
        raise
    if keep_zip:
        record_path.write_text(json.dumps({"url": url, "bytes": got.bytes, "sha256": got.sha256}) + "\n")
    else:
        zip_path.unlink(missing_ok=True)
    details = {"url": url, "zip": f"{got.bytes:,} bytes, SHA-256 {got.sha256}", "checkpoint": record["checkpoint"]}
    details["tensors"] = f"{record['tensors']} generator tensors, {record['parameters']:,} parameters"
    if record["skipped"].get("count"):
        details["skipped"] = ", ".join(f"{n} {r}" for r, n in sorted(record["skipped"]["by_reason"].items()))
    return FetchResult("pynet", dest, "installed", details)


def _install_from_zip(got: DownloadResult, zip_name: str, dest: Path, say: Callable[[str], None]) -> dict[str, Any]:
    """Find the checkpoint in the downloaded zip, convert it next to ``dest`` and swap it in; returns source.json."""
    from .convert_tf_checkpoint import convert_tf_checkpoint

    url = got.url
    try:
        archive = zipfile.ZipFile(got.path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise FetchError(
            f"{url} is not a zip archive ({got.bytes:,} bytes, SHA-256 {got.sha256[:12]}...: {exc}); deleted it"
        ) from None
    say("converting the TensorFlow checkpoint")
    started = time.perf_counter()
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".fetch-pynet.", dir=dest.parent))
    try:
        with archive:
            prefix = _find_checkpoint([n for n in archive.namelist() if not n.endswith("/")])
            try:
                local = _extract_checkpoint(archive, prefix, work)
            except (zipfile.BadZipFile, OSError) as exc:
                raise FetchError(f"{url}: corrupt zip ({exc}); deleted it, run the command again") from None
        staged = work / dest.name
        try:
            convert_tf_checkpoint(local, staged)
        except InputError as exc:  # ConversionError and unreadable checkpoints
            raise FetchError(f"the checkpoint {prefix} in {zip_name} cannot be converted: {exc}") from None
        conversion = json.loads((staged / "conversion.json").read_text())
        record = {
            "url": url,
            "zip": {"name": zip_name, "bytes": got.bytes, "sha256": got.sha256},
            "checkpoint": prefix,
            "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "convert_seconds": round(time.perf_counter() - started, 2),
            "download_seconds": round(got.seconds, 2),
            "tensors": conversion["tensors"],
            "parameters": conversion["parameters"],
            "config": conversion["config"],
            "skipped": {k: v for k, v in conversion.get("skipped", {}).items() if k != "names"},
            "license": PYNET_LICENSE,
            "attribution": PYNET_ATTRIBUTION,
        }
        (staged / "source.json").write_text(json.dumps(record, indent=1) + "\n")
        (staged / "source.json").chmod(0o644)
        _replace_dir(staged, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return record


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _replace_dir(staged: Path, dest: Path) -> None:
    """Swap a complete folder into place; a reader sees the old folder or the new one, never a mix."""
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.replace(dest, old)
        os.replace(staged, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staged, dest)


def _read_source(dest: Path) -> dict[str, Any]:
    try:
        record = json.loads((dest / "source.json").read_text())
    except (OSError, ValueError):
        return {"source": "no source.json (installed by hand)"}
    return {"url": record.get("url"), "zip SHA-256": record.get("zip", {}).get("sha256")}


# ------------------------------------------------------------------------------------------------ depth


@contextlib.contextmanager
def _hub_progress(callback: ProgressCallback | None, label: str) -> Iterator[type | None]:
    """A tqdm class for ``snapshot_download`` that also reports byte counts to ``callback``."""
    if callback is None:
        yield None
        return
    from tqdm.auto import tqdm

    class Reporting(tqdm):  # type: ignore[misc,valid-type]
        def update(self, n: float | None = 1) -> bool | None:
            shown = super().update(n)
            if self.unit == "B":
                callback(label, int(self.n), int(self.total) if self.total else None)
            return shown

    yield Reporting


def fetch_depth(
    model_id: str | None = None,
    *,
    revision: str | None = None,
    offline: bool | None = None,
    callback: ProgressCallback | None = None,
) -> FetchResult:
    """Download the depth model (config, preprocessor config, weights) into the Hugging Face cache.

    Args:
        model_id: a short name from :data:`~bokeh_model.depth_models.DEPTH_MODELS` (``dpt-hybrid``,
            ``depth-anything-v2-small``) or a hub id (default :func:`~bokeh_model.depth.default_depth_model`). A
            local folder needs nothing.
        revision: branch, tag or commit (default ``$BOKEH_DEPTH_REVISION``, else ``main``). The loader reads the
            same variable, so set it rather than passing a commit here to pin the model everywhere.

    Raises:
        FetchError: offline, unreachable or the repo has no weights file.
    """
    from .depth import _WEIGHT_FILES, depth_model_status, depth_revision
    from .depth_models import depth_model_record, resolve_depth_model

    model_id = resolve_depth_model(model_id)
    about = {k: v for k, v in depth_model_record(model_id).items() if k in ("license", "citation") and v}
    revision = revision or depth_revision()
    ok, _ = depth_model_status(model_id)
    if ok:
        return FetchResult("depth", Path(model_id), "already installed", {"model": model_id, **about})
    if Path(model_id).expanduser().exists() or model_id.startswith((".", "/", "~")):
        raise FetchError(f"depth: {model_id} is a local folder that is incomplete; it cannot be downloaded")
    if is_offline(offline):
        raise FetchError(_offline_line(f"depth model {model_id}", "the Hugging Face cache"))
    from huggingface_hub import HfApi, snapshot_download

    try:
        info = HfApi().model_info(model_id, revision=revision)
        files = {s.rfilename for s in info.siblings or []}
        weights = next((name for name in _WEIGHT_FILES if name in files), None)
        if weights is None:
            raise FetchError(f"depth model {model_id}: the repo has no weights file (looked for {list(_WEIGHT_FILES)})")
        wanted = ["config.json", "preprocessor_config.json", weights]
        if weights.endswith(".index.json"):
            wanted.append(weights.replace(".index.json", "-*"))
        with _hub_progress(callback, f"depth model {model_id}") as tqdm_class:
            # The revision as given (a branch name writes refs/<branch>, which the offline loader resolves).
            path = snapshot_download(model_id, revision=revision, allow_patterns=wanted, tqdm_class=tqdm_class)
    except FetchError:
        raise
    except Exception as exc:  # noqa: BLE001 - hub, HTTP-client and file errors all mean "could not fetch"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FetchError(f"depth model {model_id}: download failed ({type(exc).__name__}: {first})") from None
    ok, reason = depth_model_status(model_id)
    if not ok:
        raise FetchError(f"depth model {model_id}: downloaded but still not loadable: {reason}")
    details = {"model": model_id, "revision": info.sha or revision, **about}
    return FetchResult("depth", Path(path), "installed", details)


# ------------------------------------------------------------------------------------------------ LPIPS


def fetch_lpips(
    *, offline: bool | None = None, progress: bool = True, callback: ProgressCallback | None = None
) -> FetchResult:
    """Download torchvision's AlexNet trunk (LPIPS) into ``$TORCH_HOME/hub/checkpoints/``, hash-checked.

    An existing file is verified (its SHA-256 must start with the 8 hex digits in the official file name).
    """
    path = alexnet_trunk_path()
    prefix = official_sha256_prefix()
    if path.is_file():
        digest = sha256_file(path)
        if digest.startswith(prefix):
            return FetchResult("lpips", path, "already installed", {"sha256": digest})
        raise FetchError(
            f"lpips: {path} exists but its SHA-256 {digest[:16]}... does not start with {prefix} (the prefix in "
            "the official file name); delete it and fetch again"
        )
    if is_offline(offline):
        raise FetchError(_offline_line("lpips AlexNet trunk", path))
    got = download(ALEXNET_URL, path, sha256_prefix=prefix, label="AlexNet trunk", progress=progress, callback=callback)
    return FetchResult("lpips", path, "installed", {"bytes": got.bytes, "sha256": got.sha256})
