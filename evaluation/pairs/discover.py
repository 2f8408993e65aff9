"""Finding the pairs: two folders matched by name, or one folder paired by capture time and EXIF.

A *pair* is one scene shot twice from a tripod: a narrow-aperture photo (e.g. f/16, everything sharp) and a
wide-aperture one (e.g. f/1.8, bokeh), as the EBB! photos were taken (Ignatov, Patel, Timofte, CVPRW 2020).

* **Two folders.** ``DIR/narrow/NAME.ext`` with ``DIR/wide/NAME.ext`` (also ``sharp/`` + ``bokeh/`` or
  ``original/`` + ``bokeh/``), matched by relative path without the extension, case-insensitively.
* **One folder.** Photos sorted by EXIF capture time; consecutive shots with different apertures form a
  pair (the larger f-number is the narrow one). A gap in time above ``max_gap_s``, a different focal length,
  orientation or image size rejects the pair with its reason.

In both modes a subfolder is a *scene* (``DIR/narrow/kitchen/1.jpg`` or ``DIR/kitchen/IMG_1.jpg`` belong to
scene ``kitchen``); pairs directly in the folder are a scene each. Splits are made by scene.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bokeh_model.errors import InputError

__all__ = [
    "FOLDER_NAMES",
    "IMAGE_EXTENSIONS",
    "RAW_EXTENSIONS",
    "describe_layouts",
    "PairCandidate",
    "PhotoInfo",
    "Problem",
    "find_pairs",
    "raw_support",
    "read_photo",
    "read_photo_info",
]

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp"}
# Camera RAW formats LibRaw reads (through rawpy); decoded only when rawpy is installed.
RAW_EXTENSIONS = {".dng", ".cr2", ".cr3", ".nef", ".nrw", ".arw", ".raf", ".orf", ".rw2", ".pef", ".srw", ".raw"}
# (narrow folder, wide folder) names accepted in two-folder mode, first match wins.
FOLDER_NAMES: tuple[tuple[str, str], ...] = (("narrow", "wide"), ("sharp", "bokeh"), ("original", "bokeh"))

_TAG_ORIENTATION = 0x0112
_TAG_DATETIME = 0x0132
_TAG_EXIF_IFD = 0x8769
_TAG_FNUMBER = 0x829D
_TAG_DATETIME_ORIGINAL = 0x9003
_TAG_SUBSEC_ORIGINAL = 0x9291
_TAG_FOCAL_LENGTH = 0x920A


@dataclass
class PhotoInfo:
    """What the EXIF header of one photo says (``None`` where the tag is missing)."""

    path: str
    width: int = 0  # as stored, before the EXIF orientation is applied
    height: int = 0
    orientation: int = 1
    f_number: float | None = None
    focal_length: float | None = None
    time: float | None = None  # capture time, seconds since the epoch (camera clock, no time zone)

    @property
    def upright_size(self) -> tuple[int, int]:
        """(width, height) after the EXIF orientation is applied."""
        return (self.height, self.width) if self.orientation in (5, 6, 7, 8) else (self.width, self.height)


@dataclass
class PairCandidate:
    """A narrow/wide pair before alignment; ``name`` is unique and used in the report and dataset."""

    name: str
    scene: str
    narrow: str
    wide: str
    narrow_info: PhotoInfo | None = None
    wide_info: PhotoInfo | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "scene": self.scene,
            "narrow": self.narrow,
            "wide": self.wide,
            "narrow_exif": asdict(self.narrow_info) if self.narrow_info else None,
            "wide_exif": asdict(self.wide_info) if self.wide_info else None,
        }


@dataclass
class Problem:
    """A file or a pair that was left out before alignment, with the reason."""

    what: str  # file path or pair name
    reason: str
    files: list[str] = field(default_factory=list)


def raw_support() -> tuple[bool, str]:
    """Whether camera RAW files can be decoded here (rawpy, i.e. LibRaw), with the version or what to install."""
    try:
        import rawpy
    except ImportError:
        return False, "camera RAW needs rawpy (LibRaw): pip install rawpy"
    return True, f"rawpy {rawpy.__version__} (LibRaw {'.'.join(map(str, rawpy.libraw_version))})"


def _rational(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return number if np.isfinite(number) and number > 0 else None


def _exif_time(text: Any, subsec: Any) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        stamp = dt.datetime.strptime(text.strip().rstrip("\x00"), "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    seconds = stamp.replace(tzinfo=dt.timezone.utc).timestamp()
    digits = str(subsec or "").strip().rstrip("\x00")
    if digits.isdigit():
        seconds += int(digits) / 10 ** len(digits)
    return seconds


def read_photo_info(path: str | os.PathLike) -> PhotoInfo:
    """EXIF of a photo (JPEG, TIFF, PNG eXIf, TIFF-based RAW such as DNG/NEF/ARW/CR2 where Pillow parses it).

    Never raises for missing tags; raises :class:`InputError` when the file is not readable at all.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    info = PhotoInfo(path=str(path))
    try:
        with Image.open(path) as image:
            info.width, info.height = image.size
            exif = image.getexif()
    except UnidentifiedImageError:
        if path.suffix.lower() in RAW_EXTENSIONS:
            return _raw_info(path, info)
        raise InputError(f"{path} is not an image file this tool can read") from None
    except OSError as exc:
        raise InputError(f"{path} cannot be read: {exc}") from None
    sub = exif.get_ifd(_TAG_EXIF_IFD) if exif else {}
    info.orientation = int(exif.get(_TAG_ORIENTATION, 1) or 1) if exif else 1
    info.f_number = _rational(sub.get(_TAG_FNUMBER))
    info.focal_length = _rational(sub.get(_TAG_FOCAL_LENGTH))
    info.time = _exif_time(
        sub.get(_TAG_DATETIME_ORIGINAL) or (exif or {}).get(_TAG_DATETIME), sub.get(_TAG_SUBSEC_ORIGINAL)
    )
    return info


def _raw_info(path: Path, info: PhotoInfo) -> PhotoInfo:
    ok, why = raw_support()
    if not ok:
        raise InputError(f"{path}: {why}")
    import rawpy

    try:
        with rawpy.imread(str(path)) as raw:
            info.width, info.height = raw.sizes.width, raw.sizes.height
    except Exception as exc:  # noqa: BLE001 - LibRaw errors have many types
        raise InputError(f"{path} cannot be read as camera RAW: {type(exc).__name__}: {exc}") from None
    return info


def read_photo(path: str | os.PathLike) -> np.ndarray:
    """Decode a photo as float32 (H, W, 3) RGB in [0, 1], upright (EXIF orientation applied).

    JPEG, PNG, WebP and TIFF go through :func:`bokeh_model.images.load_image` (16-bit kept); camera RAW through
    rawpy (LibRaw): camera white balance, no automatic brightening (so both photos of a pair get the same
    tone curve), 16-bit output, the camera's orientation applied.

    Raises:
        InputError: unreadable, truncated or unsupported file (the message names it).
    """
    path = Path(path)
    if path.suffix.lower() in RAW_EXTENSIONS:
        ok, why = raw_support()
        if not ok:
            raise InputError(f"{path}: {why}")
        import rawpy

        try:
            with rawpy.imread(str(path)) as raw:
                rgb = raw.postprocess(use_camera_wb=True, no_auto_bright=True, output_bps=16)
        except Exception as exc:  # noqa: BLE001 - LibRaw errors have many types
            raise InputError(f"{path} cannot be decoded as camera RAW: {type(exc).__name__}: {exc}") from None
        return rgb.astype(np.float32) / 65535.0
    from bokeh_model.images import load_image

    return load_image(path)


def _images_under(folder: Path) -> list[Path]:
    """Photos under ``folder``; of a RAW + JPEG shot (same name, same folder) only the JPEG, the camera's rendering."""
    exts = IMAGE_EXTENSIONS | RAW_EXTENSIONS
    found = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in exts
        # hidden files and folders (e.g. a build's own .work/ when --out lies inside --pairs) are not photos
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    rendered = {(p.parent, p.stem.lower()) for p in found if p.suffix.lower() in IMAGE_EXTENSIONS}
    return [p for p in found if p.suffix.lower() in IMAGE_EXTENSIONS or (p.parent, p.stem.lower()) not in rendered]


def _scene_of(relative: Path) -> str:
    """The first folder under the pair root, else the photo's own name (each pair is a scene)."""
    return relative.parts[0] if len(relative.parts) > 1 else relative.with_suffix("").as_posix()


def _folder_mode(root: Path) -> tuple[Path, Path] | None:
    children = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    for narrow, wide in FOLDER_NAMES:
        if narrow in children and wide in children:
            return children[narrow], children[wide]
    return None


def _check_exif_pair(narrow: PhotoInfo, wide: PhotoInfo) -> str:
    """Empty when two photos' EXIF fit a pair (where tags exist), else the reason."""
    if narrow.f_number and wide.f_number and narrow.f_number < wide.f_number:
        return (
            f"the narrow photo is f/{narrow.f_number:g} but the wide one f/{wide.f_number:g}: "
            "the folders look swapped (narrow = larger f-number, sharp)"
        )
    if narrow.f_number and wide.f_number and narrow.f_number == wide.f_number:
        return f"both photos have the same aperture f/{narrow.f_number:g}"
    if (
        narrow.focal_length
        and wide.focal_length
        and abs(narrow.focal_length - wide.focal_length) > 0.01 * max(narrow.focal_length, wide.focal_length)
    ):
        return f"focal length changed: {narrow.focal_length:g} mm vs {wide.focal_length:g} mm (zoomed between shots)"
    if narrow.upright_size != wide.upright_size and narrow.upright_size[::-1] == wide.upright_size:
        return (
            f"orientation changed: {narrow.upright_size[0]}x{narrow.upright_size[1]} vs "
            f"{wide.upright_size[0]}x{wide.upright_size[1]} (camera turned between shots)"
        )
    return ""


def _pairs_from_folders(narrow_dir: Path, wide_dir: Path) -> tuple[list[PairCandidate], list[Problem]]:
    def key(path: Path, base: Path) -> str:
        return path.relative_to(base).with_suffix("").as_posix().lower()

    narrow = {}
    problems: list[Problem] = []
    for path in _images_under(narrow_dir):
        k = key(path, narrow_dir)
        if k in narrow:
            problems.append(
                Problem(str(path), f"two files named {k} in {narrow_dir.name}/ ({narrow[k].name})", [str(path)])
            )
            continue
        narrow[k] = path
    wide = {}
    for path in _images_under(wide_dir):
        k = key(path, wide_dir)
        if k in wide:
            problems.append(
                Problem(str(path), f"two files named {k} in {wide_dir.name}/ ({wide[k].name})", [str(path)])
            )
            continue
        wide[k] = path
    pairs = []
    for k in sorted(set(narrow) | set(wide)):
        if k not in wide:
            problems.append(Problem(str(narrow[k]), f"no file named {k}.* in {wide_dir.name}/", [str(narrow[k])]))
            continue
        if k not in narrow:
            problems.append(Problem(str(wide[k]), f"no file named {k}.* in {narrow_dir.name}/", [str(wide[k])]))
            continue
        relative = narrow[k].relative_to(narrow_dir)
        pairs.append(
            PairCandidate(
                name=relative.with_suffix("").as_posix(),
                scene=_scene_of(relative),
                narrow=str(narrow[k]),
                wide=str(wide[k]),
            )
        )
    return pairs, problems


def _pairs_from_exif(
    root: Path, max_gap_s: float, min_aperture_ratio: float
) -> tuple[list[PairCandidate], list[Problem]]:
    problems: list[Problem] = []
    groups: dict[str, list[PhotoInfo]] = {}
    for path in _images_under(root):
        relative = path.relative_to(root)
        try:
            info = read_photo_info(path)
        except InputError as exc:
            problems.append(Problem(str(path), str(exc), [str(path)]))
            continue
        missing = [n for n, v in (("capture time", info.time), ("aperture (FNumber)", info.f_number)) if v is None]
        if missing:
            problems.append(
                Problem(
                    str(path),
                    f"no EXIF {' or '.join(missing)}: cannot pair by EXIF; put the photos into narrow/ and wide/ "
                    "folders with matching names instead",
                    [str(path)],
                )
            )
            continue
        groups.setdefault(relative.parts[0] if len(relative.parts) > 1 else "", []).append(info)
    pairs: list[PairCandidate] = []
    for folder, photos in sorted(groups.items()):
        photos.sort(key=lambda p: (p.time, p.path))
        index = 0
        while index < len(photos):
            first = photos[index]
            if index + 1 == len(photos):
                problems.append(Problem(first.path, "no partner: the last photo of its sequence", [first.path]))
                break
            second = photos[index + 1]
            ratio = max(first.f_number, second.f_number) / min(first.f_number, second.f_number)  # type: ignore[type-var,operator]
            if ratio < min_aperture_ratio:
                problems.append(
                    Problem(
                        first.path,
                        f"no partner: the next shot {Path(second.path).name} is f/{second.f_number:g} vs "
                        f"f/{first.f_number:g} (need apertures at least {min_aperture_ratio:g}x apart)",
                        [first.path],
                    )
                )
                index += 1
                continue
            narrow, wide = (first, second) if first.f_number > second.f_number else (second, first)  # type: ignore[operator]
            name_base = Path(narrow.path).relative_to(root).with_suffix("").as_posix()
            gap = abs(second.time - first.time)  # type: ignore[operator]
            reason = (
                f"time gap {gap:.1f} s between the shots is above {max_gap_s:g} s (not the same set-up?)"
                if gap > max_gap_s
                else _check_exif_pair(narrow, wide)
            )
            if reason:
                # the second shot may still pair with the one after it
                problems.append(Problem(f"{name_base} + {Path(wide.path).name}", reason, [narrow.path, wide.path]))
                index += 1
                continue
            relative = Path(narrow.path).relative_to(root)
            pairs.append(
                PairCandidate(
                    name=name_base,
                    scene=folder or relative.with_suffix("").as_posix(),
                    narrow=narrow.path,
                    wide=wide.path,
                    narrow_info=narrow,
                    wide_info=wide,
                )
            )
            index += 2
    return pairs, problems


def find_pairs(
    root: str | os.PathLike, *, max_gap_s: float = 30.0, min_aperture_ratio: float = 2.0
) -> tuple[list[PairCandidate], list[Problem], str]:
    """Pair the photos under ``root``; returns ``(pairs, problems, mode)`` with mode ``folders`` or ``exif``.

    Args:
        root: a folder with ``narrow/`` and ``wide/`` subfolders (or ``sharp/`` + ``bokeh/``), or with photos
            to pair by EXIF capture time and aperture.
        max_gap_s: EXIF mode: the longest time between the two shots of a pair.
        min_aperture_ratio: EXIF mode: the f-numbers must differ at least by this factor (2 = two stops).

    Raises:
        InputError: ``root`` is not a folder.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError(f"--pairs {root} is not a folder")
    folders = _folder_mode(root)
    if folders is not None:
        pairs, problems = _pairs_from_folders(*folders)
        mode = "folders"
        for pair in pairs:
            try:
                pair.narrow_info, pair.wide_info = read_photo_info(pair.narrow), read_photo_info(pair.wide)
            except InputError:
                continue  # reported when the pair is decoded
        kept = []
        for pair in pairs:
            reason = _check_exif_pair(pair.narrow_info, pair.wide_info) if pair.narrow_info and pair.wide_info else ""
            if reason:
                problems.append(Problem(pair.name, reason, [pair.narrow, pair.wide]))
            else:
                kept.append(pair)
        pairs = kept
    else:
        pairs, problems = _pairs_from_exif(root, max_gap_s, min_aperture_ratio)
        mode = "exif"
    return pairs, problems, mode


def describe_layouts() -> str:
    """One sentence naming the accepted layouts, for error messages."""
    folders = ", ".join(f"{n}/ + {w}/" for n, w in FOLDER_NAMES)
    return (
        f"expected a folder with {folders} subfolders (files matched by name), or photos with EXIF capture time "
        f"and aperture in one folder; images: {', '.join(sorted(IMAGE_EXTENSIONS))}, RAW: "
        f"{', '.join(sorted(RAW_EXTENSIONS))}"
    )
