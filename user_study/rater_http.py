"""What the rater API's routes share: JSON answers and errors, bounded request bodies, session tokens, images.

- :func:`json_response` / :class:`ApiError` / :func:`error_response`: every answer is compact JSON, never cached;
  an error is ``{"error": <code>, "message": ...}`` with its HTTP status (and ``Retry-After`` where it applies).
- :func:`read_body` / :func:`read_json`: request bodies above a few kilobytes get HTTP 413, checked before and
  while reading.
- :func:`session_token` / :func:`session_id`: ``<session id>.<keyed hash>``, so only the page that started a
  session can use it.
- :func:`served_png`: every slot image is served as a metadata-free PNG (same type and headers whatever the
  source format), cached on disk, then changed invisibly for its image token (:func:`varied_png`), so no two
  served files are byte-identical: a hidden reference's two sides, or a gold item's image and the target it
  showed earlier, cannot be matched by their bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import math
from collections import OrderedDict
from pathlib import Path
from threading import Lock
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from bokeh_model.files import atomic_write

__all__ = [
    "IMAGE_HEADERS",
    "JSON_HEADERS",
    "ApiError",
    "error_response",
    "json_response",
    "read_body",
    "read_json",
    "retry_after",
    "served_png",
    "session_id",
    "session_token",
    "shown_id",
    "varied_png",
]

JSON_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
IMAGE_HEADERS = {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"}


def session_token(secret: str, assignment_id: str) -> str:
    """``<session id>.<keyed hash>``: proves the caller got the session from ``begin``."""
    mac = hmac.new(secret.encode(), f"session:{assignment_id}".encode(), hashlib.sha256).hexdigest()[:24]
    return f"{assignment_id}.{mac}"


def session_id(secret: str, token: str) -> str | None:
    """The session id a :func:`session_token` stands for, or ``None`` when the token was not made with ``secret``."""
    aid, _, _mac = token.partition(".")
    if not aid or not hmac.compare_digest(session_token(secret, aid).encode(), token.encode()):
        return None
    return aid


class ApiError(Exception):
    """An error answer of the API: HTTP ``status``, a short machine-readable ``code`` and a message."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def json_response(data: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Compact JSON, never cached."""
    body = json.dumps(data, separators=(",", ":"), default=str)
    return Response(
        body, status_code=status, media_type="application/json", headers={**JSON_HEADERS, **(headers or {})}
    )


def error_response(exc: ApiError) -> Response:
    """The JSON body ``{"error": code, "message": ...}`` of an :class:`ApiError`."""
    return json_response({"error": exc.code, "message": exc.message}, exc.status, exc.headers)


def retry_after(seconds: float) -> dict[str, str]:
    """The ``Retry-After`` header for a wait of ``seconds`` (whole seconds, at least 1)."""
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 beyond ``limit`` bytes (checked before and while reading)."""
    # the rest of the body is never read: close the connection so it cannot be taken for the next request
    too_large = ApiError(413, "too_large", f"request body over {limit} bytes", {"Connection": "close"})
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The request body as a JSON object (400 when it is not one, 413 beyond ``limit`` bytes)."""
    body = await read_body(request, limit)
    try:
        data = json.loads(body or b"{}", parse_constant=_no_constant)
    except _NotFinite:
        raise ApiError(422, "bad_number", "numbers must be finite (no NaN or Infinity)") from None
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "bad_json", "the request body is not JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_json", "the request body must be a JSON object")
    try:  # JSON may spell a lone UTF-16 surrogate (\ud800), which is no text: refuse it here, in plain words
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, "bad_text", "the request contains text that is not valid Unicode") from None
    return data


class _NotFinite(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _NotFinite(name)


def shown_id(value: str, limit: int = 64) -> str:
    """``value`` quoted for a message, cut to ``limit`` characters: an answer never echoes a huge id back."""
    return repr(value) if len(value) <= limit else f"{value[:limit]!r}... ({len(value)} characters)"


def served_png(cache_dir: Path, path: str, variant: str = "") -> bytes:
    """The image as PNG without metadata, cached on disk: every slot image gets the same type and headers,
    whatever the source format (targets are JPEG, renderings PNG). With ``variant`` (the slot's image token),
    the :func:`varied_png` of it."""
    base = _base_png(cache_dir, path)
    return varied_png(base, variant) if variant else base


# Flip one 8-bit level up or down in 1 of 4 channel values: MSE <= 0.25, PSNR >= 54 dB (invisible), and no two
# variants share their bytes. The last few variants are kept in memory: a page fetches an image as preload and
# again when shown, and the browser may not have cached it. Making one costs a decode, a noise draw and a PNG
# encode (about 0.3-0.7 s for 1536x1024 on a shared 2-core machine); the page preloads the next slot, so a rater
# does not wait for it.
_VARIANTS: OrderedDict[tuple[bytes, str], bytes] = OrderedDict()
_VARIANTS_LOCK = Lock()
_VARIANTS_KEPT = 8  # a full-resolution variant is a few MB


def varied_png(png: bytes, variant: str) -> bytes:
    """``png`` with an invisible change of its own, drawn from ``variant`` (deterministic: the same variant gives
    the same bytes): a quarter of the channel values moved by one level, so PSNR against the original is at
    least 54 dB."""
    import numpy as np
    from PIL import Image

    key = (hashlib.sha256(png).digest(), variant)
    with _VARIANTS_LOCK:
        if key in _VARIANTS:
            _VARIANTS.move_to_end(key)
            return _VARIANTS[key]
    with Image.open(io.BytesIO(png)) as im:
        pixels = np.asarray(im.convert("RGB"), dtype=np.int16)
    seed = int.from_bytes(hashlib.sha256(f"variant:{variant}".encode()).digest()[:8], "big")
    draw = np.random.default_rng(seed).integers(0, 8, pixels.shape, dtype=np.uint8)
    step = (draw == 0).astype(np.int16) - (draw == 1).astype(np.int16)  # +1 or -1 for 2 of 8 draws
    changed = np.clip(pixels + step, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(changed).save(buf, format="PNG", compress_level=1)
    data = buf.getvalue()
    with _VARIANTS_LOCK:
        _VARIANTS[key] = data
        while len(_VARIANTS) > _VARIANTS_KEPT:
            _VARIANTS.popitem(last=False)
    return data


def _base_png(cache_dir: Path, path: str) -> bytes:
    src = Path(path)
    st = src.stat()
    key = hashlib.sha256(f"{src.absolute()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:40]
    out = cache_dir / f"{key}.png"
    if out.is_file():
        return out.read_bytes()
    from PIL import Image

    with Image.open(src) as im:
        rgb = im.convert("RGB")
    buf = io.BytesIO()
    rgb.save(buf, format="PNG", compress_level=3)
    data = buf.getvalue()
    atomic_write(out, data)  # concurrent requests for one image each write a whole file
    return data
