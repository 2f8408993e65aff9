"""Checks a submission (a zip archive or a folder of ``<id>.png|jpg`` predictions) before anything is scored.

Everything that can be decided from the zip's central directory is checked first (count, names, path
traversal, symlinks and other special entries, encryption, declared sizes and compression ratios), so a zip
bomb is refused before a byte is inflated. Extraction then re-counts the bytes actually inflated, per file and
in total, and stops at the first excess: the headers of a hostile archive may lie. Files are written under
names this module builds (``<id>.<ext>``), never under the archive's names, into a fresh staging folder that
is removed whenever the submission is refused. Images are then opened: the format must be PNG or JPEG (by
content, not by name), the size must equal the target's, and the file must decode completely.

Every problem found is collected into a :class:`CheckReport` that names it, so a submitter fixes everything at
once instead of one error per upload.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from PIL import Image, UnidentifiedImageError

__all__ = ["ALLOWED_EXTENSIONS", "CheckLimits", "CheckReport", "Problem", "StagedSubmission", "check_submission"]

ALLOWED_EXTENSIONS = (".png", ".jpg", ".jpeg")
_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "MPO": ".jpg"}
# Files that archivers add on their own; ignored (and listed in the report) rather than refused as extra ids.
_IGNORED = re.compile(r"(^|/)(__MACOSX/|\.DS_Store$|Thumbs\.db$|desktop\.ini$)")
_CHUNK = 1 << 20
_MIB = 1 << 20  # sizes are limited and reported in MiB (2^20 bytes), as BOKEH_PORTAL_MAX_MB is read


@dataclass(frozen=True)
class CheckLimits:
    """Limits a submission must stay within (defaults fit Val294 at full resolution as PNG).

    Attributes:
        max_archive_bytes: size of the uploaded zip (or of the folder's files).
        max_total_bytes: total uncompressed size of all entries.
        max_file_bytes: uncompressed size of one entry.
        max_ratio: uncompressed / compressed size of one entry and of the whole archive (PNG and JPEG barely
            compress, so a large ratio means a bomb or a padded file).
        max_entries: entries in the archive (files and folders), beyond the expected ids.
    """

    max_archive_bytes: int = 1536 << 20
    max_total_bytes: int = 2048 << 20
    max_file_bytes: int = 40 << 20
    max_ratio: float = 50.0
    max_entries_extra: int = 50


@dataclass(frozen=True)
class Problem:
    """One reason to refuse a submission: a short code, the entry it concerns and a sentence."""

    code: str
    message: str
    entry: str = ""


_TITLES = {
    "not_zip": "Not a zip archive",
    "too_large": "Too large",
    "too_many": "Too many entries",
    "bomb": "Zip bomb (compression ratio or uncompressed size)",
    "traversal": "Unsafe path (absolute or '..')",
    "symlink": "Symbolic link or special file",
    "encrypted": "Encrypted entry",
    "compression": "Unsupported compression",
    "corrupt": "Corrupt archive entry",
    "bad_name": "File name is not <id>.png or <id>.jpg",
    "folders": "Files spread over several folders",
    "duplicate": "Same id twice",
    "extra": "Ids that are not in the split",
    "missing": "Ids of the split without a prediction",
    "not_image": "Not a PNG or JPEG image",
    "wrong_size": "Wrong image size",
    "truncated": "Image does not decode completely",
}


@dataclass
class CheckReport:
    """The outcome of :func:`check_submission`.

    Attributes:
        problems: every reason to refuse (empty when the submission is accepted).
        ignored: entries skipped on purpose (``__MACOSX/``, ``.DS_Store``, folders).
        n_files: prediction files found.
        total_bytes: their uncompressed size.
    """

    problems: list[Problem] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    n_files: int = 0
    total_bytes: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def codes(self) -> set[str]:
        return {p.code for p in self.problems}

    def add(self, code: str, message: str, entry: str = "") -> None:
        self.problems.append(Problem(code, message, entry))

    def render(self, max_per_kind: int = 10) -> str:
        """A readable report (Markdown-compatible plain text), grouped by kind of problem."""
        if self.ok:
            text = f"Accepted: {self.n_files} predictions, {self.total_bytes / _MIB:.1f} MiB uncompressed."
            if self.ignored:
                text += f" Ignored {len(self.ignored)} entries added by archivers or folders: " + ", ".join(
                    self.ignored[:max_per_kind]
                )
            return text
        lines = [f"Refused: {len(self.problems)} problem(s); nothing was kept. Fix them all and submit again."]
        for code in dict.fromkeys(p.code for p in self.problems):
            group = [p for p in self.problems if p.code == code]
            lines.append(f"- {_TITLES.get(code, code)} ({len(group)}):")
            for problem in group[:max_per_kind]:
                lines.append(f"    - {problem.message}")
            if len(group) > max_per_kind:
                lines.append(f"    - ... and {len(group) - max_per_kind} more")
        return "\n".join(lines)


@dataclass
class StagedSubmission:
    """Checked predictions in a staging folder (``<id>.<ext>`` files) with their hashes.

    ``sha256`` identifies the content independently of how it was packed: the SHA-256 of the sorted
    ``<id>:<sha256 of the file>`` lines, so a zip and a folder of the same files get the same value.
    ``archive_sha256`` is the hash of the uploaded zip itself (``None`` for a folder).
    """

    folder: Path
    report: CheckReport
    file_sha256: dict[str, str]
    sha256: str
    archive_sha256: str | None

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _show(ids: Iterable[str], limit: int = 20) -> str:
    ids = list(ids)
    text = ", ".join(ids[:limit])
    return text + (f" ... ({len(ids)} in all)" if len(ids) > limit else "")


def _sort_ids(ids: Iterable[str]) -> list[str]:
    return sorted(ids, key=lambda v: (0, int(v), "") if v.isdigit() else (1, 0, v))


def _unsafe_name(name: str) -> bool:
    if "\x00" in name or "\\" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return True
    return any(part == ".." for part in name.split("/"))


def _entry_kind(info: zipfile.ZipInfo) -> str:
    """'file', 'dir', 'symlink' or 'special' from the Unix mode in the external attributes."""
    mode = info.external_attr >> 16
    if info.is_dir():
        return "dir"
    if mode and stat.S_ISLNK(mode):
        return "symlink"
    if mode and stat.S_IFMT(mode) not in (0, stat.S_IFREG):
        return "special"
    return "file"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _plan_names(names: list[str], report: CheckReport, expected: set[str]) -> dict[str, str]:
    """Archive entry name -> id, for entries named ``<id>.<ext>`` in a single folder; problems otherwise."""
    plan: dict[str, str] = {}
    folders: set[str] = set()
    seen: dict[str, str] = {}
    for name in names:
        path = PurePosixPath(name)
        suffix = path.suffix.lower()
        sample_id = path.stem
        if suffix not in ALLOWED_EXTENSIONS or not sample_id or sample_id.startswith("."):
            report.add("bad_name", f"{name!r}: expected <id>.png or <id>.jpg, e.g. 4400.png", name)
            continue
        folders.add(str(path.parent))
        if sample_id in seen:
            report.add("duplicate", f"id {sample_id} appears as {seen[sample_id]!r} and {name!r}", name)
            continue
        seen[sample_id] = name
        plan[name] = sample_id
    if len(folders) > 1:
        report.add(
            "folders",
            f"predictions must sit in one folder (or at the top of the zip); found {_show(sorted(folders), 5)}",
        )
    extra = _sort_ids(set(plan.values()) - expected)
    if extra:
        report.add("extra", f"{len(extra)} file(s) for ids not in the split: {_show(extra)}")
    missing = _sort_ids(expected - set(plan.values()))
    if missing:
        report.add("missing", f"{len(missing)} id(s) have no prediction: {_show(missing)}")
    return plan


def _check_image(path: Path, sample_id: str, size: tuple[int, int], report: CheckReport, shown: str) -> str | None:
    """Checks one extracted file; returns the extension of its real format (``.png``/``.jpg``) or None."""
    try:
        with Image.open(path) as image:
            fmt = image.format or ""
            if fmt not in _FORMATS:
                report.add("not_image", f"{shown}: a {fmt or 'unknown'} file, expected PNG or JPEG", shown)
                return None
            if image.size != size:
                report.add(
                    "wrong_size",
                    f"{shown}: {image.size[0]}x{image.size[1]} but the target of id {sample_id} is {size[0]}x{size[1]}",
                    shown,
                )
                return None
            try:
                image.load()  # size is known to be right here, so decoding is bounded
            except (OSError, SyntaxError, ValueError) as exc:
                report.add("truncated", f"{shown}: {exc}", shown)
                return None
            if image.mode not in ("RGB", "RGBA", "L", "P", "I;16", "LA", "CMYK", "YCbCr", "I"):
                report.add("not_image", f"{shown}: pixel mode {image.mode} cannot be read as RGB", shown)
                return None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        reason = "not an image" if isinstance(exc, UnidentifiedImageError) else str(exc)
        report.add("not_image", f"{shown}: {reason}", shown)
        return None
    return _FORMATS[fmt]


def _finish(
    staging: Path,
    report: CheckReport,
    extracted: dict[str, Path],
    expected: dict[str, tuple[int, int]],
    archive_sha: str | None,
    shown: dict[str, str],
) -> StagedSubmission:
    hashes: dict[str, str] = {}
    for sample_id, path in extracted.items():
        ext = _check_image(path, sample_id, expected[sample_id], report, shown[sample_id])
        if ext is None:
            continue
        final = path.with_name(f"{sample_id}{ext}")
        if final != path:
            path.rename(final)
        hashes[sample_id] = _sha256_file(final)
    if not report.ok:
        shutil.rmtree(staging, ignore_errors=True)
        raise SubmissionRefused(report)
    combined = hashlib.sha256("\n".join(f"{i}:{hashes[i]}" for i in _sort_ids(hashes)).encode()).hexdigest()
    return StagedSubmission(staging, report, hashes, combined, archive_sha)


class SubmissionRefused(Exception):
    """The submission failed its checks; ``report`` names every problem (nothing was kept)."""

    def __init__(self, report: CheckReport) -> None:
        super().__init__(report.render())
        self.report = report


__all__ += ["SubmissionRefused"]


def _check_zip(
    path: Path, expected: dict[str, tuple[int, int]], limits: CheckLimits, staging: Path
) -> StagedSubmission:
    report = CheckReport()
    archive_size = path.stat().st_size
    if archive_size > limits.max_archive_bytes:
        report.add(
            "too_large",
            f"the archive is {archive_size / _MIB:.0f} MiB; the limit is {limits.max_archive_bytes / _MIB:.0f} MiB",
        )
        raise SubmissionRefused(report)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        report.add("not_zip", f"{path.name} is not a readable zip archive ({exc})")
        raise SubmissionRefused(report) from None
    with archive:
        infos = archive.infolist()
        if len(infos) > len(expected) + limits.max_entries_extra:
            report.add(
                "too_many",
                f"{len(infos)} entries; a split of {len(expected)} images allows at most "
                f"{len(expected) + limits.max_entries_extra}",
            )
            raise SubmissionRefused(report)
        files: list[zipfile.ZipInfo] = []
        declared_total = compressed_total = 0
        for info in infos:
            name = info.filename
            if _unsafe_name(name):
                report.add("traversal", f"{name!r} points outside the archive (absolute path, drive or '..')", name)
                continue
            kind = _entry_kind(info)
            if kind == "dir":
                report.ignored.append(name)
                continue
            if kind in ("symlink", "special"):
                report.add("symlink", f"{name!r} is a {'symbolic link' if kind == 'symlink' else 'special file'}", name)
                continue
            if _IGNORED.search(name):
                report.ignored.append(name)
                continue
            if info.flag_bits & 0x1:
                report.add("encrypted", f"{name!r} is encrypted", name)
                continue
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                report.add("compression", f"{name!r} uses compression method {info.compress_type}; use deflate", name)
                continue
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > limits.max_file_bytes or (info.file_size > 1 << 20 and ratio > limits.max_ratio):
                report.add(
                    "bomb",
                    f"{name!r} declares {info.file_size / _MIB:.1f} MiB from {info.compress_size / _MIB:.2f} MiB "
                    f"(ratio {ratio:.0f}; limits {limits.max_file_bytes / _MIB:.0f} MiB per file, "
                    f"ratio {limits.max_ratio:.0f})",
                    name,
                )
                continue
            declared_total += info.file_size
            compressed_total += info.compress_size
            files.append(info)
        if declared_total > limits.max_total_bytes or (
            declared_total > 8 << 20 and declared_total / max(compressed_total, 1) > limits.max_ratio
        ):
            report.add(
                "bomb",
                f"the archive declares {declared_total / _MIB:.0f} MiB uncompressed "
                f"from {compressed_total / _MIB:.1f} MiB "
                f"(limit {limits.max_total_bytes / _MIB:.0f} MiB, ratio {limits.max_ratio:.0f})",
            )
        plan = _plan_names([info.filename for info in files], report, set(expected))
        if not report.ok:
            raise SubmissionRefused(report)
        # Extract under names built here, counting the bytes actually inflated: headers can lie.
        extracted: dict[str, Path] = {}
        shown: dict[str, str] = {}
        inflated_total = 0
        for info in files:
            sample_id = plan[info.filename]
            target = staging / f"{sample_id}.part"
            written = 0
            try:
                with archive.open(info) as source, open(target, "wb") as sink:
                    while chunk := source.read(_CHUNK):
                        written += len(chunk)
                        inflated_total += len(chunk)
                        if (
                            written > min(info.file_size, limits.max_file_bytes)
                            or inflated_total > limits.max_total_bytes
                        ):
                            report.add(
                                "bomb",
                                f"{info.filename!r} inflated beyond its declared {info.file_size} bytes or the "
                                "limits while extracting; extraction stopped",
                                info.filename,
                            )
                            break
                        sink.write(chunk)
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
                report.add("corrupt", f"{info.filename!r} cannot be extracted: {exc}", info.filename)
            if not report.ok:
                shutil.rmtree(staging, ignore_errors=True)
                raise SubmissionRefused(report)
            extracted[sample_id] = target
            shown[sample_id] = info.filename
        report.n_files = len(extracted)
        report.total_bytes = inflated_total
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return _finish(staging, report, extracted, expected, digest.hexdigest(), shown)


def _check_folder(
    folder: Path, expected: dict[str, tuple[int, int]], limits: CheckLimits, staging: Path
) -> StagedSubmission:
    report = CheckReport()
    names: list[str] = []
    sizes: dict[str, int] = {}
    for entry in sorted(folder.iterdir()):
        name = entry.name
        if entry.is_symlink():
            report.add("symlink", f"{name!r} is a symbolic link", name)
        elif entry.is_dir():
            report.ignored.append(name + "/")
        elif not entry.is_file():
            report.add("symlink", f"{name!r} is a special file", name)
        elif _IGNORED.search(name):
            report.ignored.append(name)
        else:
            names.append(name)
            sizes[name] = entry.stat().st_size
            if sizes[name] > limits.max_file_bytes:
                report.add(
                    "too_large",
                    f"{name!r} is {sizes[name] / _MIB:.0f} MiB; the limit is {limits.max_file_bytes / _MIB:.0f} MiB",
                    name,
                )
    if len(names) > len(expected) + limits.max_entries_extra:
        report.add("too_many", f"{len(names)} files for a split of {len(expected)} images")
    if sum(sizes.values()) > limits.max_total_bytes:
        report.add(
            "too_large",
            f"the files total {sum(sizes.values()) / _MIB:.0f} MiB; "
            f"the limit is {limits.max_total_bytes / _MIB:.0f} MiB",
        )
    plan = _plan_names(names, report, set(expected))
    if not report.ok:
        raise SubmissionRefused(report)
    extracted: dict[str, Path] = {}
    shown: dict[str, str] = {}
    for name, sample_id in plan.items():
        target = staging / f"{sample_id}.part"
        shutil.copyfile(folder / name, target, follow_symlinks=False)
        extracted[sample_id] = target
        shown[sample_id] = name
    report.n_files = len(extracted)
    report.total_bytes = sum(sizes[n] for n in plan)
    return _finish(staging, report, extracted, expected, None, shown)


def check_submission(
    source: str | os.PathLike,
    expected: dict[str, tuple[int, int]],
    *,
    staging_root: str | os.PathLike,
    limits: CheckLimits | None = None,
) -> StagedSubmission:
    """Check a zip archive or a folder of predictions against the split's ids and target sizes.

    Args:
        source: a ``.zip`` file or a folder holding ``<id>.png|jpg`` files (one folder level in a zip is fine).
        expected: id -> (width, height) of every target of the split.
        staging_root: folder under which a fresh staging folder is made for the accepted files.
        limits: size, count and ratio limits.

    Returns:
        The staged predictions (the caller moves or discards ``folder``).

    Raises:
        SubmissionRefused: with a :class:`CheckReport` naming every problem; nothing is left in ``staging_root``.
    """
    limits = limits or CheckLimits()
    path = Path(source)
    if not path.exists():
        report = CheckReport()
        report.add("not_zip", f"{path} does not exist")
        raise SubmissionRefused(report)
    root = Path(staging_root)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="staging-", dir=root))
    try:
        if path.is_dir():
            return _check_folder(path, expected, limits, staging)
        return _check_zip(path, expected, limits, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
