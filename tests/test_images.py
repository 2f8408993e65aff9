"""Bad and unusual inputs: every image mode converts correctly; broken files and bombs give clear errors."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from bokeh_model import InputError, create_method
from bokeh_model.images import load_depth, load_image, save_depth, save_image


def encode(image: Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def test_grayscale_becomes_rgb() -> None:
    out = load_image(encode(Image.new("L", (5, 3), 128)))
    assert out.shape == (3, 5, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, 128 / 255)


def test_rgba_and_la_are_composited_over_white() -> None:
    out = load_image(encode(Image.new("RGBA", (4, 4), (255, 0, 0, 0))))
    np.testing.assert_allclose(out, 1.0)  # fully transparent -> white
    out = load_image(encode(Image.new("RGBA", (4, 4), (0, 0, 0, 255))))
    np.testing.assert_allclose(out, 0.0)
    out = load_image(encode(Image.new("LA", (4, 4), (0, 128))))
    np.testing.assert_allclose(out, 1 - 128 / 255, atol=1e-6)
    array = np.zeros((2, 2, 4), np.uint8)
    np.testing.assert_allclose(load_image(array), 1.0)  # arrays with alpha behave like files


def test_palette_with_transparency() -> None:
    image = Image.new("P", (3, 3), 0)
    image.putpalette([10, 20, 30] + [0] * 765)
    image.info["transparency"] = 0
    np.testing.assert_allclose(load_image(encode(image)), 1.0)


def test_16_bit_grayscale_and_colour_keep_precision(tmp_path: Path) -> None:
    gray = np.full((3, 4), 30000, np.uint16)
    np.testing.assert_allclose(load_image(encode(Image.fromarray(gray))), 30000 / 65535, rtol=1e-6)
    colour = np.zeros((3, 4, 3), np.uint16)
    colour[..., 0], colour[..., 1], colour[..., 2] = 1000, 30000, 65535  # RGB
    for suffix in (".png", ".tiff"):
        ok, data = cv2.imencode(suffix, colour[..., ::-1])  # OpenCV writes BGR
        assert ok
        out = load_image(data.tobytes())
        np.testing.assert_allclose(out[0, 0], [1000 / 65535, 30000 / 65535, 1.0], rtol=1e-6)
        path = tmp_path / f"deep{suffix}"
        path.write_bytes(data.tobytes())
        np.testing.assert_allclose(load_image(path), out)
    rgba = np.concatenate([colour, np.zeros((3, 4, 1), np.uint16)], axis=2)
    ok, data = cv2.imencode(".png", rgba[..., [2, 1, 0, 3]])
    np.testing.assert_allclose(load_image(data.tobytes()), 1.0)  # transparent -> white


def test_cmyk_jpeg() -> None:
    out = load_image(encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=100))
    np.testing.assert_allclose(out[4, 4], [1.0, 0.0, 0.0], atol=0.03)  # cyan-free, full magenta+yellow = red


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_rotation_is_applied(orientation: int) -> None:
    array = np.zeros((4, 6, 3), np.uint8)
    array[0, 0] = (255, 0, 0)  # red marker top-left
    array[0, 5] = (0, 255, 0)  # green marker top-right
    image = Image.fromarray(array)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(image, "PNG", exif=exif.tobytes())
    out = load_image(data)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
    np.testing.assert_allclose(out, expected / 255.0)
    if orientation in (5, 6, 7, 8):
        assert out.shape[:2] == (6, 4)
    # 16-bit colour PNGs (decoded by OpenCV) honour the orientation too
    ok, raw = cv2.imencode(".png", array[..., ::-1].astype(np.uint16) * 257)
    assert ok
    deep = with_exif_chunk(raw.tobytes(), exif.tobytes())
    np.testing.assert_allclose(load_image(deep), expected / 255.0, atol=1e-6)


def with_exif_chunk(png: bytes, exif: bytes) -> bytes:
    """Insert an eXIf chunk (TIFF-structured EXIF) right after the IHDR chunk of a PNG file."""
    import struct
    import zlib

    body = exif[6:] if exif.startswith(b"Exif\x00\x00") else exif
    chunk = struct.pack(">I", len(body)) + b"eXIf" + body + struct.pack(">I", zlib.crc32(b"eXIf" + body))
    return png[:33] + chunk + png[33:]


def test_truncated_and_non_image_files_give_clear_errors(tmp_path: Path) -> None:
    jpeg = encode(Image.new("RGB", (64, 64), (10, 200, 30)), "JPEG")
    png = encode(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    for name, data in [("cut.png", png[: len(png) // 2]), ("cut.jpg", jpeg[:40]), ("text.png", b"hello world")]:
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(InputError, match=r"not an image file|could not be decoded"):
            load_image(path)
    with pytest.raises(InputError, match="not found"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(InputError, match="directory"):
        load_image(tmp_path)


def test_decompression_bomb_is_refused_before_decoding() -> None:
    data = encode(Image.new("L", (4000, 3000)))  # tiny file, 12 MP of pixels
    with pytest.raises(InputError, match=r"12\.0 MP is above the limit"):
        load_image(data, max_pixels=1_000_000)
    assert load_image(data, max_pixels=20_000_000).shape == (3000, 4000, 3)


def test_depth_inputs(tmp_path: Path) -> None:
    depth16 = np.linspace(0, 65535, 12, dtype=np.uint16).reshape(3, 4)
    np.testing.assert_allclose(load_depth(encode(Image.fromarray(depth16))), depth16 / 65535, atol=1e-6)
    path = save_depth(depth16 / 65535, tmp_path / "d.png")
    np.testing.assert_allclose(load_depth(path), depth16 / 65535, atol=1e-5)
    np.save(tmp_path / "bad.npy", np.array([[0.0, np.inf]], np.float32))
    with pytest.raises(InputError, match="NaN or infinite"):
        load_depth(tmp_path / "bad.npy")
    (tmp_path / "bad2.npy").write_bytes(b"garbage")
    with pytest.raises(InputError, match="npy"):
        load_depth(tmp_path / "bad2.npy")


def test_depth_of_another_size_is_resized_and_nan_depth_is_an_error() -> None:
    image = np.random.default_rng(0).random((40, 60, 3), dtype=np.float32)
    lens = create_method("lens")
    small = np.full((20, 30), 0.5, np.float32)
    out = lens(image, small, strength=4.0, focus_disparity=0.5)
    assert out.shape == image.shape
    np.testing.assert_allclose(out, image, atol=1 / 255)  # all in focus
    bad = small.copy()
    bad[3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        lens(image, bad)


def test_save_is_atomic_and_roundtrips(tmp_path: Path) -> None:
    image = np.random.default_rng(1).random((8, 8, 3), dtype=np.float32)
    path = save_image(image, tmp_path / "sub" / "x.png")
    np.testing.assert_allclose(load_image(path), np.round(image * 255) / 255, atol=1e-6)
    assert [p.name for p in path.parent.iterdir()] == ["x.png"]  # no temporary left behind
    with pytest.raises(InputError, match="extension"):
        save_image(image, tmp_path / "x.unknown")
