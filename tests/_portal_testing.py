"""Test helpers of the evaluation portal: a stand-in Hub API, a tiny Val294-like dataset, prediction zips."""

from __future__ import annotations

import io
import uuid
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from evaluation.portal import Portal, PortalSettings, SubmissionMeta, Submitter

VAL_IDS = ("4400", "4401", "4402", "4403")
SIZE = (128, 96)  # width, height of every target


class FakeHubApi:
    """Stand-in for ``huggingface_hub.HfApi``: repos are dicts of path -> bytes in memory; no network.

    ``fail_next`` makes the next ``create_commit`` raise, as a dropped connection would.
    """

    def __init__(self) -> None:
        self.repos: dict[str, dict] = {}
        self.files: dict[tuple[str, str], bytes] = {}
        self.commits: list[tuple[str, str, list[str]]] = []
        self.fail_next = False

    def create_repo(self, repo_id, *, repo_type=None, private=False, exist_ok=False, token=None, **_):
        if repo_id in self.repos and not exist_ok:
            raise RuntimeError(f"repo {repo_id} exists")
        self.repos.setdefault(repo_id, {"type": repo_type, "private": private})

    def create_commit(self, repo_id, operations, *, commit_message, repo_type=None, token=None, **_):
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("stand-in: the Hub did not answer")
        assert repo_id in self.repos and repo_type == "dataset"
        paths = []
        for op in operations:
            source = op.path_or_fileobj
            data = Path(source).read_bytes() if isinstance(source, (str, Path)) else bytes(source)
            self.files[(repo_id, op.path_in_repo)] = data
            paths.append(op.path_in_repo)
        self.commits.append((repo_id, commit_message, paths))

    def list_repo_files(self, repo_id, *, repo_type=None, token=None, **_):
        return sorted(path for repo, path in self.files if repo == repo_id)

    def hf_hub_download(self, repo_id, filename, *, repo_type=None, local_dir=None, token=None, **_):
        target = Path(local_dir) / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(self.files[(repo_id, filename)])
        return str(target)


def jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _scene(rng: np.random.Generator, size=SIZE) -> np.ndarray:
    width, height = size
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx / width, yy / height, 0.5 + 0.5 * np.sin(xx / 7.0)], axis=-1) * 200
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def build_val294_like(folder: Path, ids=VAL_IDS, size=SIZE) -> Path:
    """An EBB!-layout zip (train id 0 plus ``ids``) turned into a dataset by ``evaluation.ebb`` (split val294)."""
    from evaluation import ebb

    rng = np.random.default_rng(7)
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "Training.zip"
    with zipfile.ZipFile(source, "w") as archive:
        for i in ("0", *ids):
            photo = _scene(rng, size)
            bokeh = np.asarray(Image.fromarray(photo).resize((size[0] // 4, size[1] // 4)).resize(size))
            archive.writestr(f"Training/original/{i}.jpg", jpeg(photo))
            archive.writestr(f"Training/bokeh/{i}.jpg", jpeg(bokeh))
    # A unique folder name: `datasets` caches local folders by name, so two datasets both called "ebb_hf"
    # would share one cache entry (the second would read the first's rows).
    built = folder / f"ebb_hf_{uuid.uuid4().hex[:12]}"
    ebb.build_dataset(source, built, log=lambda line: None)
    return built


def prediction_arrays(dataset: Path, shift: int = 8, ids=VAL_IDS) -> dict[str, np.ndarray]:
    """Predictions that differ from the targets (targets brightened by ``shift`` and slightly blurred)."""
    from evaluation.dataset import open_source

    arrays = {}
    for sample in open_source(str(dataset), "val294").iter_samples():
        if sample.id in ids:
            target = np.asarray(Image.open(io.BytesIO(sample.bokeh)).convert("RGB"), dtype=np.int16)
            arrays[sample.id] = np.clip(target + shift, 0, 255).astype(np.uint8)
    return arrays


def write_folder(folder: Path, arrays: dict[str, np.ndarray], fmt: str = "png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for sample_id, array in arrays.items():
        (folder / f"{sample_id}.{fmt}").write_bytes(png(array) if fmt == "png" else jpeg(array))
    return folder


def write_zip(path: Path, entries: dict[str, bytes], *, prefix: str = "") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(prefix + name, data)
    return path


# ----------------------------------------------------------------- a portal over a val294-like dataset

REPO = "bokeh-org/ebb-portal-results"


META = SubmissionMeta(
    method="TestNet",
    authors="A. Researcher",
    license="MIT",
    link="https://example.org/paper",
    hardware="RTX 4090",
    runtime_s=0.05,
    uses_depth=True,
)


ALICE = Submitter("alice", "Alice", via="oauth")


def make_portal(tmp_path: Path, dataset: Path, api: FakeHubApi | None = None, **changes) -> Portal:
    options = {
        "root": tmp_path / "portal",
        "dataset": str(dataset),
        "hub_repo": REPO if api is not None else None,
        "organizer_token": "org-secret",
        "measured_dir": None,
        "device": "cpu",
    }
    settings = PortalSettings(**{**options, **changes})
    return Portal(settings, hf_api=api)


def good_zip(path: Path, arrays: dict[str, np.ndarray], prefix: str = "preds/") -> Path:
    return write_zip(path, {f"{i}.png": png(a) for i, a in arrays.items()}, prefix=prefix)


def portal_leftovers(portal: Portal) -> list[str]:
    """Every file the portal holds besides its queue database."""
    return sorted(
        str(p.relative_to(portal.root))
        for p in portal.root.rglob("*")
        if p.is_file() and not p.name.startswith("queue.db")
    )
