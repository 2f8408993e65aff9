"""The rater page and its JSON API: plain FastAPI routes served beside the Gradio app (no Gradio queue).

Routes (``API`` = ``/study-api/v1``):

- ``GET /rate?study=<id>&rater=<id>``: the rater page (static HTML + JavaScript, see ``user_study/web/``); also
  ``PROLIFIC_PID``/``STUDY_ID``/``SESSION_ID`` (Prolific), ``workerId``/``assignmentId``/``hitId``/
  ``turkSubmitTo`` (MTurk ExternalQuestion) and ``code`` (invite codes). Old links ``/?study=...`` redirect here.
- ``GET API/studies/<id>``: title, scale, instructions and minimum viewing time of a study.
- ``POST API/begin`` ``{"study", "rater", "source"}``: start or resume the rater's session; returns the view.
- ``GET API/sessions/<session>``: the current item (the same view).
- ``POST API/sessions/<session>/submit`` ``{"position", "score"}``: store a rating; returns the next view.
- ``POST API/sessions/<session>/finish``: completion code and platform hand-off of a completed session.
- ``GET API/images/<token>``: an image of a slot, always PNG with the same headers, by a random-looking token.
- ``POST API/organizer/export`` (form or JSON ``token``, ``study``, ``format``): ratings export, organizer only.

``<session>`` is ``<session id>.<keyed hash>``: only the page that started the session can use it. Every
submit is checked by :class:`~user_study.service.StudyService` (slot, order, minimum viewing time, score).
Abuse limits per client (the peer address, or the ``X-Forwarded-For`` hop set by a trusted proxy): ``begin``
calls and wrong organizer tokens are rate-limited (HTTP 429 with ``Retry-After``), new sessions per client
are capped, and request bodies above a few kilobytes get HTTP 413. The limits are kept per process.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import math
import os
import tempfile
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from anyio import to_thread
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from user_study.config import Settings
from user_study.service import RaterView, SessionCapReached, StudyError, StudyService, SubmitRejected

__all__ = [
    "API_PREFIX",
    "PAGE_PATH",
    "ApiLimits",
    "RateLimiter",
    "build_rater_router",
    "create_rater_app",
    "legacy_link_middleware",
    "session_token",
]

API_PREFIX = "/study-api/v1"
PAGE_PATH = "/rate"
WEB_DIR = Path(__file__).with_name("web")
SOURCES = ("link", "prolific", "mturk", "invite", "hf_oauth")
_STATIC = {"rater.js": "text/javascript; charset=utf-8", "rater.css": "text/css; charset=utf-8"}
# No inline script or style, images only from this server; framing stays allowed (MTurk shows the page in an
# iframe) and forms may post to the crowd platform.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
        "form-action 'self' https://www.mturk.com https://workersandbox.mturk.com; base-uri 'none'; "
        "object-src 'none'"
    ),
    "Referrer-Policy": "no-referrer",  # the page URL carries rater ids
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}
_JSON_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
_IMAGE_HEADERS = {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"}


@dataclass
class ApiLimits:
    """Abuse limits of the rater API (environment variables in brackets).

    Attributes:
        max_body_bytes: Largest accepted request body (``BOKEH_STUDY_MAX_BODY``).
        begin_per_min / begin_burst: ``begin`` calls per client and minute, and the burst allowed
            (``BOKEH_STUDY_BEGIN_PER_MIN``, ``BOKEH_STUDY_BEGIN_BURST``).
        token_tries_per_min / token_burst: Wrong organizer tokens per client and minute, and the burst.
        max_new_sessions: New sessions one client may start within ``new_session_window_s``
            (``BOKEH_STUDY_MAX_NEW_SESSIONS``); resuming is never limited by it.
        new_session_window_s: The window of that cap (default: 5 min, the default lease of an unrated session).
        trusted_proxy_hops: Proxies in front of the app that append to ``X-Forwarded-For`` (``0``: use the
            peer address; default ``1`` on a Hugging Face Space) (``BOKEH_TRUSTED_PROXY_HOPS``).
    """

    max_body_bytes: int = 8 * 1024
    begin_per_min: float = 20.0
    begin_burst: int = 20
    token_tries_per_min: float = 5.0
    token_burst: int = 5
    max_new_sessions: int = 20
    new_session_window_s: float = 300.0
    trusted_proxy_hops: int = 0

    @classmethod
    def from_env(cls) -> ApiLimits:
        """Defaults overridden by the environment variables named in the class docstring."""

        def num(name: str, default: float) -> float:
            raw = os.environ.get(name)
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not a number") from None
            if value < 0:
                raise ValueError(f"{name}={raw!r} must be >= 0")
            return value

        return cls(
            max_body_bytes=int(num("BOKEH_STUDY_MAX_BODY", cls.max_body_bytes)),
            begin_per_min=num("BOKEH_STUDY_BEGIN_PER_MIN", cls.begin_per_min),
            begin_burst=int(num("BOKEH_STUDY_BEGIN_BURST", cls.begin_burst)),
            max_new_sessions=int(num("BOKEH_STUDY_MAX_NEW_SESSIONS", cls.max_new_sessions)),
            # on a Hugging Face Space (SYSTEM=spaces) every request comes through the Space's proxy: without
            # this, all raters would share one client address and one budget
            trusted_proxy_hops=int(num("BOKEH_TRUSTED_PROXY_HOPS", 1 if os.environ.get("SYSTEM") == "spaces" else 0)),
        )


class RateLimiter:
    """Token buckets per key (``rate`` tokens per second, up to ``burst``); thread-safe, bounded in size.

    Args:
        rate: Tokens added per second.
        burst: Bucket size (calls allowed at once).
        max_keys: Buckets kept; the least recently used are dropped beyond it (a full bucket is the default).
    """

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate, self.burst, self.max_keys = rate, max(1, burst), max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """Take one token; returns 0.0 when allowed, else the seconds until a token is available."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate if self.rate > 0 else 3600.0
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
            return wait


class _WindowCounter:
    """Events per key within a sliding window (new sessions per client)."""

    def __init__(self, window_s: float, max_keys: int = 100_000) -> None:
        self.window_s, self.max_keys = window_s, max_keys
        self._events: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def count(self, key: str, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._events.get(key)
            if not q:
                return 0
            while q and q[0] <= now - self.window_s:
                q.popleft()
            return len(q)

    def add(self, key: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._events.pop(key, None) or deque()
            q.append(now)
            self._events[key] = q
            while len(self._events) > self.max_keys:
                self._events.popitem(last=False)


def session_token(secret: str, assignment_id: str) -> str:
    """``<session id>.<keyed hash>``: proves the caller got the session from ``begin``."""
    mac = hmac.new(secret.encode(), f"session:{assignment_id}".encode(), hashlib.sha256).hexdigest()[:24]
    return f"{assignment_id}.{mac}"


def _session_id(secret: str, token: str) -> str | None:
    aid, _, _mac = token.partition(".")
    if not aid or not hmac.compare_digest(session_token(secret, aid).encode(), token.encode()):
        return None
    return aid


class _ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def _json(data: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(data, separators=(",", ":"), default=str)
    return Response(
        body, status_code=status, media_type="application/json", headers={**_JSON_HEADERS, **(headers or {})}
    )


def _error(exc: _ApiError) -> Response:
    return _json({"error": exc.code, "message": exc.message}, exc.status, exc.headers)


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 beyond ``limit`` bytes (checked before and while reading)."""
    # the rest of the body is never read: close the connection so it cannot be taken for the next request
    too_large = _ApiError(413, "too_large", f"request body over {limit} bytes", {"Connection": "close"})
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


async def _read_json(request: Request, limit: int) -> dict[str, Any]:
    body = await _read_body(request, limit)
    try:
        data = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise _ApiError(400, "bad_json", "the request body is not JSON") from None
    if not isinstance(data, dict):
        raise _ApiError(400, "bad_json", "the request body must be a JSON object")
    return data


def client_key(request: Request, trusted_proxy_hops: int = 0) -> str:
    """Who is calling, for the abuse limits: the peer address, or the address a trusted proxy recorded.

    With ``n`` trusted proxies each appending the address it saw to ``X-Forwarded-For``, the client is the
    ``n``-th entry from the right; entries further left can be forged by the client and are ignored.
    """
    peer = request.client.host if request.client else "unknown"
    if trusted_proxy_hops > 0:
        hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
        if len(hops) >= trusted_proxy_hops:
            return hops[-trusted_proxy_hops]
    return peer


def _served_png(cache_dir: Path, path: str) -> bytes:
    """The image as PNG without metadata, cached on disk: every slot image gets the same type and headers,
    whatever the source format (targets are JPEG, renderings PNG)."""
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
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(out)
    return data


def _platform_url(url: str) -> str:
    return url if url.startswith(("https://", "http://")) else ""


def build_rater_router(
    service: StudyService,
    *,
    organizer_token: str | None,
    cache_dir: str | Path,
    limits: ApiLimits | None = None,
) -> APIRouter:
    """Routes of the rater page and its JSON API.

    Args:
        service: The shared study service.
        organizer_token: Token of the export route (``None``: export disabled).
        cache_dir: Where PNG copies of served images are kept.
        limits: Abuse limits (default :meth:`ApiLimits.from_env`).
    """
    limits = limits or ApiLimits.from_env()
    cache = Path(cache_dir)
    secret = service.secret
    begin_limiter = RateLimiter(limits.begin_per_min / 60.0, limits.begin_burst)
    token_limiter = RateLimiter(limits.token_tries_per_min / 60.0, limits.token_burst)
    new_sessions = _WindowCounter(limits.new_session_window_s)
    page = (WEB_DIR / "rater.html").read_bytes()
    static = {name: (WEB_DIR / name).read_bytes() for name in _STATIC}
    router = APIRouter()

    def view_json(view: RaterView, status: str = "") -> dict[str, Any]:
        cfg = service.study_config(view.study_id)
        out: dict[str, Any] = {
            "study": view.study_id,
            "mode": view.mode,
            "session": session_token(secret, view.assignment_id) if view.assignment_id else "",
            "position": view.position,
            "n": view.n_slots,
            "done": view.done,
            "finished": view.finished,
            "message": view.message,
            "sessions_done": view.sessions_done,
            "min_view_ms": cfg.min_view_ms,
        }
        if status:
            out["status"] = status
        if view.left_image and not view.done:
            # Same keys for every item: nothing tells a check item (hidden reference, gold, trap) from a test
            # item; a trap's instruction is drawn into its image.
            out["left"] = {"src": f"{API_PREFIX}/images/{view.left_image}", "label": view.left_label}
            out["right"] = {"src": f"{API_PREFIX}/images/{view.right_image}", "label": view.right_label}
            out["preload"] = [f"{API_PREFIX}/images/{t}" for t in view.next_images]
        if view.done:
            out["completion_code"] = view.completion_code
            url = _platform_url(cfg.completion_url)
            out["completion_url"] = url.replace("{code}", view.completion_code) if url else ""
        return out

    # SQLite takes one writer at a time: with one database thread, requests queue in order instead of
    # dozens of pool threads contending for the write lock and the GIL (which cost more CPU per submit
    # the more raters were waiting). PostgreSQL serves requests in parallel from the default thread pool.
    db_thread = ThreadPoolExecutor(1, thread_name_prefix="study-db") if service._dialect == "sqlite" else None

    def run(fn: Callable[[], Any]) -> Any:
        if db_thread is None:
            return to_thread.run_sync(fn)
        return asyncio.get_running_loop().run_in_executor(db_thread, fn)

    def run_io(fn: Callable[[], Any]) -> Any:
        return to_thread.run_sync(fn)

    def session_of(token: str) -> str:
        aid = _session_id(secret, token)
        if aid is None:
            raise _ApiError(404, "unknown_session", "unknown session; open your study link again")
        return aid

    @router.get(PAGE_PATH, include_in_schema=False)
    async def rater_page() -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)

    @router.get(PAGE_PATH + "/static/{name}", include_in_schema=False)
    async def rater_static(name: str) -> Response:
        if name not in static:
            return _error(_ApiError(404, "not_found", "no such file"))
        return Response(static[name], media_type=_STATIC[name], headers={"Cache-Control": "no-cache"})

    @router.get(API_PREFIX + "/studies/{study_id}")
    async def study_info(study_id: str) -> Response:
        try:
            cfg = await run(lambda: service.study_config(study_id))
        except StudyError:
            # no list of known studies here (the service's message has one): this route is public
            return _error(_ApiError(404, "unknown_study", f"unknown study {study_id!r}; check your link"))
        return _json(
            {
                "study": study_id,
                "title": cfg.title,
                "mode": cfg.mode,
                "scale": {str(k): v for k, v in cfg.scale_labels.items()},
                "min_view_ms": cfg.min_view_ms,
                "instructions": cfg.instructions_md,
                "items_per_session": cfg.items_per_session,
            }
        )

    @router.post(API_PREFIX + "/begin")
    async def begin(request: Request) -> Response:
        try:
            data = await _read_json(request, limits.max_body_bytes)
            client = client_key(request, limits.trusted_proxy_hops)
            wait = begin_limiter.take(client)
            if wait > 0:
                raise _ApiError(
                    429, "rate_limited", "too many starts from your network; wait a moment", _retry_after(wait)
                )
            study, rater = str(data.get("study") or "").strip(), str(data.get("rater") or "")
            source = str(data.get("source") or "link")
            if source not in SOURCES:
                raise _ApiError(422, "bad_source", f"source {source!r} is not one of {list(SOURCES)}")
            if not study:
                raise _ApiError(422, "no_study", "the link has no study id (?study=...)")
            allow_new = new_sessions.count(client) < limits.max_new_sessions
            try:
                view = await run(lambda: service.begin(study, rater, source, allow_new=allow_new))
            except SessionCapReached as exc:
                raise _ApiError(
                    429, "too_many_sessions", str(exc), _retry_after(limits.new_session_window_s / 4)
                ) from None
            except StudyError as exc:
                msg = str(exc)
                if msg.startswith("unknown study"):
                    msg = f"unknown study {study!r}; check your link"
                raise _ApiError(404 if "unknown study" in msg else 422, "refused", msg) from None
            if view.started:
                new_sessions.add(client)
            return _json(await run(lambda: view_json(view)))
        except _ApiError as exc:
            return _error(exc)

    @router.get(API_PREFIX + "/sessions/{token}")
    async def current(token: str) -> Response:
        try:
            aid = session_of(token)
            view = await run(lambda: service.session_view(aid))
            return _json(await run(lambda: view_json(view)))
        except _ApiError as exc:
            return _error(exc)
        except StudyError as exc:
            return _error(_ApiError(404, "unknown_session", str(exc)))

    @router.post(API_PREFIX + "/sessions/{token}/submit")
    async def submit(token: str, request: Request) -> Response:
        try:
            aid = session_of(token)
            data = await _read_json(request, limits.max_body_bytes)
            position = data.get("position")
            if not isinstance(position, int) or isinstance(position, bool):
                raise _ApiError(422, "bad_slot", "position must be an integer")
            score = data.get("score")
            if score is None or score == "":
                raise _ApiError(422, "no_score", "choose a score first")

            def work() -> dict[str, Any]:
                result = service.submit(None, f"{aid}:{position}", score)
                return view_json(result.view, result.status)

            return _json(await run(work))
        except _ApiError as exc:
            return _error(exc)
        except SubmitRejected as exc:
            body: dict[str, Any] = {"error": exc.code, "message": str(exc)}
            headers = {}
            if exc.retry_after_s is not None:
                body["retry_after_ms"] = int(exc.retry_after_s * 1000)
                headers = _retry_after(exc.retry_after_s)
            return _json(
                body, 409 if exc.code in ("too_fast", "out_of_order", "expired", "not_shown") else 422, headers
            )

    @router.post(API_PREFIX + "/sessions/{token}/finish")
    async def finish(token: str, request: Request) -> Response:
        try:
            aid = session_of(token)
            await _read_body(request, limits.max_body_bytes)
            view = await run(lambda: service.session_view(aid))
            if not view.done:
                left = max(0, view.n_slots - view.position)
                raise _ApiError(409, "not_done", f"the session is not complete: {left} item(s) left")
            return _json(await run(lambda: view_json(view)))
        except _ApiError as exc:
            return _error(exc)
        except StudyError as exc:
            return _error(_ApiError(404, "unknown_session", str(exc)))

    @router.get(API_PREFIX + "/images/{token}")
    async def image(token: str) -> Response:
        if len(token) != 32 or not all(c in "0123456789abcdef" for c in token):
            return _error(_ApiError(404, "not_found", "no such image"))
        path = await run(lambda: service.image_path(token))
        if path is None:
            return _error(_ApiError(404, "not_found", "no such image"))
        data = await run_io(lambda: _served_png(cache, path))
        return Response(data, media_type="image/png", headers=_IMAGE_HEADERS)

    @router.post(API_PREFIX + "/organizer/export")
    async def organizer_export(request: Request) -> Response:
        try:
            if not organizer_token:
                raise _ApiError(403, "disabled", "the organizer view is disabled: set BOKEH_ORGANIZER_TOKEN")
            body = await _read_body(request, limits.max_body_bytes)
            if request.headers.get("content-type", "").startswith("application/json"):
                try:
                    data = json.loads(body or b"{}")
                except ValueError:
                    raise _ApiError(400, "bad_json", "the request body is not JSON") from None
            else:
                from urllib.parse import parse_qsl

                data = dict(parse_qsl(body.decode("utf-8", "replace")))
            client = client_key(request, limits.trusted_proxy_hops)
            given = str(data.get("token") or "")
            if not hmac.compare_digest(given.encode(), organizer_token.encode()):
                wait = token_limiter.take(client)
                if wait > 0:
                    raise _ApiError(429, "rate_limited", "too many wrong tokens; wait", _retry_after(wait))
                raise _ApiError(401, "wrong_token", "wrong organizer token")
            study = str(data.get("study") or "").strip()
            fmt = str(data.get("format") or "csv")
            if fmt not in ("csv", "jsonl"):
                raise _ApiError(422, "bad_format", f"format {fmt!r} is not csv or jsonl")

            def work() -> bytes:
                from user_study.report import export_ratings

                # written to a private temp folder that is removed before the response is sent
                with tempfile.TemporaryDirectory(prefix="study_export_") as tmp:
                    out = export_ratings(
                        service, study, Path(tmp) / f"ratings.{fmt}", fmt="csv" if fmt == "csv" else "json"
                    )
                    return out.read_bytes()

            try:
                data_out = await run(work)
            except StudyError as exc:
                raise _ApiError(404, "unknown_study", str(exc)) from None
            safe = "".join(c for c in study if c.isalnum() or c in "-_") or "study"
            media = "text/csv; charset=utf-8" if fmt == "csv" else "application/x-ndjson"
            return Response(
                data_out,
                media_type=media,
                headers={**_JSON_HEADERS, "Content-Disposition": f'attachment; filename="ratings_{safe}.{fmt}"'},
            )
        except _ApiError as exc:
            return _error(exc)

    return router


def legacy_link_middleware(app: Any) -> Callable:
    """ASGI middleware: ``GET /?study=...`` (rater links of the Gradio form) answers 307 to the rater page."""

    async def middleware(scope: dict, receive: Callable, send: Callable) -> None:
        if scope.get("type") == "http" and scope.get("method") in ("GET", "HEAD") and scope.get("path") == "/":
            from urllib.parse import parse_qsl

            query = scope.get("query_string", b"").decode("latin-1")
            params = parse_qsl(query, keep_blank_values=True)
            if any(k == "study" for k, _ in params):
                response = RedirectResponse(f"{PAGE_PATH}?{urlencode(params)}", status_code=307)
                await response(scope, receive, send)
                return
        await app(scope, receive, send)

    return middleware


def create_rater_app(db_url: str | None = None, organizer_token: str | None = None) -> FastAPI:
    """A FastAPI app with only the rater page and API (for ``uvicorn --factory`` with several workers).

    Settings come from the environment as for the Space (``BOKEH_STUDY_DB``, ``BOKEH_DATA_DIR``, ...).
    """
    from starlette.middleware import Middleware

    from user_study.ui import get_service

    settings = Settings.from_env(db_url, organizer_token)
    svc = get_service(settings.db_url)
    app = FastAPI(
        title="Bokeh user study: rater API",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        middleware=[Middleware(legacy_link_middleware)],
    )
    app.include_router(
        build_rater_router(svc, organizer_token=settings.organizer_token, cache_dir=settings.data_dir / "served")
    )
    return app
