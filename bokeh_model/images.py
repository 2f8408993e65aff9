"""Image and depth-map I/O at the library's edges.

One convention inside the library: images are float32 arrays of shape (H, W, 3), RGB in [0, 1];
depth maps are float32 (H, W) disparity in [0, 1], near = 1. This module turns files, bytes and PIL
images of any common mode (grayscale, palette, RGBA, CMYK, 16-bit, EXIF-rotated) into that form and
rejects truncated files, non-images and decompression bombs with a clear :class:`InputError`.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError
from .files import atomic_writer

__all__ = [
    "MAX_PIXELS",
    "ImageSource",
    "array_to_pil",
    "check_depth_array",
    "check_image_array",
    "load_depth",
    "load_image",
    "load_image_levels",
    "pil_to_array",
    "resize_array",
    "save_depth",
    "save_image",
]

# 64 MP: well above any camera the project targets (EBB! photos are 1.6 MP), well below a bomb.
MAX_PIXELS = int(os.environ.get("BOKEH_MAX_PIXELS", 64_000_000))

ImageSource = str | os.PathLike | bytes | Image.Image | np.ndarray


def _describe(source: object) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return f"<{type(source).__name__}>"


def _open(source: ImageSource, max_pixels: int) -> Image.Image:
    """Open and fully decode ``source`` as a PIL image, raising InputError for anything unusable."""
    name = _describe(source)
    if isinstance(source, Image.Image):
        image = source
    else:
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if not path.exists():
                raise InputError(f"image file not found: {path}")
            if path.is_dir():
                raise InputError(f"expected an image file, got a directory: {path}")
            handle: object = path
        elif isinstance(source, (bytes, bytearray)):
            handle = io.BytesIO(source)
        else:
            raise InputError(f"cannot read an image from {type(source).__name__}")
        previous_limit = Image.MAX_IMAGE_PIXELS
        try:
            # PIL only warns below 2x its limit; we want a hard, clear error at our own limit.
            Image.MAX_IMAGE_PIXELS = None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(handle)  # type: ignore[arg-type]
                pixels = image.width * image.height
                if pixels > max_pixels:
                    raise InputError(
                        f"{name}: {image.width}x{image.height} = {pixels / 1e6:.1f} MP is above the "
                        f"limit of {max_pixels / 1e6:.0f} MP; downscale the image first"
                    )
                image.load()
        except InputError:
            raise
        except UnidentifiedImageError:
            raise InputError(f"{name} is not an image file this tool can read (PNG, JPEG, WebP, TIFF, ...)") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise InputError(f"{name} could not be decoded (truncated or corrupt file?): {exc}") from None
        finally:
            Image.MAX_IMAGE_PIXELS = previous_limit
    if image.width * image.height > max_pixels:
        raise InputError(f"{name}: {image.width}x{image.height} is above the limit of {max_pixels / 1e6:.0f} MP")
    if image.width < 1 or image.height < 1:
        raise InputError(f"{name} is empty ({image.width}x{image.height})")
    return image


def _white_composite(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def pil_to_array(image: Image.Image) -> np.ndarray:
    """PIL image of any mode -> float32 (H, W, 3) RGB in [0, 1], honouring the EXIF orientation.

    Alpha is composited over white; 16-bit and float grayscale keep their precision.
    """
    image = ImageOps.exif_transpose(image)
    mode = image.mode
    if mode in {"I;16", "I;16B", "I;16L", "I;16N", "I"}:
        gray = np.asarray(image, dtype=np.float32)
        top = 65535.0 if mode.startswith("I;16") or gray.max(initial=0) > 255 else 255.0
        gray = np.clip(gray / top, 0.0, 1.0)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        gray = np.asarray(image, dtype=np.float32)
        if not np.all(np.isfinite(gray)):
            raise InputError("image contains NaN or infinite values")
        gray = np.clip(gray / 255.0 if gray.max(initial=0) > 1.0 else gray, 0.0, 1.0)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in {"RGBA", "LA", "PA"} or (mode == "P" and "transparency" in image.info):
        rgb = _white_composite(image)
    else:
        rgb = image.convert("RGB")  # handles L, P, CMYK, YCbCr, 1, RGB
    return np.asarray(rgb, dtype=np.float32) / 255.0


def check_image_array(image: np.ndarray) -> np.ndarray:
    """Validate the library's image convention and return a float32 contiguous copy-free view."""
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise InputError(f"image must have shape (H, W, 3), got {array.shape}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise InputError(f"image is empty: shape {array.shape}")
    array = array.astype(np.float32, copy=False)
    if not np.all(np.isfinite(array)):
        raise InputError("image contains NaN or infinite values")
    return np.ascontiguousarray(array)


def check_depth_array(depth: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """Validate a disparity map (H, W) in [0, 1]; resize it to ``size`` (H, W) when that differs."""
    array = np.asarray(depth, dtype=np.float32)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise InputError(f"depth must have shape (H, W), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise InputError("depth map contains NaN or infinite values")
    if size is not None and array.shape != tuple(size):
        array = resize_array(array, size)
    return np.clip(array, 0.0, 1.0)


def load_image(source: ImageSource, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image (path, bytes, PIL image or array) as float32 (H, W, 3) RGB in [0, 1].

    Raises:
        InputError: missing, truncated or non-image file, or more than ``max_pixels`` pixels.

    >>> load_image(Image.new("L", (4, 2))).shape
    (2, 4, 3)
    """
    if isinstance(source, np.ndarray):
        array = source
        if array.ndim == 2:
            array = np.repeat(array[..., None], 3, axis=2)
        if array.dtype == np.uint8:
            array = array.astype(np.float32) / 255.0
        elif array.dtype == np.uint16:
            array = array.astype(np.float32) / 65535.0
        if array.ndim == 3 and array.shape[2] == 4:  # RGBA: composite over white, like files
            alpha = np.clip(array[..., 3:4].astype(np.float32), 0.0, 1.0)
            array = array[..., :3] * alpha + (1.0 - alpha)
        if array.shape[0] * array.shape[1] > max_pixels:
            raise InputError(f"image of shape {array.shape} is above the limit of {max_pixels / 1e6:.0f} MP")
        return check_image_array(array)
    image = _open(source, max_pixels)
    deep = _decode_16bit_colour(source, image)
    return deep if deep is not None else pil_to_array(image)


_EXIF_ORIENTATION = 0x0112

# Formats whose Pillow decoding of an RGB or grayscale image is exactly its 8-bit levels (16-bit PNGs are checked).
_LEVEL_FORMATS = {"JPEG", "MPO", "PNG", "WEBP", "BMP"}


def load_image_levels(source: str | os.PathLike | bytes, *, max_pixels: int = MAX_PIXELS) -> np.ndarray | None:
    """An 8-bit RGB or grayscale image file as its uint8 (H, W, 3) levels: exactly ``load_image(source) * 255``,
    without the float copy (the evaluation scores these directly).

    Returns ``None`` for any other image (alpha, palette, CMYK, 16-bit, EXIF-rotated, other formats): read those
    with :func:`load_image`.

    Raises:
        InputError: as :func:`load_image` (missing, truncated or non-image file, too many pixels).
    """
    image = _open(source, max_pixels)
    if image.format not in _LEVEL_FORMATS or image.mode not in ("RGB", "L"):
        return None
    if image.format == "PNG":
        if isinstance(source, (bytes, bytearray)):
            header = bytes(source[:26])
        else:
            with open(source, "rb") as handle:
                header = handle.read(26)
        if len(header) < 26 or header[24] != 8:  # IHDR bit depth: Pillow reads 16-bit colour as 8-bit
            return None
    if int(image.getexif().get(_EXIF_ORIENTATION, 1) or 1) != 1:
        return None
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1..8) to an (H, W, C) array, as ``ImageOps.exif_transpose`` does."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1],
        8: lambda a: np.rot90(a, 1),
    }
    return np.ascontiguousarray(ops[orientation](array)) if orientation in ops else array


def _decode_16bit_colour(source: ImageSource, image: Image.Image) -> np.ndarray | None:
    """16-bit-per-channel RGB(A) PNG/TIFF: Pillow reads these as 8-bit, so decode them with OpenCV instead.

    Returns ``None`` for every other image (then Pillow's decoding is used).
    """
    if isinstance(source, (str, os.PathLike)):
        try:
            data = Path(source).read_bytes()
        except OSError:
            return None
    elif isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        return None
    fmt = image.format
    if fmt == "PNG":
        deep = len(data) > 26 and data[24] == 16 and data[25] in (2, 6)  # IHDR: bit depth, RGB / RGBA
    elif fmt == "TIFF":
        bits = getattr(image, "tag_v2", {}).get(258, ())
        bits = bits if isinstance(bits, tuple) else (bits,)
        deep = len(bits) >= 3 and all(int(b) == 16 for b in bits)
    else:
        deep = False
    if not deep:
        return None
    import cv2

    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.dtype != np.uint16 or decoded.ndim != 3 or decoded.shape[2] not in (3, 4):
        return None
    array = decoded.astype(np.float32) / 65535.0
    rgb = array[..., 2::-1] if array.shape[2] == 3 else array[..., [2, 1, 0]]
    if array.shape[2] == 4:
        alpha = array[..., 3:4]
        rgb = rgb * alpha + (1.0 - alpha)
    orientation = int(image.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    return np.ascontiguousarray(_orient(rgb, orientation), dtype=np.float32)


def load_depth(source: ImageSource, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read a depth (disparity) map as float32 (H, W) in [0, 1], near = 1.

    8- and 16-bit PNGs are scaled by their bit depth; ``.npy`` files and float arrays are min-max
    normalised. Colour images are converted to luminance.

    Raises:
        InputError: unreadable file, or NaN / infinite values.
    """
    if isinstance(source, (str, os.PathLike)) and str(source).endswith(".npy"):
        try:
            source = np.load(source, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"{source}: not a readable .npy depth map ({exc})") from None
    if isinstance(source, np.ndarray):
        array = np.asarray(source)
        if array.ndim == 3:
            array = array[..., :3].mean(axis=2) if array.shape[2] >= 3 else array[..., 0]
        if array.ndim != 2:
            raise InputError(f"depth map must be 2-D, got shape {array.shape}")
        array = array.astype(np.float32)
        if not np.all(np.isfinite(array)):
            raise InputError("depth map contains NaN or infinite values")
        if source.dtype == np.uint8:
            return array / 255.0
        if source.dtype == np.uint16:
            return array / 65535.0
        low, high = float(array.min()), float(array.max())
        return (array - low) / (high - low) if high > low else np.zeros_like(array)
    image = ImageOps.exif_transpose(_open(source, max_pixels))
    if image.mode.startswith("I;16") or image.mode == "I":
        array = np.asarray(image, dtype=np.float32)
        return np.clip(array / (65535.0 if array.max(initial=0) > 255 else 255.0), 0.0, 1.0)
    if image.mode == "F":
        return load_depth(np.asarray(image, dtype=np.float32))
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def resize_array(array: np.ndarray, size: tuple[int, int], *, resample: str = "bicubic") -> np.ndarray:
    """Resize a float (H, W) or (H, W, C) array to ``size`` = (H, W) with PIL's filters, per channel."""
    filters = {
        "bicubic": Image.Resampling.BICUBIC,
        "bilinear": Image.Resampling.BILINEAR,
        "nearest": Image.Resampling.NEAREST,
        "area": Image.Resampling.BOX,
        "lanczos": Image.Resampling.LANCZOS,
    }
    height, width = int(size[0]), int(size[1])
    array = np.asarray(array, dtype=np.float32)
    if array.shape[:2] == (height, width):
        return array
    channels = [array] if array.ndim == 2 else [array[..., c] for c in range(array.shape[2])]
    resized = [
        np.asarray(Image.fromarray(c).resize((width, height), filters[resample]), dtype=np.float32) for c in channels
    ]
    return resized[0] if array.ndim == 2 else np.stack(resized, axis=2)


def array_to_pil(array: np.ndarray) -> Image.Image:
    """float [0, 1] (H, W, 3) or (H, W) -> 8-bit PIL image (rounded, clipped)."""
    array = np.asarray(array, dtype=np.float32)
    return Image.fromarray(np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8))


def _atomic_save(image: Image.Image, path: str | os.PathLike, **kwargs: object) -> Path:
    """Write to a temporary file beside ``path`` and rename, so a reader never sees half a file."""
    target = Path(path)
    suffix = target.suffix.lower() or ".png"
    fmt = Image.registered_extensions().get(suffix)
    if fmt is None:
        raise InputError(f"unknown image extension {target.suffix!r} for {target}; use .png, .jpg, .webp or .tif")
    with atomic_writer(target, suffix=suffix) as handle:
        image.save(handle, format=fmt, **kwargs)
    return target


def save_image(array: np.ndarray | Image.Image, path: str | os.PathLike, *, quality: int = 95) -> Path:
    """Save a float [0, 1] RGB array (or PIL image) atomically; format from the extension."""
    image = array if isinstance(array, Image.Image) else array_to_pil(array)
    kwargs: dict[str, object] = {}
    if Path(path).suffix.lower() in {".jpg", ".jpeg", ".webp"}:
        kwargs["quality"] = quality
    return _atomic_save(image, path, **kwargs)


def save_depth(depth: np.ndarray, path: str | os.PathLike, *, bits: int = 16) -> Path:
    """Save a [0, 1] disparity map as a grayscale PNG (16-bit by default, near = bright)."""
    depth = np.clip(np.asarray(depth, dtype=np.float32), 0.0, 1.0)
    if bits == 16:
        image = Image.fromarray(np.round(depth * 65535.0).astype(np.uint16))
    elif bits == 8:
        image = Image.fromarray(np.round(depth * 255.0).astype(np.uint8))
    else:
        raise InputError(f"bits must be 8 or 16, got {bits}")
    return _atomic_save(image, path)
